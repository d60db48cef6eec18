#include <gtest/gtest.h>

#include <cmath>
#include <fstream>

#include <selfsup/core/checkpoint.h>
#include <selfsup/core/config_file.h>
#include <selfsup/errors.h>

#include "test_support.h"

using namespace selfsup;
using selfsup::test::has_substr;
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
  EXPECT_EQ(core::parse_override_value("'12'"), Json(12)); // mmengine strips quotes first
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

// --cfg-options values as mmengine 0.8.4's DictAction (_parse_iterable, then
// _parse_int_float_bool): quotes stripped at every level, (..) and [..] nested, bare comma
// lists, Python int/float grammar, true/false in any case, None. A {...} JSON object (commas
// inside it) is our addition: DictAction would split it into strings.
TEST(ConfigFileTest, OverrideValuesAsMMEngineDictAction) {
  using core::parse_override_value;
  EXPECT_EQ(parse_override_value("'12'"), Json(12));
  EXPECT_EQ(parse_override_value("\"12\""), Json(12));
  EXPECT_EQ(parse_override_value("'0.5'"), Json(0.5));
  EXPECT_EQ(parse_override_value("'abc'"), Json("abc"));
  EXPECT_EQ(parse_override_value(R"(["a", 'b', "3"])"), Json::array({"a", "b", 3}));
  for (const char* t : {"True", "true", "TRUE", "tRuE"})
    EXPECT_EQ(parse_override_value(t), Json(true)) << t;
  for (const char* t : {"False", "false", "FALSE"})
    EXPECT_EQ(parse_override_value(t), Json(false)) << t;
  EXPECT_TRUE(parse_override_value("None").is_null());
  EXPECT_EQ(parse_override_value("none"), Json("none")); // only 'None', as Python
  // Nested brackets and tuples (tuples become JSON lists); mmengine's own docstring example.
  EXPECT_EQ(parse_override_value("[(1,2),(3,4)]"),
            Json::array({Json::array({1, 2}), Json::array({3, 4})}));
  EXPECT_EQ(parse_override_value("(1, 2)"), Json::array({1, 2}));
  EXPECT_EQ(parse_override_value("[(1, 2, 3), [a, b], c]"),
            Json::array({Json::array({1, 2, 3}), Json::array({"a", "b"}), "c"}));
  EXPECT_EQ(parse_override_value("(1,2),(3,4)"),
            Json::array({Json::array({1, 2}), Json::array({3, 4})}));
  // JSON objects keep their commas and their types.
  EXPECT_EQ(parse_override_value(R"([{"a":1,"c":[1,2]},{"b":2}])"),
            Json::parse(R"([{"a":1,"c":[1,2]},{"b":2}])", "t"));
  EXPECT_EQ(parse_override_value(R"({"a": "12", "b": [1, 2]})"),
            Json::parse(R"({"a": "12", "b": [1, 2]})", "t"));
  // The loop of _parse_iterable: a trailing comma ends the list, an empty element is ''.
  EXPECT_EQ(parse_override_value("1,2,"), Json::array({1, 2}));
  EXPECT_EQ(parse_override_value("1,,2"), Json::array({1, "", 2}));
  EXPECT_EQ(parse_override_value("[]"), Json::array());
  EXPECT_EQ(parse_override_value(""), Json(""));
  // Python's int() and float(): underscores, signs, exponents; hex is a string.
  EXPECT_EQ(parse_override_value("1_000"), Json(1000));
  EXPECT_EQ(parse_override_value("+5"), Json(5));
  EXPECT_EQ(parse_override_value("-.5"), Json(-0.5));
  EXPECT_EQ(parse_override_value("1e3"), Json(1000.0));
  EXPECT_FALSE(parse_override_value("1e3").is_int());
  EXPECT_EQ(parse_override_value("0x10"), Json("0x10"));
  EXPECT_EQ(parse_override_value("1__0"), Json("1__0"));
  EXPECT_EQ(parse_override_value("a(b"), Json("a(b")); // no comma: a value, as mmengine
  EXPECT_TRUE(has_substr(message_of<ConfigError>([] { (void)parse_override_value("[1,2"); }),
                         "unbalanced brackets in '[1,2'"));
  EXPECT_TRUE(has_substr(message_of<ConfigError>([] { (void)parse_override_value("inf"); }),
                         "not a finite number"));
  const std::string deep = std::string(600, '[') + std::string(600, ']');
  EXPECT_TRUE(has_substr(message_of<ConfigError>([&] { (void)parse_override_value(deep); }),
                         "nested more than 512 levels deep"));
}

