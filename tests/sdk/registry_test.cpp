#include <gtest/gtest.h>

#include <algorithm>

#include "test_support.h"

#include <selfsup/interfaces/data.h>
#include <selfsup/registry.h>

using namespace selfsup;
using selfsup::test::message_of;

namespace {

class Tag final : public Transform {
public:
  explicit Tag(int64_t v, std::string p) : value(v), plugin(std::move(p)) {}
  void apply(Sample&, Rng&) const override {}
  int64_t value;
  std::string plugin; // which provider made it
};

// A kind no list knows: an interface of its own, as a family plugin would declare one.
class MaskGenerator {
public:
  static constexpr const char* kKind = "mask_generator";
  virtual ~MaskGenerator() = default;
  virtual int64_t ratio_percent() const = 0;
};

class BlockMask final : public MaskGenerator {
public:
  int64_t ratio_percent() const override { return 75; }
};

// Another interface that claims the kind "transform": registered under that kind, but what
// its factory makes is no Transform.
class NotATransform {
public:
  static constexpr const char* kKind = "transform";
  virtual ~NotATransform() = default;
};

// A kind that is no identifier.
struct Odd {
  static constexpr const char* kKind = "Mask Generator";
};

// A transform that builds a child transform from its own config (as BaseModel builds its
// backbone): the child must come from the same registry.
class Wrapper final : public Transform {
public:
  explicit Wrapper(const Config& cfg) : inner(build<Transform>(cfg["inner"])) {}
  void apply(Sample&, Rng&) const override {}
  std::shared_ptr<Transform> inner;
};

void add_tag(Registrar& r, const std::string& name = "Tag") {
  const std::string plugin = r.plugin();
  r.add<Transform>(
      name,
      [plugin](const Config& c) { return std::make_shared<Tag>(c.get<int64_t>("value"), plugin); },
      Schema("doc").optional("value", ArgType::Int, 7, "a value"));
}

// Commits a plugin `plugin` (file lib<plugin>.so) providing the transform `name`.
void commit_tag(Registry& reg, const std::string& plugin, const std::string& name = "Tag") {
  Registrar r(plugin, "lib" + plugin + ".so");
  add_tag(r, name);
  r.commit(reg);
}

const Tag& as_tag(const std::shared_ptr<Transform>& t) {
  return dynamic_cast<const Tag&>(*t);
}

Config cfg_of(const Registry& reg, const char* json) {
  return Config(Json::parse(json, "t"), "pipeline[0]").with_registry(reg);
}

} // namespace

TEST(RegistryTest, BuildsWithDefaultsAndScopes) {
  Registry reg;
  commit_tag(reg, "p1");
  EXPECT_EQ(as_tag(reg.build<Transform>(Config(Json::object({{"type", "Tag"}})))).value, 7);
  EXPECT_EQ(as_tag(build<Transform>(cfg_of(reg, R"({"type": "p1.Tag", "value": 3})"))).value, 3);
  EXPECT_NE(reg.find("transform", "mmcls.Tag"), nullptr); // OpenMMLab scope: any provider
  EXPECT_EQ(reg.find("transform", "p2.Tag"), nullptr);    // another plugin: no
  EXPECT_EQ(reg.find("dataset", "Tag"), nullptr);         // another kind: no
  const RegistryEntry* e = reg.find("transform", "Tag");
  ASSERT_NE(e, nullptr);
  EXPECT_EQ(e->plugin, "p1");
  EXPECT_EQ(e->file, "libp1.so");
  EXPECT_EQ(e->interface_name(), "selfsup::Transform");
  std::string msg =
      message_of([&] { (void)build<Transform>(cfg_of(reg, R"({"type": "p2.Tag"})")); });
  EXPECT_NE(msg.find("pipeline[0].type: unknown transform type 'p2.Tag'; 'Tag' is provided by "
                     "plugin 'p1'"),
            std::string::npos)
      << msg;
}

