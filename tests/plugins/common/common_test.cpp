// The common plugin: NonLinearNeck / LinearNeck / AvgPool2dNeck, CrossEntropyLoss,
// CosineSimilarityLoss, ContrastiveHead, ClsHead, LatentPredictHead.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <memory>
#include <sstream>
#include <string>
#include <vector>

#include <torch/torch.h>

#include <selfsup/config.h>
#include <selfsup/errors.h>
#include <selfsup/interfaces/modules.h>
#include <selfsup/json.h>
#include <selfsup/registry.h>

#include "test_support.h"

namespace selfsup {
namespace {

template <class T> std::shared_ptr<T> make(const std::string& json, const std::string& path) {
  test::load_plugins();
  return build<T>(Config(Json::parse(json, "test"), path));
}

std::shared_ptr<Neck> make_neck(const std::string& json) {
  return make<Neck>(json, "model.neck");
}
std::shared_ptr<Head> make_head(const std::string& json) {
  return make<Head>(json, "model.head");
}
std::shared_ptr<Loss> make_loss(const std::string& json) {
  return make<Loss>(json, "model.head.loss");
}

template <class T> std::string error_of(const std::string& json, const std::string& path) {
  return test::message_of<ConfigError>([&] { (void)make<T>(json, path); });
}

std::vector<std::string> keys(const torch::OrderedDict<std::string, torch::Tensor>& d) {
  return d.keys();
}

using Strings = std::vector<std::string>;
using Sizes = std::vector<int64_t>;

// Training-mode BatchNorm1d with weight 1, bias 0, computed by hand.
torch::Tensor batch_norm_by_hand(const torch::Tensor& z) {
  auto mean = z.mean(0, true);
  auto var = (z - mean).pow(2).mean(0, true);
  return (z - mean) / torch::sqrt(var + 1e-5);
}

double log_sum_exp(const std::vector<double>& v) {
  double s = 0;
  for (double x : v) s += std::exp(x);
  return std::log(s);
}

// ---- NonLinearNeck ---------------------------------------------------------------------

TEST(NonLinearNeckTest, DefaultLayoutAndNames) {
  auto neck = make_neck(
      R"({"type": "NonLinearNeck", "in_channels": 16, "hid_channels": 32, "out_channels": 8})");
  EXPECT_EQ(keys(neck->named_parameters()), (Strings{"fc0.weight", "bn0.weight", "bn0.bias",
                                                     "fc1.weight", "bn1.weight", "bn1.bias"}));
  EXPECT_EQ(keys(neck->named_buffers()),
            (Strings{"bn0.running_mean", "bn0.running_var", "bn0.num_batches_tracked",
                     "bn1.running_mean", "bn1.running_var", "bn1.num_batches_tracked"}));
  auto p = neck->named_parameters();
  EXPECT_EQ(p["fc0.weight"].sizes().vec(), (Sizes{32, 16}));
  EXPECT_EQ(p["fc1.weight"].sizes().vec(), (Sizes{8, 32}));
  EXPECT_TRUE(torch::all(p["bn1.weight"] == 1).item<bool>());
  EXPECT_TRUE(torch::all(p["bn1.bias"] == 0).item<bool>());
  auto out = neck->forward({torch::randn({4, 16, 3, 3})});
  ASSERT_EQ(out.size(), 1u);
  EXPECT_EQ(out[0].sizes().vec(), (Sizes{4, 8}));
}

TEST(NonLinearNeckTest, ForwardMatchesTheLayerFormula) {
  torch::manual_seed(0);
  auto neck = make_neck(
      R"({"type": "NonLinearNeck", "in_channels": 6, "hid_channels": 10, "out_channels": 4,
          "norm_cfg": {"type": "BN"}})");
  neck->train();
  auto x = torch::randn({5, 6, 2, 2});
  auto p = neck->named_parameters();
  auto pooled = x.mean({2, 3});
  auto h = batch_norm_by_hand(torch::matmul(pooled, p["fc0.weight"].t()));
  auto expected = batch_norm_by_hand(torch::matmul(torch::relu(h), p["fc1.weight"].t()));
  auto out = neck->forward({x})[0];
  EXPECT_TRUE(torch::allclose(out, expected, 1e-4, 1e-5));
}

TEST(NonLinearNeckTest, ThreeLayersWithBiasesAndNoLastBn) {
  auto neck = make_neck(R"({"type": "NonLinearNeck", "in_channels": 8, "hid_channels": 16,
      "out_channels": 4, "num_layers": 3, "with_bias": true, "with_last_bn": false,
      "with_last_bias": true, "with_avg_pool": false})");
  EXPECT_EQ(keys(neck->named_parameters()),
            (Strings{"fc0.weight", "fc0.bias", "bn0.weight", "bn0.bias", "fc1.weight", "fc1.bias",
                     "bn1.weight", "bn1.bias", "fc2.weight", "fc2.bias"}));
  auto out = neck->forward({torch::randn({3, 8})});
  EXPECT_EQ(out[0].sizes().vec(), (Sizes{3, 4}));
}

