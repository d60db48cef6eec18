// The pre-flight walker (Registry::validate): every problem of a config tree at once, each
// with its JSON path, without building anything; and what schemas declare for it
// (components, nested dicts, path constraints, validators).
#include <gtest/gtest.h>

#include <algorithm>
#include <atomic>
#include <filesystem>

#include "test_support.h"

#include <selfsup/interfaces/data.h>
#include <selfsup/interfaces/modules.h>
#include <selfsup/options.h>
#include <selfsup/registry.h>

using namespace selfsup;
using selfsup::test::has_substr;
using selfsup::test::message_of;

namespace {

std::atomic<int> g_built{0}; // factories that ran: the walker must build nothing

class Noop final : public Transform {
public:
  void apply(Sample&, Rng&) const override {}
};

struct ScaleOptions {
  double factor = 1.0;
  double lo = 0.0, hi = 1.0;
  static OptionTable<ScaleOptions> table() {
    using O = ScaleOptions;
    return OptionTable<O>("scales", O())
        .optional("factor", &O::factor, "the factor", check::gt(0))
        .optional("lo", &O::lo, "low")
        .optional("hi", &O::hi, "high")
        .rule([](const O& o, const Config& cfg) {
          if (o.lo > o.hi) cfg.fail_key("lo", "must be <= hi");
        });
  }
};

struct NormOptions {
  std::string type = "BN";
  static OptionTable<NormOptions> table() {
    return OptionTable<NormOptions>("norm", NormOptions())
        .optional("type", &NormOptions::type, "norm type", check::one_of({"BN", "GN"}));
  }
};

// A container type: a nested options struct, one component, a list of them, a list of lists,
// a component with a default type and a file that must exist.
struct BoxOptions {
  Config inner, steps, stages, maybe;
  std::optional<NormOptions> norm_cfg;
  std::optional<std::string> weights;
  static OptionTable<BoxOptions> table() {
    using O = BoxOptions;
    return OptionTable<O>("a box", O())
        .required("inner", &O::inner, "one transform")
        .component("transform")
        .optional("steps", &O::steps, "transforms")
        .as(ArgType::List)
        .component("transform")
        .optional("stages", &O::stages, "lists of transforms")
        .as(ArgType::List)
        .component("transform")
        .optional("maybe", &O::maybe, "a transform, Scale unless typed")
        .component("transform", "Scale")
        .optional("norm_cfg", &O::norm_cfg, "nested options")
        .optional("weights", &O::weights, "a file", check::existing_file());
  }
};

const Registry& registry() {
  static Registry reg;
  static const bool once = [] {
    Registrar r("vt", "libvt.so");
    r.add<Transform>(
        "Scale",
        [](const Config& c) {
          ++g_built;
          (void)ScaleOptions::table().parse(c);
          return std::make_shared<Noop>();
        },
        ScaleOptions::table().schema());
    r.add<Transform>(
        "Box",
        [](const Config& c) {
          ++g_built;
          (void)BoxOptions::table().parse(c);
          return std::make_shared<Noop>();
        },
        BoxOptions::table().schema());
    // A plain Schema (no OptionTable) that marks its component by name.
    r.add<Transform>(
        "Wrap",
        [](const Config&) {
          ++g_built;
          return std::make_shared<Noop>();
        },
        Schema("wraps")
            .required("child", ArgType::Dict, "a transform")
            .component("child", "transform"));
    r.commit(reg);
    return true;
  }();
  (void)once;
  return reg;
}

std::vector<std::string> validate(const std::string& json) {
  return registry().validate_component("transform", Config(Json::parse(json, "t"), "pipeline[0]"));
}

bool has(const std::vector<std::string>& problems, const std::string& text) {
  return std::find(problems.begin(), problems.end(), text) != problems.end();
}

std::string joined(const std::vector<std::string>& problems) {
  std::string out;
  for (const auto& p : problems) out += "\n  " + p;
  return out;
}

} // namespace

TEST(ValidateTest, AGoodTreeHasNoProblemAndNothingIsBuilt) {
  g_built = 0;
  const auto problems = validate(R"({"type": "Box", "inner": {"type": "Scale", "factor": 2},
      "steps": [{"type": "Scale"}, {"type": "Wrap", "child": {"type": "Scale"}}],
      "stages": [[{"type": "Scale"}], [{"type": "Scale", "lo": 0.5}]],
      "maybe": {"factor": 3}, "norm_cfg": {"type": "GN"}})");
  EXPECT_TRUE(problems.empty()) << joined(problems);
  EXPECT_EQ(g_built.load(), 0);
}

