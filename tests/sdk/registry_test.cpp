#include <gtest/gtest.h>

#include "test_support.h"

#include <selfsup/interfaces/data.h>
#include <selfsup/registry.h>

using namespace selfsup;
using selfsup::test::message_of;

namespace {

class Tag final : public Transform {
public:
  explicit Tag(int64_t v) : value(v) {}
  void apply(Sample&, Rng&) const override {}
  int64_t value;
};

RegistryEntry entry(const std::string& kind, const std::string& name, const std::string& plugin) {
  RegistryEntry e;
  e.kind = kind;
  e.name = name;
  e.plugin = plugin;
  e.file = "lib" + plugin + ".so";
  e.schema = Schema("doc").optional("value", ArgType::Int, 7, "a value");
  e.factory = [](const Config& c) -> std::shared_ptr<void> {
    return std::shared_ptr<Transform>(std::make_shared<Tag>(c.get<int64_t>("value")));
  };
  return e;
}

} // namespace

TEST(RegistryTest, BuildsWithDefaultsAndScopes) {
  Registry reg;
  reg.commit({entry("transform", "Tag", "p1")});
  auto obj = std::static_pointer_cast<Transform>(
      reg.build_any("transform", Config(Json::object({{"type", "Tag"}}))));
  EXPECT_EQ(dynamic_cast<Tag&>(*obj).value, 7);
  auto obj2 = std::static_pointer_cast<Transform>(
      reg.build_any("transform", Config(Json::object({{"type", "p1.Tag"}, {"value", Json(3)}}))));
  EXPECT_EQ(dynamic_cast<Tag&>(*obj2).value, 3);
  EXPECT_NE(reg.find("transform", "mmcls.Tag"), nullptr); // OpenMMLab scope: any provider
  EXPECT_EQ(reg.find("transform", "p2.Tag"), nullptr);    // another plugin: no
}

TEST(RegistryTest, RejectsDuplicateNameNamingBothProviders) {
  Registry reg;
  reg.commit({entry("transform", "Tag", "first")});
  std::string msg = message_of([&] { reg.commit({entry("transform", "Tag", "second")}); });
  EXPECT_NE(msg.find("libsecond.so"), std::string::npos) << msg;
  EXPECT_NE(msg.find("libfirst.so"), std::string::npos) << msg;
  // The same name under another kind is fine.
  reg.commit({entry("dataset", "Tag", "second")});
}

TEST(RegistryTest, CommitIsAllOrNothing) {
  Registry reg;
  reg.commit({entry("transform", "Taken", "a")});
  EXPECT_THROW(reg.commit({entry("transform", "Fresh", "b"), entry("transform", "Taken", "b")}),
               RegistryError);
  EXPECT_EQ(reg.find("transform", "Fresh"), nullptr);
  EXPECT_THROW(reg.commit({entry("transform", "Twice", "c"), entry("transform", "Twice", "c")}),
               RegistryError);
  EXPECT_EQ(reg.find("transform", "Twice"), nullptr);
  EXPECT_THROW(reg.commit({entry("no_such_kind", "X", "d")}), RegistryError);
}

TEST(RegistryTest, UnknownTypeNamesPathAndSuggests) {
  Registry reg;
  reg.commit({entry("transform", "RandomFlip", "p")});
  reg.note_refused("/plugins/libbroken.so", "plugin ABI version 9, this selfsup expects 1");
  Json j = Json::parse(R"({"pipeline": [{"type": "RandomFlp"}]})", "t");
  Config cfg(j);
  std::string msg = message_of([&] { (void)reg.build_any("transform", cfg["pipeline"].at(0)); });
  EXPECT_NE(msg.find("pipeline[0].type: unknown transform type 'RandomFlp'"), std::string::npos)
      << msg;
  EXPECT_NE(msg.find("did you mean 'RandomFlip'"), std::string::npos) << msg;
  EXPECT_NE(msg.find("libbroken.so was refused: plugin ABI version 9"), std::string::npos) << msg;
  msg = message_of([&] { (void)reg.build_any("transform", Config(Json::object())); });
  EXPECT_EQ(msg.rfind("type: required key is missing", 0), 0u) << msg;
}

TEST(RegistryTest, SchemaRejectsUnknownKeysAndWrongTypes) {
  Registry reg;
  reg.commit({entry("transform", "Tag", "p")});
  Json j =
      Json::parse(R"({"a": {"type": "Tag", "valu": 1}, "b": {"type": "Tag", "value": "x"}})", "t");
  Config cfg(j);
  std::string msg = message_of([&] { (void)reg.build_any("transform", cfg["a"]); });
  EXPECT_NE(msg.find("a.valu: unknown key (accepted: value)"), std::string::npos) << msg;
  msg = message_of([&] { (void)reg.build_any("transform", cfg["b"]); });
  EXPECT_NE(msg.find("b.value: expected int, got \"x\""), std::string::npos) << msg;
}

TEST(SchemaTest, RequiredDefaultsAndNull) {
  Schema s("x");
  s.required("depth", ArgType::Int, "depth")
      .optional("ratio", ArgType::Float, 0.5, "ratio")
      .optional("names", ArgType::StringList, Json::array({"a"}), "names")
      .optional("maybe", ArgType::Dict, Json(), "optional dict");
  Json j = Json::parse(
      R"({"m": {"ratio": 2}, "n": {"depth": 3, "maybe": null, "names": ["a", 1]}})", "t");
  Config cfg(j);
  std::string msg = message_of([&] { (void)s.apply(cfg["m"]); });
  EXPECT_NE(msg.find("m.depth: required key is missing"), std::string::npos) << msg;
  msg = message_of([&] { (void)s.apply(cfg["n"]); });
  EXPECT_NE(msg.find("n.names: expected list[str]"), std::string::npos) << msg;
  Json ok = s.apply(Config(Json::parse(R"({"depth": 3, "ratio": 2})", "t")));
  EXPECT_EQ(ok.find("ratio")->as_number(), 2.0); // an int is a valid float
  EXPECT_EQ(ok.find("names")->at(0).as_string(), "a");
  EXPECT_EQ(ok.find("maybe"), nullptr);
}