TEST(NonLinearNeckTest, LastBnWithoutAffineKeepsRunningStats) {
  // SimSiam's projector: num_layers 3, last BN affine=False.
  auto neck = make_neck(R"({"type": "NonLinearNeck", "in_channels": 8, "hid_channels": 8,
      "out_channels": 8, "num_layers": 3, "with_last_bn_affine": false})");
  EXPECT_EQ(keys(neck->named_parameters()),
            (Strings{"fc0.weight", "bn0.weight", "bn0.bias", "fc1.weight", "bn1.weight", "bn1.bias",
                     "fc2.weight"}));
  const auto buffers = keys(neck->named_buffers());
  EXPECT_NE(std::find(buffers.begin(), buffers.end(), "bn2.running_mean"), buffers.end());
}

TEST(NonLinearNeckTest, VitBackboneTakesTheLastTensor) {
  auto neck = make_neck(R"({"type": "NonLinearNeck", "in_channels": 8, "hid_channels": 8,
      "out_channels": 4, "with_avg_pool": false, "vit_backbone": true})");
  auto out = neck->forward({torch::randn({2, 8, 3, 3}), torch::randn({2, 8})});
  EXPECT_EQ(out[0].sizes().vec(), (Sizes{2, 4}));
}

TEST(NonLinearNeckTest, RejectsSeveralInputsAndWrongWidth) {
  auto neck = make_neck(
      R"({"type": "NonLinearNeck", "in_channels": 8, "hid_channels": 8, "out_channels": 4})");
  EXPECT_THROW(neck->forward({torch::randn({2, 8, 2, 2}), torch::randn({2, 8, 2, 2})}), c10::Error);
  EXPECT_THROW(neck->forward({torch::randn({2, 7, 2, 2})}), c10::Error);
}

TEST(NonLinearNeckTest, BadConfigNamesTheJsonPath) {
  const std::string base = R"("type": "NonLinearNeck", "in_channels": 8, "hid_channels": 8,)";
  EXPECT_EQ(
      error_of<Neck>("{" + base + R"("out_channels": 4, "norm_cfg": {"type": "GN"}})", "model.neck")
          .rfind("model.neck.norm_cfg.type: expected one of \"BN\", \"SyncBN\", got \"GN\"", 0),
      0u);
  EXPECT_EQ(error_of<Neck>("{" + base + R"("out_channels": 0})", "model.neck")
                .rfind("model.neck.out_channels: expected int > 0, got 0", 0),
            0u);
  EXPECT_EQ(error_of<Neck>("{" + base + R"("out_channels": 4, "num_layers": 0})", "model.neck")
                .rfind("model.neck.num_layers:", 0),
            0u);
  EXPECT_EQ(error_of<Neck>("{" + base + R"("out_channels": 4, "hid": 3})", "model.neck")
                .rfind("model.neck.hid: unknown key", 0),
            0u);
  EXPECT_EQ(error_of<Neck>(R"({"type": "NonLinearNeck", "in_channels": 8})", "model.neck")
                .rfind("model.neck.hid_channels: required key is missing", 0),
            0u);
}

// ---- LinearNeck / AvgPool2dNeck --------------------------------------------------------

TEST(LinearNeckTest, PoolsThenProjects) {
  torch::manual_seed(0);
  auto neck = make_neck(R"({"type": "LinearNeck", "in_channels": 6, "out_channels": 3})");
  EXPECT_EQ(keys(neck->named_parameters()), (Strings{"fc.weight", "fc.bias"}));
  auto x = torch::randn({4, 6, 5, 5});
  auto p = neck->named_parameters();
  auto expected = torch::matmul(x.mean({2, 3}), p["fc.weight"].t()) + p["fc.bias"];
  auto out = neck->forward({x});
  ASSERT_EQ(out.size(), 1u);
  EXPECT_TRUE(torch::allclose(out[0], expected, 1e-5, 1e-6));
}