TEST(ValidateTest, ListsEveryProblemWithItsPath) {
  const auto problems = validate(R"({"type": "Box", "inner": {"type": "Scal"},
      "steps": [{"type": "Scale", "factr": 2}, {"type": "Scale", "factor": -1},
                {"type": "Wrap"}, 7, {"factor": 1}],
      "stages": [[{"type": "Scale", "factor": "big"}]],
      "maybe": {"factor": 0}, "norm_cfg": {"type": "LN"}, "weights": "/no/such/file.pth",
      "extra": 1})");
  for (const char* want :
       {"pipeline[0].inner.type: unknown transform type 'Scal'; did you mean 'Scale'? "
        "(registered: Box, Scale, Wrap)",
        "pipeline[0].steps[0].factr: unknown key (accepted: factor, lo, hi); did you mean "
        "'factor'?",
        "pipeline[0].steps[1].factor: expected float > 0, got -1",
        "pipeline[0].steps[2].child: required key is missing (dict: a transform)",
        "pipeline[0].steps[3]: expected a dict with a 'type' key (a transform), got 7",
        "pipeline[0].steps[4].type: required key is missing (the transform type name)",
        "pipeline[0].stages[0][0].factor: expected float, got \"big\"",
        "pipeline[0].maybe.factor: expected float > 0, got 0",
        "pipeline[0].norm_cfg.type: expected one of \"BN\", \"GN\", got \"LN\"",
        "pipeline[0].weights: expected an existing file, got \"/no/such/file.pth\"",
        "pipeline[0].extra: unknown key (accepted: inner, steps, stages, maybe, norm_cfg, "
        "weights)"})
    EXPECT_TRUE(has(problems, want)) << want << "\n in:" << joined(problems);
  EXPECT_EQ(problems.size(), 11u) << joined(problems);
}

TEST(ValidateTest, RulesRunWhereTheKeysPass) {
  // The rule of an OptionTable (lo <= hi) runs through the schema's validator, once the
  // node's own keys are fine; a node with a key problem reports that one only.
  auto problems = validate(R"({"type": "Scale", "lo": 2, "hi": 1})");
  EXPECT_EQ(problems, std::vector<std::string>{"pipeline[0].lo: must be <= hi"});
  problems = validate(R"({"type": "Scale", "lo": 2, "hi": 1, "x": 0})");
  ASSERT_EQ(problems.size(), 1u) << joined(problems);
  EXPECT_TRUE(has_substr(problems[0], "pipeline[0].x: unknown key"));
  // Deep inside a list of lists, too.
  problems = validate(R"({"type": "Box", "inner": {"type": "Scale"},
      "stages": [[{"type": "Scale", "lo": 5}]]})");
  EXPECT_EQ(problems, std::vector<std::string>{"pipeline[0].stages[0][0].lo: must be <= hi"});
}

TEST(ValidateTest, BuildStillThrowsTheFirstProblemAsBefore) {
  const Config bad =
      Config(Json::parse(R"({"type": "Scale", "factor": -1, "x": 1})", "t"), "pipeline[0]")
          .with_registry(registry());
  EXPECT_EQ(message_of<ConfigError>([&] { (void)registry().build<Transform>(bad); }),
            "pipeline[0].factor: expected float > 0, got -1");
  const Config typo =
      Config(Json::parse(R"({"type": "Scale", "factr": 2})", "t"), "p").with_registry(registry());
  EXPECT_EQ(message_of<ConfigError>([&] { (void)registry().build<Transform>(typo); }),
            "p.factr: unknown key (accepted: factor, lo, hi); did you mean 'factor'?");
  // A required key given as null: one problem, not two.
  auto problems = validate(R"({"type": "Wrap", "child": null})");
  EXPECT_EQ(problems, std::vector<std::string>{
                          "pipeline[0].child: required key is missing (dict: a transform)"});
}

