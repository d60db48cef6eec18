#include <gtest/gtest.h>

#include <cmath>
#include <fstream>

#include <selfsup/core/checkpoint.h>
#include <selfsup/core/config_file.h>
#include <selfsup/errors.h>

#include "test_support.h"

using namespace selfsup;
using selfsup::test::message_of;
using selfsup::test::TempDir;
using selfsup::test::write_file;

TEST(ConfigFileTest, InheritsRecursivelyAndMerges) {
  TempDir d;
  write_file(
      d.path() / "_base_/models/m.json",
      R"({"model": {"type": "SimCLR", "backbone": {"type": "ResNet", "depth": 50, "out_indices": [4]},
                  "head": {"type": "ContrastiveHead", "temperature": 0.1}}})");
  write_file(d.path() / "_base_/sched.json", R"({"train_cfg": {"max_epochs": 200}, "lr": 0.3})");
  write_file(d.path() / "_base_/both.json", R"({"_base_": ["models/m.json", "sched.json"]})");
  write_file(d.path() / "exp/child.json",
             R"({"_base_": "../_base_/both.json",
                 "model": {"backbone": {"depth": 18}, "head": {"_delete_": true, "type": "Other"}},
                 "lr": 0.5})");
  Json cfg = core::load_config_file((d.path() / "exp/child.json").string());
  const Json& model = *cfg.find("model");
  EXPECT_EQ(model.find("type")->as_string(), "SimCLR");
  EXPECT_EQ(model.find("backbone")->find("depth")->as_int(), 18);
  EXPECT_EQ(model.find("backbone")->find("out_indices")->at(0).as_int(), 4);
  EXPECT_EQ(model.find("head")->find("temperature"), nullptr); // _delete_ replaced the dict
  EXPECT_EQ(model.find("head")->find("_delete_"), nullptr);
  EXPECT_EQ(cfg.find("lr")->as_number(), 0.5);
  EXPECT_EQ(cfg.find("train_cfg")->find("max_epochs")->as_int(), 200);
  EXPECT_EQ(cfg.find("_base_"), nullptr);
}

TEST(ConfigFileTest, ErrorsNameTheFile) {
  TempDir d;
  write_file(d.path() / "a.json", R"({"_base_": "missing.json"})");
  std::string msg =
      message_of([&] { (void)core::load_config_file((d.path() / "a.json").string()); });
  EXPECT_NE(msg.find("a.json: base config"), std::string::npos) << msg;
  EXPECT_NE(msg.find("missing.json not found"), std::string::npos) << msg;

  write_file(d.path() / "x.json", R"({"_base_": "y.json"})");
  write_file(d.path() / "y.json", R"({"_base_": "x.json"})");
  msg = message_of([&] { (void)core::load_config_file((d.path() / "x.json").string()); });
  EXPECT_NE(msg.find("cycle"), std::string::npos) << msg;

  write_file(d.path() / "bad.json", "{\"a\": 1,,}");
  msg = message_of([&] { (void)core::load_config_file((d.path() / "bad.json").string()); });
  EXPECT_NE(msg.find("bad.json:1:"), std::string::npos) << msg;

  write_file(d.path() / "num.json", R"({"_base_": [3]})");
  msg = message_of([&] { (void)core::load_config_file((d.path() / "num.json").string()); });
  EXPECT_NE(msg.find("_base_[0]: expected a path, got 3"), std::string::npos) << msg;

  write_file(d.path() / "b1.json", R"({"k": 1})");
  write_file(d.path() / "b2.json", R"({"k": 2})");
  write_file(d.path() / "twice.json", R"({"_base_": ["b1.json", "b2.json"]})");
  msg = message_of([&] { (void)core::load_config_file((d.path() / "twice.json").string()); });
  EXPECT_NE(msg.find("define 'k' twice"), std::string::npos) << msg;

  EXPECT_THROW((void)core::load_config_file((d.path() / "nope.json").string()), ConfigError);
}