TEST(AvgPool2dNeckTest, PoolsToOutputSize) {
  auto one = make_neck(R"({"type": "AvgPool2dNeck"})");
  auto x = torch::randn({2, 4, 6, 6});
  auto out = one->forward({x});
  EXPECT_EQ(out[0].sizes().vec(), (Sizes{2, 4, 1, 1}));
  EXPECT_TRUE(torch::allclose(out[0].flatten(1), x.mean({2, 3})));
  auto two = make_neck(R"({"type": "AvgPool2dNeck", "output_size": 2})");
  EXPECT_EQ(two->forward({x})[0].sizes().vec(), (Sizes{2, 4, 2, 2}));
  EXPECT_TRUE(two->parameters().empty());
}

// ---- CrossEntropyLoss ------------------------------------------------------------------

TEST(CrossEntropyLossTest, MatchesHandComputedValue) {
  auto ce = make_loss(R"({"type": "CrossEntropyLoss"})");
  auto loss = ce->forward(torch::tensor({{2.0, 1.0, 0.0}}), torch::tensor({int64_t(0)}));
  const double expected = std::log(std::exp(2.0) + std::exp(1.0) + 1.0) - 2.0;
  EXPECT_NEAR(expected, 0.40760596, 1e-8);
  EXPECT_NEAR(loss.item<double>(), expected, 1e-6);
}

TEST(CrossEntropyLossTest, ClassWeightScalesSamplesWithoutRenormalising) {
  auto ce = make_loss(R"({"type": "CrossEntropyLoss", "class_weight": [1.0, 2.0, 3.0]})");
  auto logits = torch::tensor({{2.0, 1.0, 0.0}, {0.0, 1.0, 2.0}});
  auto labels = torch::tensor({int64_t(0), int64_t(2)});
  const double ce_i = std::log(std::exp(2.0) + std::exp(1.0) + 1.0) - 2.0; // both samples
  // mmcls: mean(w_y * CE_i) = (1 + 3) / 2 * CE; torch's weight= would give CE.
  EXPECT_NEAR(ce->forward(logits, labels).item<double>(), 2.0 * ce_i, 1e-6);

  auto sum = make_loss(
      R"({"type": "CrossEntropyLoss", "class_weight": [1, 2, 3], "reduction": "sum",
          "loss_weight": 0.5})");
  EXPECT_NEAR(sum->forward(logits, labels).item<double>(), 0.5 * 4.0 * ce_i, 1e-6);

  auto none = make_loss(R"({"type": "CrossEntropyLoss", "reduction": "none"})");
  auto per_sample = none->forward(logits, labels);
  EXPECT_EQ(per_sample.sizes().vec(), (Sizes{2}));
  EXPECT_NEAR(per_sample[1].item<double>(), ce_i, 1e-6);
}

TEST(CrossEntropyLossTest, SoftLabelsMatchHardOneHot) {
  auto soft = make_loss(R"({"type": "CrossEntropyLoss", "use_soft": true})");
  auto hard = make_loss(R"({"type": "CrossEntropyLoss"})");
  torch::manual_seed(0);
  auto logits = torch::randn({4, 5});
  auto labels = torch::tensor({int64_t(0), int64_t(3), int64_t(4), int64_t(1)});
  auto onehot = torch::one_hot(labels, 5).to(torch::kFloat);
  EXPECT_NEAR(soft->forward(logits, onehot).item<double>(),
              hard->forward(logits, labels).item<double>(), 1e-6);
}

TEST(CrossEntropyLossTest, BadConfigNamesTheJsonPath) {
  EXPECT_EQ(
      error_of<Loss>(R"({"type": "CrossEntropyLoss", "use_sigmoid": true})", "model.head.loss")
          .rfind("model.head.loss.use_sigmoid: expected one of false, got true", 0),
      0u);
  EXPECT_EQ(error_of<Loss>(R"({"type": "CrossEntropyLoss", "reduction": "avg"})", "model.head.loss")
                .rfind("model.head.loss.reduction:", 0),
            0u);
  EXPECT_EQ(
      error_of<Loss>(R"({"type": "CrossEntropyLoss", "class_weight": ["a"]})", "model.head.loss")
          .rfind("model.head.loss.class_weight:", 0),
      0u);
  auto ce = make_loss(R"({"type": "CrossEntropyLoss", "class_weight": [1, 2]})");
  EXPECT_THROW(ce->forward(torch::randn({2, 3}), torch::tensor({int64_t(0), int64_t(1)})),
               c10::Error);
}

// ---- CosineSimilarityLoss --------------------------------------------------------------