TEST(ValidateTest, WrapperKeysJoinTheComponentsOwn) {
  // A component read beside other keys (as PipelinedDataset reads `pipeline` beside a
  // dataset's own): those keys are walked too, and the component's validator never sees them.
  Schema wrapper("wrapper");
  wrapper.optional("pipeline", ArgType::List, Json(), "transforms")
      .component("pipeline", "transform");
  Schema top("top");
  top.required("dataset", ArgType::Dict, "a transform standing in for a dataset")
      .component("dataset", "transform")
      .nested("dataset", wrapper);
  auto check = [&](const char* json) {
    return registry().validate(Config(Json::parse(json, "t")), top);
  };
  EXPECT_TRUE(check(R"({"dataset": {"type": "Scale", "lo": 0.5,
                                    "pipeline": [{"type": "Scale"}]}})")
                  .empty());
  auto problems = check(R"({"dataset": {"type": "Scale", "pipeline": [{"type": "Nope"}]}})");
  ASSERT_EQ(problems.size(), 1u) << joined(problems);
  EXPECT_TRUE(has_substr(problems[0], "dataset.pipeline[0].type: unknown transform type 'Nope'"));
  problems = check(R"({"dataset": {"type": "Scale", "lo": 3, "pipeline": []}})");
  EXPECT_EQ(problems, std::vector<std::string>{"dataset.lo: must be <= hi"});
}

TEST(ValidateTest, PathConstraints) {
  test::TempDir tmp;
  test::write_file(tmp.path() / "a.pth", "x");
  const std::string file = (tmp.path() / "a.pth").string();
  const auto holds = [](const Constraint& c, const Json& v) { return c.holds(v); };
  EXPECT_TRUE(holds(check::existing_file(), Json(file)));
  EXPECT_FALSE(holds(check::existing_file(), Json(tmp.str())));
  EXPECT_FALSE(holds(check::existing_file(), Json(file + "x")));
  EXPECT_FALSE(holds(check::existing_file(), Json("")));
  EXPECT_TRUE(holds(check::existing_file({"auto"}), Json("auto")));
  EXPECT_TRUE(holds(check::existing_file(), Json(true))); // not a string: the type decides
  EXPECT_TRUE(holds(check::existing_dir(), Json(tmp.str())));
  EXPECT_FALSE(holds(check::existing_dir(), Json(file)));
  EXPECT_TRUE(holds(check::existing_dir({""}), Json(""))); // "": none given (ImageFolder)
  EXPECT_EQ(check::existing_dir({""}).text, "an existing folder");
  EXPECT_TRUE(holds(check::existing_path(), Json(file)));
  EXPECT_TRUE(holds(check::existing_path(), Json(tmp.str())));
  EXPECT_FALSE(holds(check::existing_path(), Json(file + "x")));

  Schema s("paths");
  s.optional("root", ArgType::String, Json((tmp.path() / "gone").string()), "a folder",
             {check::existing_dir()})
      .optional("resume", ArgType::Any, Json(), "a file or auto", {check::existing_file({"auto"})});
  EXPECT_EQ(s.find("resume")->describe(), "an existing file or \"auto\"");
  // build() checks given values; the pre-flight also checks defaults (a default data folder
  // this machine lacks).
  EXPECT_NO_THROW((void)s.apply(Config(Json::parse(R"({"resume": "auto"})", "t"), "x")));
  std::vector<std::string> problems;
  s.collect(Config(Json::parse(R"({"resume": "nope.pth"})", "t"), "x"), problems);
  EXPECT_EQ(problems, (std::vector<std::string>{
                          "x.resume: expected an existing file or \"auto\", got \"nope.pth\"",
                          "x.root: expected an existing folder, got \"" +
                              (tmp.path() / "gone").string() + "\" (the default)"}));
}

TEST(ValidateTest, SchemaAnnotationsNameDeclaredArguments) {
  Schema s("s");
  s.optional("a", ArgType::Dict, Json(), "a");
  EXPECT_THROW(s.component("b", "transform"), std::invalid_argument);
  EXPECT_THROW(s.nested("b", Schema()), std::invalid_argument);
  s.component("a", "transform", "Scale");
  EXPECT_EQ(s.find("a")->component, "transform");
  EXPECT_EQ(s.find("a")->default_type, "Scale");
  // An OptionTable's schema has a validator; adding a key afterwards drops it (it would
  // refuse the new key).
  Schema t = ScaleOptions::table().schema();
  EXPECT_TRUE(bool(t.validator()));
  EXPECT_NE(BoxOptions::table().schema().find("norm_cfg")->fields, nullptr); // by itself
  t.optional("more", ArgType::Int, 1, "more");
  EXPECT_FALSE(bool(t.validator()));
}