// mmengine's merge_from_dict(allow_list_keys=True): a.b=v is {a: {b: v}} merged into the
// config, so a dict merges rather than replaces, and a dict over a non-dict is an error.
TEST(ConfigFileTest, OverrideDictsMergeAsMMEngine) {
  Json cfg = Json::parse(R"({"model": {"neck": {"type": "X", "hid": 4, "out": 2}},
                             "param_scheduler": [{"type": "A", "end": 10}, {"end": 200}],
                             "load_from": null, "lr": 0.1})",
                         "t");
  core::apply_override(cfg, R"(model.neck={"hid": 8})");
  EXPECT_EQ(*cfg.find("model")->find("neck"),
            Json::parse(R"({"type": "X", "hid": 8, "out": 2})", "t"));
  core::apply_override(cfg, R"(model.neck={"_delete_": 1, "type": "Y"})");
  EXPECT_EQ(*cfg.find("model")->find("neck"), Json::parse(R"({"type": "Y"})", "t"));
  core::apply_override(cfg, R"(param_scheduler.0={"begin": 1})");
  EXPECT_EQ(cfg.find("param_scheduler")->at(0),
            Json::parse(R"({"type": "A", "end": 10, "begin": 1})", "t"));
  core::apply_override(cfg, "param_scheduler.1.end=50");
  EXPECT_EQ(cfg.find("param_scheduler")->at(1), Json::parse(R"({"end": 50})", "t"));
  core::apply_override(cfg, "load_from=x.pth"); // a value replaces anything
  EXPECT_EQ(*cfg.find("load_from"), Json("x.pth"));
  core::apply_override(cfg, "model.neck._delete_=True"); // {neck: {_delete_: True}}: emptied
  EXPECT_EQ(*cfg.find("model")->find("neck"), Json::object());

  Json c2 = Json::parse(R"({"lr": 0.1, "init_cfg": null, "l": [1]})", "t");
  EXPECT_TRUE(has_substr(message_of<ConfigError>([&] { core::apply_override(c2, "lr.x=1"); }),
                         "--cfg-options lr.x: lr: a dict cannot merge into 0.1 (float)"));
  EXPECT_TRUE(
      has_substr(message_of<ConfigError>([&] { core::apply_override(c2, "init_cfg.type=P"); }),
                 "init_cfg: a dict cannot merge into null (null)"));
  EXPECT_TRUE(has_substr(message_of<ConfigError>([&] { core::apply_override(c2, "l.x=1"); }),
                         "l.x: 'x' is no index of the list at l"));
}

