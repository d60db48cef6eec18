#include <gtest/gtest.h>

#include "test_support.h"

#include <optional>
#include <string>
#include <vector>

#include <torch/arg.h>

#include <selfsup/options.h>

namespace selfsup {
namespace {

using test::message_of;

// A nested options struct (a dict inside the neck's options), with its own table.
struct InnerOptions {
  static OptionTable<InnerOptions> table() {
    using namespace check;
    return OptionTable<InnerOptions>("inner", InnerOptions())
        .required("type", &InnerOptions::type, "kind", one_of({"A", "B"}))
        .optional("eps", &InnerOptions::eps, "epsilon", gt(0));
  }
  std::string type = "A";
  double eps = 1e-5;
};

// The shape plugin authors write: TORCH_ARG members with their defaults, required ones in
// the constructor, a private default constructor for the table's prototype.
struct NeckOptions {
  NeckOptions(int64_t in, int64_t hid) : in_channels_(in), hid_channels_(hid) {}
  static OptionTable<NeckOptions> table() {
    using namespace check;
    using O = NeckOptions;
    return OptionTable<O>("a test neck", O())
        .required("in_channels", &O::in_channels_, "input features", gt(0))
        .required("hid_channels", &O::hid_channels_, "hidden width", gt(0))
        .optional("num_layers", &O::num_layers_, "fc layers", ge(1))
        .optional("reduction", &O::reduction_, "how to reduce", one_of({"mean", "sum"}))
        .optional("momentum", &O::momentum_, "in [0, 1]", in(0, 1))
        .optional("strides", &O::strides_, "one per stage", size(2), each(ge(1)))
        .optional("class_weight", &O::class_weight_, "per class", non_empty())
        .optional("inner", &O::inner_, "a nested dict")
        .optional("loss", &O::loss_, "a sub-config, built by type name")
        .rule([](const O& o, const Config& cfg) {
          if (o.num_layers() > o.hid_channels())
            cfg.fail_key("num_layers", "expected at most hid_channels (" +
                                           std::to_string(o.hid_channels()) + ") layers");
        });
  }