TEST(RegistryTest, TwoPluginsMayShareANameAndPluginDotTypeChooses) {
  Registry reg;
  commit_tag(reg, "first");
  commit_tag(reg, "second");
  EXPECT_EQ(as_tag(build<Transform>(cfg_of(reg, R"({"type": "first.Tag"})"))).plugin, "first");
  EXPECT_EQ(as_tag(build<Transform>(cfg_of(reg, R"({"type": "second.Tag"})"))).plugin, "second");
  EXPECT_EQ(reg.providers("transform", "Tag").size(), 2u);
  EXPECT_EQ(reg.find("transform", "second.Tag")->plugin, "second");
  // A bare name (or an OpenMMLab scope, which names no plugin) is ambiguous: the error is at
  // the `type` key, names both providers with their files, and says how to choose.
  for (const char* json : {R"({"type": "Tag"})", R"({"type": "mmselfsup.Tag"})"}) {
    std::string msg = message_of([&] { (void)build<Transform>(cfg_of(reg, json)); });
    EXPECT_EQ(msg.rfind("pipeline[0].type: transform type '", 0), 0u) << msg;
    EXPECT_NE(msg.find("is provided by 2 plugins: plugin 'first' (libfirst.so) and plugin "
                       "'second' (libsecond.so); write 'first.Tag' or 'second.Tag' to choose one"),
              std::string::npos)
        << msg;
    EXPECT_THROW((void)build<Transform>(cfg_of(reg, json)), ConfigError);
  }
  std::string msg = message_of([&] { (void)reg.find("transform", "Tag"); });
  EXPECT_NE(msg.find("plugin 'first' (libfirst.so) and plugin 'second'"), std::string::npos) << msg;
  // The same name under another kind is another type.
  Registrar other("third", "libthird.so");
  other.add<MaskGenerator>(
      "Tag", [](const Config&) { return std::make_shared<BlockMask>(); }, Schema("doc"));
  other.commit(reg);
  EXPECT_EQ(reg.find("mask_generator", "Tag")->plugin, "third");
}

TEST(RegistryTest, RejectsTheSamePluginRegisteringANameTwice) {
  Registry reg;
  commit_tag(reg, "a");
  // Again under the same plugin name (e.g. its register function run twice).
  std::string msg = message_of([&] { commit_tag(reg, "a"); });
  EXPECT_NE(msg.find("transform type 'Tag' is already registered by plugin 'a' (liba.so)"),
            std::string::npos)
      << msg;
  // Twice in one register function.
  Registrar r("b", "libb.so");
  add_tag(r, "Twice");
  add_tag(r, "Twice");
  msg = message_of([&] { r.commit(reg); });
  EXPECT_NE(msg.find("plugin 'b' (libb.so): transform type 'Twice' is registered twice by the "
                     "same plugin"),
            std::string::npos)
      << msg;
  EXPECT_EQ(reg.find("transform", "Twice"), nullptr);
}

TEST(RegistryTest, CommitIsAllOrNothing) {
  Registry reg;
  Registrar r("c", "libc.so");
  add_tag(r, "Fresh");
  add_tag(r, "Bad.Name");
  EXPECT_THROW(r.commit(reg), RegistryError);
  EXPECT_EQ(reg.find("transform", "Fresh"), nullptr);
  EXPECT_TRUE(reg.entries().empty());
}

TEST(RegistryTest, AnyIdentifierIsAKindListedAfterTheKnownOnes) {
  Registry reg;
  Registrar r("mim", "libmim.so");
  r.add<MaskGenerator>(
      "BlockMask", [](const Config&) { return std::make_shared<BlockMask>(); }, Schema("doc"));
  add_tag(r);
  r.commit(reg);
  auto mask = build<MaskGenerator>(cfg_of(reg, R"({"type": "BlockMask"})"));
  EXPECT_EQ(mask->ratio_percent(), 75);
  // Known kinds first (DESIGN.md's list), then the others alphabetically.
  auto kinds = reg.kinds();
  EXPECT_EQ(kinds.front(), "algorithm");
  EXPECT_EQ(kinds.back(), "mask_generator");
  for (const char* k : {"data_preprocessor", "sampler", "optim_wrapper", "train_loop"})
    EXPECT_NE(std::find(kinds.begin(), kinds.end(), k), kinds.end()) << k;
  auto all = reg.entries();
  ASSERT_EQ(all.size(), 2u);
  EXPECT_EQ(all[0]->kind, "transform");
  EXPECT_EQ(all[1]->kind, "mask_generator");
}

TEST(RegistryTest, RefusesAKindThatIsNoIdentifier) {
  Registry reg;
  Registrar r("odd", "libodd.so");
  r.add<Odd>(
      "X", [](const Config&) { return std::make_shared<Odd>(); }, Schema("doc"));
  std::string msg = message_of([&] { r.commit(reg); });
  EXPECT_NE(msg.find("invalid kind 'Mask Generator'"), std::string::npos) << msg;
}

TEST(RegistryTest, BuildChecksTheInterfaceBeforeTheCast) {
  Registry reg;
  Registrar r("liar", "libliar.so");
  r.add<NotATransform>(
      "Liar", [](const Config&) { return std::make_shared<NotATransform>(); }, Schema("doc"));
  r.commit(reg);
  std::string msg = message_of([&] { (void)build<Transform>(cfg_of(reg, R"({"type": "Liar"})")); });
  EXPECT_NE(
      msg.find("pipeline[0].type: transform type 'Liar' from plugin 'liar' (libliar.so) "
               "was registered as (anonymous namespace)::NotATransform, which cannot be built as "
               "selfsup::Transform"),
      std::string::npos)
      << msg;
  // Under its own interface it builds.
  EXPECT_NE(build<NotATransform>(cfg_of(reg, R"({"type": "Liar"})")), nullptr);
}