TEST(CosineSimilarityLossTest, KnownCosines) {
  // cosines: 1, 1/sqrt(2), 24/25.
  auto pred = torch::tensor({{1.0, 0.0}, {1.0, 1.0}, {3.0, 4.0}});
  auto target = torch::tensor({{5.0, 0.0}, {0.0, 2.0}, {4.0, 3.0}});
  const double mean_cos = (1.0 + 1.0 / std::sqrt(2.0) + 0.96) / 3.0;
  auto plain = make_loss(R"({"type": "CosineSimilarityLoss"})");
  EXPECT_NEAR(plain->forward(pred, target).item<double>(), -mean_cos, 1e-6);
  auto shifted =
      make_loss(R"({"type": "CosineSimilarityLoss", "shift_factor": 2, "scale_factor": 2.0})");
  EXPECT_NEAR(shifted->forward(pred, target).item<double>(), 2.0 - 2.0 * mean_cos, 1e-6);
  EXPECT_THROW(plain->forward(pred, target.narrow(0, 0, 2)), c10::Error);
}

// ---- ContrastiveHead -------------------------------------------------------------------

TEST(ContrastiveHeadTest, EqualsCrossEntropyOverScaledLogits) {
  auto head = make_head(R"({"type": "ContrastiveHead",
      "loss": {"type": "CrossEntropyLoss"}, "temperature": 0.1})");
  auto pos = torch::tensor({{0.5}, {0.2}});
  auto neg = torch::tensor({{0.1, -0.3}, {0.4, 0.0}});
  // Row 0 logits [5, 1, -3], row 1 [2, 4, 0]; the positive is class 0.
  const double l0 = log_sum_exp({5.0, 1.0, -3.0}) - 5.0;
  const double l1 = log_sum_exp({2.0, 4.0, 0.0}) - 2.0;
  auto loss = head->loss({pos, neg}, torch::Tensor());
  EXPECT_NEAR(loss.item<double>(), (l0 + l1) / 2.0, 1e-5);

  auto warm = make_head(R"({"type": "ContrastiveHead", "temperature": 0.5})"); // default loss
  const double w0 = log_sum_exp({1.0, 0.2, -0.6}) - 1.0;
  const double w1 = log_sum_exp({0.4, 0.8, 0.0}) - 0.4;
  EXPECT_NEAR(warm->loss({pos, neg}, torch::Tensor()).item<double>(), (w0 + w1) / 2.0, 1e-5);
}

TEST(ContrastiveHeadTest, GradientFlowsToPositivesAndNegatives) {
  auto head = make_head(R"({"type": "ContrastiveHead"})");
  auto pos = torch::randn({3, 1}, torch::requires_grad());
  auto neg = torch::randn({3, 4}, torch::requires_grad());
  head->loss({pos, neg}, torch::Tensor()).backward();
  EXPECT_TRUE(torch::all(pos.grad() < 0).item<bool>()); // raising the positive lowers the loss
  EXPECT_TRUE(torch::all(neg.grad() > 0).item<bool>());
}

TEST(ContrastiveHeadTest, LossSubConfigKeepsItsPath) {
  EXPECT_EQ(
      error_of<Head>(R"({"type": "ContrastiveHead", "loss": {"type": "NoSuchLoss"}})", "model.head")
          .rfind("model.head.loss.type: unknown loss type 'NoSuchLoss'", 0),
      0u);
  EXPECT_EQ(
      error_of<Head>(R"({"type": "ContrastiveHead", "loss": {"type": "CrossEntropyLoss", "x": 1}})",
                     "model.head")
          .rfind("model.head.loss.x: unknown key", 0),
      0u);
  EXPECT_EQ(error_of<Head>(R"({"type": "ContrastiveHead", "temperature": 0})", "model.head")
                .rfind("model.head.temperature:", 0),
            0u);
  auto head = make_head(R"({"type": "ContrastiveHead"})");
  EXPECT_THROW(head->loss({torch::randn({2, 1})}, torch::Tensor()), c10::Error);
}

// ---- ClsHead ---------------------------------------------------------------------------

TEST(ClsHeadTest, LossAndPredict) {
  torch::manual_seed(0);
  auto head = make_head(
      R"({"type": "ClsHead", "with_avg_pool": true, "in_channels": 8, "num_classes": 3})");
  EXPECT_EQ(keys(head->named_parameters()), (Strings{"fc_cls.weight", "fc_cls.bias"}));
  auto x = torch::randn({4, 8, 2, 2});
  auto labels = torch::tensor({int64_t(0), int64_t(2), int64_t(1), int64_t(2)});
  auto p = head->named_parameters();
  auto logits = torch::matmul(x.mean({2, 3}), p["fc_cls.weight"].t()) + p["fc_cls.bias"];
  auto expected = torch::nn::functional::cross_entropy(logits, labels);
  EXPECT_NEAR(head->loss({x}, labels).item<double>(), expected.item<double>(), 1e-6);
  auto scores = head->predict({x});
  ASSERT_EQ(scores.size(), 1u);
  EXPECT_EQ(scores[0].sizes().vec(), (Sizes{4, 3}));
  EXPECT_TRUE(torch::allclose(scores[0], torch::softmax(logits, 1), 1e-5, 1e-6));
  EXPECT_TRUE(torch::allclose(scores[0].sum(1), torch::ones({4})));
}