// _base_ merging as mmengine's Config._merge_a_into_b: a dict over a non-dict (null too) is
// an error, a value over a dict replaces it, and _delete_ takes any truthy value.
TEST(ConfigFileTest, BaseMergeConflictsAndDeleteAsMMEngine) {
  TempDir d;
  write_file(d.path() / "base.json",
             R"({"model": {"backbone": 5, "neck": null, "head": {"a": 1}, "x": {"k": 1}}})");
  auto load = [&](const std::string& child) {
    write_file(d.path() / "child.json", R"({"_base_": "base.json", "model": )" + child + "}");
    return core::load_config_file((d.path() / "child.json").string());
  };
  std::string msg = message_of<ConfigError>([&] { (void)load(R"({"backbone": {"depth": 18}})"); });
  EXPECT_TRUE(has_substr(msg, "child.json: model.backbone: a dict cannot merge into 5 (int)"));
  EXPECT_TRUE(has_substr(msg, "\"_delete_\": true"));
  EXPECT_TRUE(has_substr(message_of<ConfigError>([&] { (void)load(R"({"neck": {"t": 1}})"); }),
                         "model.neck: a dict cannot merge into null"));
  // Any truthy _delete_ replaces; a falsy one merges (and never reaches the result).
  for (const char* del : {"true", "1", "\"yes\"", "[0]", "{\"a\": 0}"}) {
    Json cfg = load(std::string(R"({"head": {"_delete_": )") + del + R"(, "b": 2}})");
    EXPECT_EQ(*cfg.find("model")->find("head"), Json::parse(R"({"b": 2})", "t")) << del;
  }
  for (const char* del : {"false", "0", "\"\"", "[]", "null"}) {
    Json cfg = load(std::string(R"({"head": {"_delete_": )") + del + R"(, "b": 2}})");
    EXPECT_EQ(*cfg.find("model")->find("head"), Json::parse(R"({"a": 1, "b": 2})", "t")) << del;
  }
  Json cfg = load(R"({"backbone": {"_delete_": true, "depth": 18}, "x": 3})");
  EXPECT_EQ(*cfg.find("model")->find("backbone"), Json::parse(R"({"depth": 18})", "t"));
  EXPECT_EQ(*cfg.find("model")->find("x"), Json(3)); // a value over a dict replaces it
}

// {{_base_.x}} (unquoted, as mmengine's text substitution, or quoted) and the variable form
// "_base_.x" read the merged _base_ configs of the file, before the file's own keys.
TEST(ConfigFileTest, BaseReferences) {
  TempDir d;
  write_file(d.path() / "base.json",
             R"({"num_classes": 10, "model": {"head": {"num_classes": 7, "loss": {"type": "CE"}}},
                 "pipe": [{"type": "A"}, {"type": "B"}]})");
  write_file(d.path() / "child.json", R"({
    "_base_": "base.json",
    // a comment's quote ' and {{_base_.nope}} are left alone
    "n": {{_base_.num_classes}},
    "n2": {{ _base_.model.head.num_classes }},
    "loss": "{{_base_.model.head.loss}}",
    "var": "_base_.pipe",
    "first": "_base_.pipe.1",
    "text": "a {{literal}} with \" and {{ braces",
    "model": {"head": {"num_classes": {{_base_.num_classes}}}}
  })");
  const Json cfg = core::load_config_file((d.path() / "child.json").string());
  EXPECT_EQ(*cfg.find("n"), Json(10));
  EXPECT_EQ(*cfg.find("n2"), Json(7));
  EXPECT_EQ(*cfg.find("loss"), Json::parse(R"({"type": "CE"})", "t"));
  EXPECT_EQ(cfg.find("var")->size(), 2u);
  EXPECT_EQ(*cfg.find("first"), Json::parse(R"({"type": "B"})", "t"));
  EXPECT_EQ(*cfg.find("text"), Json("a {{literal}} with \" and {{ braces"));
  EXPECT_EQ(cfg.find("model")->find("head")->find("num_classes")->as_int(), 10);
  EXPECT_EQ(*cfg.find("model")->find("head")->find("loss"), Json::parse(R"({"type": "CE"})", "t"));

  write_file(d.path() / "missing.json", R"({"_base_": "base.json", "x": {{_base_.model.nope}}})");
  std::string msg = message_of<ConfigError>(
      [&] { (void)core::load_config_file((d.path() / "missing.json").string()); });
  EXPECT_TRUE(has_substr(msg, "missing.json: x: _base_.model.nope: 'nope' is not defined in "
                              "_base_.model (dict); it has: head"));
  write_file(d.path() / "nobase.json", R"({"x": "{{_base_.a}}"})");
  EXPECT_TRUE(has_substr(message_of<ConfigError>([&] {
                           (void)core::load_config_file((d.path() / "nobase.json").string());
                         }),
                         "nobase.json: x: _base_.a: this file has no _base_"));
  write_file(d.path() / "part.json", R"({"_base_": "base.json", "x": "p{{_base_.num_classes}}"})");
  EXPECT_TRUE(has_substr(message_of<ConfigError>([&] {
                           (void)core::load_config_file((d.path() / "part.json").string());
                         }),
                         "must be the whole value"));
}