TEST(RegistryTest, FactoriesBuildChildrenFromTheSameRegistry) {
  Registry reg;
  Registrar r("local", "liblocal.so");
  add_tag(r, "LocalTag");
  r.add<Transform>(
      "Wrapper", [](const Config& c) { return std::make_shared<Wrapper>(c); },
      Schema("doc").required("inner", ArgType::Dict, "the wrapped transform"));
  r.commit(reg);
  // Neither type is in the process-wide registry: the child is found through the Config.
  EXPECT_EQ(Registry::global().find("transform", "Wrapper"), nullptr);
  auto t = reg.build<Transform>(Config(
      Json::parse(R"({"type": "Wrapper", "inner": {"type": "LocalTag", "value": 5}})", "t")));
  EXPECT_EQ(as_tag(dynamic_cast<const Wrapper&>(*t).inner).value, 5);
  // A config without a registry builds from the global one, which knows none of these.
  std::string msg = message_of(
      [&] { (void)build<Transform>(Config(Json::parse(R"({"type": "LocalTag"})", "t"))); });
  EXPECT_NE(msg.find("unknown transform type 'LocalTag'"), std::string::npos) << msg;
  // derive() keeps the registry for a config a factory rewrote.
  Config c = cfg_of(reg, R"({"x": 1})");
  EXPECT_EQ(&c.derive(Json::object({{"type", "LocalTag"}}), "p").registry(), &reg);
  EXPECT_EQ(&c["x"].registry(), &reg);
}

TEST(RegistryTest, UnknownTypeNamesPathAndSuggests) {
  Registry reg;
  commit_tag(reg, "p", "RandomFlip");
  reg.note_refused("/plugins/libbroken.so", "plugin ABI version 9, this selfsup expects 1");
  Json j = Json::parse(R"({"pipeline": [{"type": "RandomFlp"}]})", "t");
  Config cfg = Config(j).with_registry(reg);
  std::string msg = message_of([&] { (void)build<Transform>(cfg["pipeline"].at(0)); });
  EXPECT_NE(msg.find("pipeline[0].type: unknown transform type 'RandomFlp'"), std::string::npos)
      << msg;
  EXPECT_NE(msg.find("did you mean 'RandomFlip'"), std::string::npos) << msg;
  EXPECT_NE(msg.find("libbroken.so was refused: plugin ABI version 9"), std::string::npos) << msg;
  msg = message_of([&] { (void)reg.build<Transform>(Config(Json::object())); });
  EXPECT_EQ(msg.rfind("type: required key is missing", 0), 0u) << msg;
}

TEST(RegistryTest, SchemaRejectsUnknownKeysAndWrongTypes) {
  Registry reg;
  commit_tag(reg, "p");
  Json j =
      Json::parse(R"({"a": {"type": "Tag", "valu": 1}, "b": {"type": "Tag", "value": "x"}})", "t");
  Config cfg(j);
  std::string msg = message_of([&] { (void)reg.build<Transform>(cfg["a"]); });
  EXPECT_NE(msg.find("a.valu: unknown key (accepted: value)"), std::string::npos) << msg;
  msg = message_of([&] { (void)reg.build<Transform>(cfg["b"]); });
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

// A scope variant ("mmcls.Tag") is what the scoped name finds first; the bare name and the
// other scopes keep the plain type; a plugin prefix still narrows. Names with another '.' are
// refused.
TEST(RegistryTest, ScopeVariantsAreFoundByTheirScopeOnly) {
  Registry reg;
  Registrar r("p1", "libp1.so");
  add_tag(r);
  r.add<Transform>(
      "mmcls.Tag", [](const Config&) { return std::make_shared<Tag>(1, "mmcls variant"); },
      Schema("doc"));
  r.commit(reg);
  auto plugin_of = [&](const char* type) {
    return as_tag(
               build<Transform>(cfg_of(reg, (std::string(R"({"type": ")") + type + "\"}").c_str())))
        .plugin;
  };
  EXPECT_EQ(plugin_of("mmcls.Tag"), "mmcls variant");
  EXPECT_EQ(plugin_of("p1.mmcls.Tag"), "mmcls variant");
  EXPECT_EQ(plugin_of("Tag"), "p1");
  EXPECT_EQ(plugin_of("mmselfsup.Tag"), "p1");
  EXPECT_EQ(plugin_of("p1.Tag"), "p1");
  EXPECT_EQ(reg.find("transform", "mmcls.Tag")->name, "mmcls.Tag");
  EXPECT_EQ(reg.find("transform", "p2.mmcls.Tag"), nullptr);
  for (const char* bad : {"other.Tag", "mmcls.a.Tag", "mmcls.", ".Tag"}) {
    Registrar b("p2", "libp2.so");
    add_tag(b, bad);
    const std::string msg = message_of([&] { b.commit(reg); });
    EXPECT_NE(msg.find("invalid type name '" + std::string(bad) + "'"), std::string::npos) << msg;
  }
}