TEST(ClsHeadTest, InitIsNormalStd001WithZeroBias) {
  torch::manual_seed(0);
  auto head = make_head(R"({"type": "ClsHead", "in_channels": 512, "num_classes": 100})");
  auto p = head->named_parameters();
  EXPECT_NEAR(p["fc_cls.weight"].std().item<double>(), 0.01, 0.0005);
  EXPECT_TRUE(torch::all(p["fc_cls.bias"] == 0).item<bool>());
  auto defaults = make_head(R"({"type": "ClsHead"})");
  EXPECT_EQ(defaults->named_parameters()["fc_cls.weight"].sizes().vec(), (Sizes{1000, 2048}));
}

// ---- LatentPredictHead -----------------------------------------------------------------

TEST(LatentPredictHeadTest, PredictsThenComparesToTheDetachedTarget) {
  torch::manual_seed(0);
  auto head = make_head(R"({"type": "LatentPredictHead",
      "loss": {"type": "CosineSimilarityLoss"},
      "predictor": {"type": "NonLinearNeck", "in_channels": 4, "hid_channels": 8,
                    "out_channels": 4, "with_avg_pool": false, "norm_cfg": {"type": "BN"}}})");
  const auto names = keys(head->named_parameters());
  EXPECT_EQ(names.front(), "predictor.fc0.weight");
  auto input = torch::randn({6, 4}, torch::requires_grad());
  auto target = torch::randn({6, 4}, torch::requires_grad());
  auto loss = head->loss({input}, target);

  // Independently: the predictor MLP by hand, then -mean cos.
  auto p = head->named_parameters();
  auto h = batch_norm_by_hand(torch::matmul(input, p["predictor.fc0.weight"].t()));
  auto pred = batch_norm_by_hand(torch::matmul(torch::relu(h), p["predictor.fc1.weight"].t()));
  auto expected = -torch::cosine_similarity(pred, target, 1).mean();
  EXPECT_NEAR(loss.item<double>(), expected.item<double>(), 1e-5);

  loss.backward();
  EXPECT_FALSE(target.grad().defined());
  EXPECT_TRUE(input.grad().defined());
  EXPECT_TRUE(p["predictor.fc0.weight"].grad().defined());
}

TEST(LatentPredictHeadTest, SubConfigsKeepTheirPaths) {
  EXPECT_EQ(error_of<Head>(R"({"type": "LatentPredictHead",
                               "loss": {"type": "CosineSimilarityLoss"}})",
                           "model.head")
                .rfind("model.head.predictor: required key is missing", 0),
            0u);
  EXPECT_EQ(error_of<Head>(R"({"type": "LatentPredictHead",
                               "loss": {"type": "CosineSimilarityLoss"},
                               "predictor": {"type": "NonLinearNeck", "in_channels": 4}})",
                           "model.head")
                .rfind("model.head.predictor.hid_channels: required key is missing", 0),
            0u);
}

TEST(CommonPluginTest, RegistersItsTypesWithDocumentedSchemas) {
  test::load_plugins();
  const std::vector<std::pair<std::string, std::string>> types = {
      {"neck", "NonLinearNeck"},    {"neck", "LinearNeck"},
      {"neck", "AvgPool2dNeck"},    {"head", "ContrastiveHead"},
      {"head", "ClsHead"},          {"head", "LatentPredictHead"},
      {"loss", "CrossEntropyLoss"}, {"loss", "CosineSimilarityLoss"}};
  for (const auto& [kind, name] : types) {
    const auto* e = Registry::global().find(kind, name);
    ASSERT_NE(e, nullptr) << kind << " " << name;
    EXPECT_EQ(e->plugin, "common");
    EXPECT_FALSE(e->schema.doc().empty()) << name;
    for (const auto& a : e->schema.args()) EXPECT_FALSE(a.doc.empty()) << name << "." << a.name;
  }
  std::ostringstream s;
  make_neck(R"({"type": "NonLinearNeck", "in_channels": 8, "hid_channels": 8,
                "out_channels": 4})")
      ->pretty_print(s);
  EXPECT_NE(s.str().find("NonLinearNeck(in_channels=8"), std::string::npos) << s.str();
}

} // namespace
} // namespace selfsup