TEST(ConfigFileTest, OverridesAreTyped) {
  EXPECT_EQ(core::parse_override_value("0.2"), Json(0.2));
  EXPECT_TRUE(core::parse_override_value("64").is_int());
  EXPECT_EQ(core::parse_override_value("true"), Json(true));
  EXPECT_EQ(core::parse_override_value("False"), Json(false));
  EXPECT_TRUE(core::parse_override_value("None").is_null());
  EXPECT_EQ(core::parse_override_value("bicubic"), Json("bicubic"));
  EXPECT_EQ(core::parse_override_value("'12'"), Json("12"));
  EXPECT_EQ(core::parse_override_value("[1,2]"), Json::array({1, 2}));
  EXPECT_EQ(core::parse_override_value("1,2"), Json::array({1, 2}));
  EXPECT_EQ(core::parse_override_value("[[1,2],[a]]"),
            Json::array({Json::array({1, 2}), Json::array({"a"})}));

  Json cfg = Json::parse(R"({"model": {"head": {"temperature": 0.1}},
                             "param_scheduler": [{"end": 10}, {"end": 200}]})",
                         "t");
  core::apply_overrides(cfg, {"model.head.temperature=0.2", "train_dataloader.batch_size=64",
                              "param_scheduler.1.end=50", "model.backbone.out_indices=[1,4]"});
  EXPECT_EQ(cfg.find("model")->find("head")->find("temperature")->as_number(), 0.2);
  EXPECT_EQ(cfg.find("train_dataloader")->find("batch_size")->as_int(), 64);
  EXPECT_EQ(cfg.find("param_scheduler")->at(1).find("end")->as_int(), 50);
  EXPECT_EQ(*cfg.find("model")->find("backbone")->find("out_indices"), Json::array({1, 4}));

  std::string msg = message_of([&] { core::apply_override(cfg, "model.head.temperature.x=1"); });
  EXPECT_NE(msg.find("model.head.temperature.x"), std::string::npos) << msg;
  msg = message_of([&] { core::apply_override(cfg, "param_scheduler.5.end=1"); });
  EXPECT_NE(msg.find("param_scheduler.5"), std::string::npos) << msg;
  EXPECT_THROW(core::apply_override(cfg, "novalue"), ConfigError);
  EXPECT_THROW(core::apply_override(cfg, "a..b=1"), ConfigError);
}

TEST(ConfigFileTest, HostileValuesFailClearlyInsteadOfCrashing) {
  // Non-finite numbers: JSON has none, so a config may not hold one.
  EXPECT_TRUE(test::has_substr(
      test::message_of<ConfigError>([] { (void)core::parse_override_value("1e400"); }),
      "'1e400': not a finite number"));
  for (const char* text : {R"({"lr": 1e400})", R"({"lr": NaN})", R"({"lr": Infinity})"})
    EXPECT_TRUE(test::has_substr(
        test::message_of<ConfigError>([&] { (void)Json::parse(text, "cfg.json"); }), "cfg.json:1:"))
        << text;
  // What is computed non-finite (a diverged loss) is written as null: the output stays JSON.
  Json rec = Json::object({{"loss", std::nan("")}, {"lr", HUGE_VAL}});
  EXPECT_EQ(rec.dump(), R"({"loss":null,"lr":null})");

  // 50,000 levels: a clear error, not a stack overflow.
  const std::string deep = std::string(50000, '[') + std::string(50000, ']');
  EXPECT_TRUE(
      test::has_substr(test::message_of<ConfigError>([&] { (void)Json::parse(deep, "deep.json"); }),
                       "deep.json: nested more than 512 levels deep"));
  EXPECT_TRUE(test::has_substr(test::message_of<ConfigError>([&] {
                                 (void)core::parse_override_value("{\"a\": " + deep + "}");
                               }),
                               "nested more than 512 levels deep"));
  // An index no list can have: a clear message naming the key, not a bare stoul.
  Json cfg = Json::parse(R"({"param_scheduler": [{"end": 10}]})", "t");
  EXPECT_TRUE(test::has_substr(test::message_of<ConfigError>([&] {
                                 core::apply_override(cfg,
                                                      "param_scheduler.99999999999999999999.end=1");
                               }),
                               "param_scheduler.99999999999999999999"));
}

TEST(ConfigFileTest, ReadsOnlyRegularFilesOfSaneSize) {
  test::TempDir d;
  // A base that never ends (/dev/zero) or is a folder: refused before reading, naming both.
  test::write_file(d.path() / "zero.json", R"({"_base_": "/dev/zero"})");
  EXPECT_TRUE(test::has_substr(test::message_of<ConfigError>([&] {
                                 (void)core::load_config_file((d.path() / "zero.json").string());
                               }),
                               "base config /dev/zero: not a regular file"));
  EXPECT_TRUE(test::has_substr(
      test::message_of<ConfigError>([&] { (void)core::load_config_file(d.str()); }),
      d.str() + ": not a regular file"));
  // A file far larger than any config.
  {
    std::ofstream big(d.path() / "big.json", std::ios::binary);
    big << "{\"a\": \"" << std::string(17u << 20, 'x') << "\"}";
  }
  EXPECT_TRUE(test::has_substr(test::message_of<ConfigError>([&] {
                                 (void)core::load_config_file((d.path() / "big.json").string());
                               }),
                               "a config may have at most"));
  // A folder given as a checkpoint names the path.
  EXPECT_TRUE(
      test::has_substr(test::message_of<ValueError>([&] { (void)core::load_checkpoint(d.str()); }),
                       d.str() + ": not a checkpoint file"));
}