  TORCH_ARG(int64_t, in_channels);
  TORCH_ARG(int64_t, hid_channels);
  TORCH_ARG(int64_t, num_layers) = 2;
  TORCH_ARG(std::string, reduction) = "mean";
  TORCH_ARG(double, momentum) = 0.1;
  TORCH_ARG(std::vector<int64_t>, strides) = {1, 2};
  TORCH_ARG(std::optional<std::vector<double>>, class_weight) = std::nullopt;
  TORCH_ARG(InnerOptions, inner) = {};
  TORCH_ARG(Config, loss) = Config(Json::object({{"type", "CrossEntropyLoss"}}));

private:
  NeckOptions() = default;
};

NeckOptions parse(const std::string& text) {
  return NeckOptions::table().parse(Config(Json::parse(text, "test"), "model.neck"));
}

std::string error_of(const std::string& text) {
  return message_of([&] { (void)parse(text); });
}

TEST(OptionTableTest, SchemaComesFromTheOneDeclaration) {
  const Schema s = NeckOptions::table().schema();
  EXPECT_EQ(s.doc(), "a test neck");
  ASSERT_EQ(s.args().size(), 9u);
  const ArgSpec* in = s.find("in_channels");
  ASSERT_NE(in, nullptr);
  EXPECT_TRUE(in->required);
  EXPECT_EQ(in->type, ArgType::Int);
  EXPECT_EQ(in->describe(), "int > 0");
  // Defaults are the members' values in the prototype.
  EXPECT_EQ(s.find("num_layers")->default_value, Json(2));
  EXPECT_FALSE(s.find("num_layers")->required);
  EXPECT_EQ(s.find("reduction")->default_value, Json("mean"));
  EXPECT_EQ(s.find("reduction")->describe(), "one of \"mean\", \"sum\"");
  EXPECT_EQ(s.find("momentum")->describe(), "float in [0, 1]");
  EXPECT_EQ(s.find("strides")->default_value, Json::array({1, 2}));
  EXPECT_EQ(s.find("strides")->describe(), "list[int] of 2 values, each >= 1");
  EXPECT_EQ(s.find("class_weight")->type, ArgType::FloatList);
  EXPECT_TRUE(s.find("class_weight")->default_value.is_null());
  EXPECT_EQ(s.find("inner")->type, ArgType::Dict);
  EXPECT_EQ(s.find("inner")->default_value, Json::object({{"type", "A"}, {"eps", 1e-5}}));
  EXPECT_EQ(s.find("loss")->default_value, Json::object({{"type", "CrossEntropyLoss"}}));
  // `selfsup list --json --verbose` shows the constraint.
  const Json j = s.to_json();
  EXPECT_EQ(*j.find("args")->at(0).find("constraint"), Json("int > 0"));
}

TEST(OptionTableTest, ParsesGivenKeysAndKeepsDefaults) {
  const NeckOptions o = parse(R"({"type": "X", "in_channels": 8, "hid_channels": 16,
                                  "momentum": 0.5, "class_weight": [1, 2.5],
                                  "inner": {"type": "B"}})");
  EXPECT_EQ(o.in_channels(), 8);
  EXPECT_EQ(o.hid_channels(), 16);
  EXPECT_EQ(o.num_layers(), 2);
  EXPECT_EQ(o.reduction(), "mean");
  EXPECT_DOUBLE_EQ(o.momentum(), 0.5);
  EXPECT_EQ(o.strides(), (std::vector<int64_t>{1, 2}));
  ASSERT_TRUE(o.class_weight().has_value());
  EXPECT_EQ(*o.class_weight(), (std::vector<double>{1, 2.5}));
  EXPECT_EQ(o.inner().type, "B");
  EXPECT_DOUBLE_EQ(o.inner().eps, 1e-5);
  // A sub-config keeps its JSON path, for the errors of what is built from it.
  EXPECT_EQ(o.loss().path(), "model.neck.loss");
  EXPECT_EQ(o.loss().get<std::string>("type"), "CrossEntropyLoss");
  EXPECT_FALSE(parse(R"({"in_channels": 1, "hid_channels": 2})").class_weight().has_value());
}

TEST(OptionTableTest, ErrorsNameThePathAndWhatWasExpected) {
  EXPECT_EQ(error_of(R"({"in_channels": 4, "hid_channels": -1})"),
            "model.neck.hid_channels: expected int > 0, got -1");
  EXPECT_EQ(error_of(R"({"in_channels": 4})")
                .rfind("model.neck.hid_channels: required key is "
                       "missing",
                       0),
            0u);
  EXPECT_EQ(error_of(R"({"in_channels": 4, "hid_channels": 4, "hid": 1})")
                .rfind("model.neck.hid: unknown key", 0),
            0u);
  EXPECT_EQ(error_of(R"({"in_channels": 4, "hid_channels": "4"})"),
            "model.neck.hid_channels: expected int, got \"4\"");
  EXPECT_EQ(error_of(R"({"in_channels": 4, "hid_channels": 4, "reduction": "avg"})"),
            "model.neck.reduction: expected one of \"mean\", \"sum\", got \"avg\"");
  EXPECT_EQ(error_of(R"({"in_channels": 4, "hid_channels": 4, "momentum": 1.5})"),
            "model.neck.momentum: expected float in [0, 1], got 1.5");
  EXPECT_EQ(error_of(R"({"in_channels": 4, "hid_channels": 4, "strides": [1, 0]})"),
            "model.neck.strides: expected list[int] of 2 values, each >= 1, got [1,0]");
  EXPECT_EQ(error_of(R"({"in_channels": 4, "hid_channels": 4, "strides": [1]})"),
            "model.neck.strides: expected list[int] of 2 values, each >= 1, got [1]");
  EXPECT_EQ(error_of(R"({"in_channels": 4, "hid_channels": 4, "class_weight": []})"),
            "model.neck.class_weight: expected list[float] of at least one value, got []");
  EXPECT_EQ(error_of(R"({"in_channels": 4, "hid_channels": 4, "inner": {"type": "C"}})"),
            "model.neck.inner.type: expected one of \"A\", \"B\", got \"C\"");
  EXPECT_EQ(error_of(R"({"in_channels": 4, "hid_channels": 4, "inner": {"eps": 1}})")
                .rfind("model.neck.inner.type: required key is missing", 0),
            0u);
  EXPECT_EQ(error_of(R"({"in_channels": 4, "hid_channels": 1, "num_layers": 2})"),
            "model.neck.num_layers: expected at most hid_channels (1) layers");
}

TEST(OptionTableTest, TheRegistryPreCheckRunsTheConstraints) {
  // What the registry does before any factory runs: Schema::apply alone.
  const Schema s = NeckOptions::table().schema();
  const Config bad(Json::parse(R"({"type": "N", "in_channels": 0, "hid_channels": 4})", "t"),
                   "model.neck");
  EXPECT_EQ(message_of([&] { (void)s.apply(bad); }),
            "model.neck.in_channels: expected int > 0, got 0");
  const Config good(Json::parse(R"({"type": "N", "in_channels": 3, "hid_channels": 4})", "t"),
                    "model.neck");
  const Json filled = s.apply(good);
  EXPECT_EQ(*filled.find("num_layers"), Json(2));
  EXPECT_EQ(filled.find("class_weight"), nullptr);
}

TEST(OptionTableTest, ToJsonRoundTripsAndValidateChecksOptionsBuiltInCpp) {
  const auto table = NeckOptions::table();
  NeckOptions o(3, 4);
  o.num_layers(3).reduction("sum").class_weight(std::vector<double>{0.5});
  const NeckOptions back = table.parse(Config(table.to_json(o), "x"));
  EXPECT_EQ(back.num_layers(), 3);
  EXPECT_EQ(back.reduction(), "sum");
  EXPECT_EQ(*back.class_weight(), (std::vector<double>{0.5}));
  EXPECT_NO_THROW(table.validate(o, "Neck"));
  o.in_channels(0);
  EXPECT_EQ(message_of([&] { table.validate(o, "Neck"); }),
            "Neck.in_channels: expected int > 0, got 0");
}

struct DerivedOptions {
  static OptionTable<DerivedOptions> table() {
    return OptionTable<DerivedOptions>("derived", DerivedOptions())
        .inherit(Schema("base")
                     .required("backbone", ArgType::Dict, "read by the base class")
                     .optional("begin", ArgType::Float, Json(0.0), "read by the base class"))
        .optional("gamma", &DerivedOptions::gamma, "own key", check::gt(0));
  }
  double gamma = 0.1;
};

TEST(OptionTableTest, InheritedKeysComeFirstAndAreAccepted) {
  const Schema s = DerivedOptions::table().schema();
  EXPECT_EQ(s.doc(), "derived");
  ASSERT_EQ(s.args().size(), 3u);
  EXPECT_EQ(s.args()[0].name, "backbone");
  EXPECT_EQ(s.args()[2].name, "gamma");
  const auto o = DerivedOptions::table().parse(
      Config(Json::parse(R"({"backbone": {}, "begin": 2, "gamma": 0.5})", "t")));
  EXPECT_DOUBLE_EQ(o.gamma, 0.5);
  EXPECT_EQ(message_of([] {
              (void)DerivedOptions::table().parse(Config(Json::parse(R"({"gamma": 1})", "t")));
            }).rfind("backbone: required key is missing", 0),
            0u);
}

struct ListOptions {
  static OptionTable<ListOptions> table() {
    return OptionTable<ListOptions>("a list of sub-configs", ListOptions())
        .required("transforms", &ListOptions::transforms, "transform dicts")
        .as(ArgType::List);
  }
  Config transforms;
};

TEST(OptionTableTest, AsSetsTheSchemaTypeOfAConfigMember) {
  EXPECT_EQ(ListOptions::table().schema().find("transforms")->type, ArgType::List);
  const auto o = ListOptions::table().parse(
      Config(Json::parse(R"({"transforms": [{"type": "A"}]})", "t"), "pipeline[0]"));
  EXPECT_EQ(o.transforms.at(0).path(), "pipeline[0].transforms[0]");
  EXPECT_EQ(message_of([] {
              (void)ListOptions::table().parse(
                  Config(Json::parse(R"({"transforms": {}})", "t"), "pipeline[0]"));
            }),
            "pipeline[0].transforms: expected list, got {}");
}

TEST(ConstraintTest, DescribesAndChecksJsonValues) {
  using namespace check;
  EXPECT_EQ(gt(0).text, "> 0");
  EXPECT_EQ(le(0.5).text, "<= 0.5");
  EXPECT_EQ(in(-1, 4).text, "in [-1, 4]");
  EXPECT_TRUE(gt(0).holds(Json(1)));
  EXPECT_FALSE(gt(0).holds(Json(0.0)));
  EXPECT_TRUE(lt(1).holds(Json(0.5)));
  EXPECT_FALSE(ge(1).holds(Json(0)));
  EXPECT_TRUE(one_of({18, 34}).holds(Json(34)));
  EXPECT_FALSE(one_of({18, 34}).holds(Json(50)));
  EXPECT_FALSE(one_of({false}).holds(Json(true)));
  EXPECT_FALSE(one_of({"1"}).holds(Json(1)));
  EXPECT_TRUE(each(in(0, 1)).holds(Json::array({0.0, 1.0})));
  EXPECT_FALSE(each(in(0, 1)).holds(Json::array({0.0, 1.5})));
  EXPECT_FALSE(size(2).holds(Json::array({1})));
  EXPECT_FALSE(non_empty().holds(Json::array()));
}

} // namespace
} // namespace selfsup
