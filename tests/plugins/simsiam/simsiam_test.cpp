#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <iterator>

#include <torch/torch.h>

#include <selfsup/core/runner.h>
#include <selfsup/sdk.h>

#include "local_registry.h"
#include "plugins/plugin_test_support.h"
#include "test_support.h"

using namespace selfsup;
namespace fs = std::filesystem;

namespace {

using test::ref;

const test::LocalRegistry& registry() {
  static const test::LocalRegistry registry("simsiam_test",
                                            [](Registrar& r) { test::add_pass_backbone(r); });
  return registry;
}

using Dict = test::TensorDict;

test::TensorDict reference() {
  return test::load_fixture("tests/fixtures/simsiam/simsiam_reference.pt");
}

void expect_close(const torch::Tensor& ours, const torch::Tensor& theirs, const std::string& what,
                  double rtol = 1e-5, double atol = 1e-9) {
  test::expect_allclose(ours, theirs, rtol, atol, what);
}

// The fixture's model: pass-through backbone, 3-layer projector 8 -> 16 -> 16 -> 16 (last BN
// without affine), predictor 16 -> 4 -> 16 (last fc with bias, no BN), as upstream's config.
std::shared_ptr<Algorithm> make_simsiam() {
  return build<Algorithm>(
      registry().config(Json::parse(R"({"type": "SimSiam", "backbone": {"type": "TestPassBackbone"},
      "neck": {"type": "NonLinearNeck", "in_channels": 8, "hid_channels": 16, "out_channels": 16,
               "num_layers": 3, "with_last_bn_affine": false, "with_avg_pool": true,
               "norm_cfg": {"type": "BN"}},
      "head": {"type": "LatentPredictHead", "loss": {"type": "CosineSimilarityLoss"},
               "predictor": {"type": "NonLinearNeck", "in_channels": 16, "hid_channels": 4,
                             "out_channels": 16, "with_avg_pool": false, "with_last_bn": false,
                             "with_last_bias": true, "norm_cfg": {"type": "BN"}}}})",
                                    "t"),
                        "model"));
}

void load_init(Algorithm& model, const Dict& d) {
  torch::NoGradGuard no_grad;
  auto params = model.named_parameters(), buffers = model.named_buffers();
  size_t n = 0;
  for (const auto& item : d) {
    const std::string key = item.key().toStringRef();
    if (key.rfind("init.", 0) != 0) continue;
    torch::Tensor* dst = params.find(key.substr(5));
    if (!dst) dst = buffers.find(key.substr(5));
    ASSERT_NE(dst, nullptr) << key;
    dst->copy_(item.value().toTensor());
    ++n;
  }
  EXPECT_EQ(n, params.size() + buffers.size());
}

} // namespace

TEST(SimSiamTest, LossAndGradientsMatchUpstream) {
  const Dict d = reference();
  auto model = make_simsiam();
  model->to(torch::kDouble);
  model->train();
  load_init(*model, d);
  auto v1 = ref(d, "v1").clone().requires_grad_(true);
  auto v2 = ref(d, "v2").clone().requires_grad_(true);
  auto loss = model->loss({v1, v2}, DataSamples{})["loss"];
  expect_close(loss, ref(d, "loss"), "loss");
  loss.backward();
  expect_close(v1.grad(), ref(d, "grad.v1"), "grad of view 1");
  expect_close(v2.grad(), ref(d, "grad.v2"), "grad of view 2");
  auto params = model->named_parameters();
  for (const char* name : {"neck.fc0.weight", "neck.fc2.weight", "head.predictor.fc0.weight",
                           "head.predictor.fc1.bias"})
    expect_close(params[name].grad(), ref(d, std::string("grad.") + name), name);
  auto buffers = model->named_buffers();
  for (const auto& item : d) {
    const std::string key = item.key().toStringRef();
    if (key.rfind("after.", 0) == 0)
      expect_close(buffers[key.substr(6)], item.value().toTensor(), key);
  }
}

TEST(SimSiamTest, MatchesIndependentFormulationWithStopGradient) {
  // Second formulation on the same modules: z = neck(x), p = predictor(z);
  // L = -0.5 (cos(p1, sg(z2)) + cos(p2, sg(z1))), averaged over the batch. The gradient that
  // reaches the inputs must equal this one, which cuts the target branches by hand.
  torch::manual_seed(4);
  auto model = make_simsiam();
  model->to(torch::kDouble);
  model->eval(); // fixed BN statistics, so both formulations see the same normalisation
  auto x1 = torch::randn({5, 8, 1, 1}, torch::kDouble).requires_grad_(true);
  auto x2 = torch::randn({5, 8, 1, 1}, torch::kDouble).requires_grad_(true);
  auto ours = model->loss({x1, x2}, DataSamples{})["loss"];
  ours.backward();
  const auto g1 = x1.grad().clone(), g2 = x2.grad().clone();
  x1.grad().zero_();
  x2.grad().zero_();

  auto neck = model->named_children()["neck"]->as<Neck>();
  auto predictor = model->named_children()["head"]->named_children()["predictor"]->as<Neck>();
  auto z1 = neck->forward({x1})[0], z2 = neck->forward({x2})[0];
  auto p1 = predictor->forward({z1})[0], p2 = predictor->forward({z2})[0];
  auto expected = -0.5 * (torch::cosine_similarity(p1, z2.detach(), 1).mean() +
                          torch::cosine_similarity(p2, z1.detach(), 1).mean());
  expected.backward();
  EXPECT_NEAR(ours.item<double>(), expected.item<double>(), 1e-12);
  EXPECT_TRUE(torch::allclose(g1, x1.grad(), 1e-9, 1e-12));
  EXPECT_TRUE(torch::allclose(g2, x2.grad(), 1e-9, 1e-12));

  // Without the stop-gradient the gradient would differ: the test can tell them apart.
  x1.grad().zero_();
  auto z1b = neck->forward({x1})[0], z2b = neck->forward({x2})[0];
  auto no_sg = -0.5 * (torch::cosine_similarity(predictor->forward({z1b})[0], z2b, 1).mean() +
                       torch::cosine_similarity(predictor->forward({z2b})[0], z1b, 1).mean());
  no_sg.backward();
  EXPECT_FALSE(torch::allclose(g1, x1.grad(), 1e-6, 1e-9));
}

TEST(SimSiamTest, HookRefusesConfigsUpstreamWouldNotRun) {
  auto bad = Json::parse(R"({"type": "SimSiamHook", "fix_pred_lr": true, "lr": 0.05,
      "priority": "SOMETIMES"})",
                         "t");
  EXPECT_TRUE(test::has_substr(
      test::message_of<ConfigError>([&] { (void)build<Hook>(registry().config(bad, "hook")); }),
      "hook.priority"));
  bad.erase("priority");
  bad.erase("lr");
  EXPECT_TRUE(test::has_substr(
      test::message_of<ConfigError>([&] { (void)build<Hook>(registry().config(bad, "hook")); }),
      "hook.lr"));
}

namespace {
// A tiny SimSiam run on generated Fashion-MNIST as the upstream recipe: SGD, cosine schedule,
// custom_keys {predictor: {fix_lr: true}} and SimSiamHook (priority HIGH).
Json tiny_fmnist_config(const fs::path& data_root) {
  Json cfg = Json::parse(R"({
    "model": {"type": "SimSiam",
      "data_preprocessor": {"mean": [72.94], "std": [90.0], "bgr_to_rgb": false},
      "backbone": {"type": "ResNet", "depth": 18, "in_channels": 1, "stem_channels": 4,
                   "base_channels": 4, "stem": "cifar", "out_indices": [4],
                   "zero_init_residual": true},
      "neck": {"type": "NonLinearNeck", "in_channels": 32, "hid_channels": 32, "out_channels": 32,
               "num_layers": 3, "with_last_bn_affine": false, "with_avg_pool": true},
      "head": {"type": "LatentPredictHead", "loss": {"type": "CosineSimilarityLoss"},
               "predictor": {"type": "NonLinearNeck", "in_channels": 32, "hid_channels": 8,
                             "out_channels": 32, "with_avg_pool": false, "with_last_bn": false,
                             "with_last_bias": true}}},
    "optim_wrapper": {"type": "OptimWrapper",
      "optimizer": {"type": "SGD", "lr": 0.05, "weight_decay": 1e-4, "momentum": 0.9},
      "paramwise_cfg": {"custom_keys": {"predictor": {"fix_lr": true}}}},
    "param_scheduler": [
      {"type": "CosineAnnealingLR", "T_max": 2, "by_epoch": true, "begin": 0, "end": 2}],
    "custom_hooks": [{"type": "SimSiamHook", "priority": "HIGH", "fix_pred_lr": true,
                      "lr": 0.05}],
    "train_cfg": {"type": "EpochBasedTrainLoop", "max_epochs": 2},
    "default_hooks": {"logger": {"type": "LoggerHook", "interval": 1},
                      "checkpoint": {"type": "CheckpointHook", "interval": 2}},
    "randomness": {"seed": 3}
  })",
                         "t");
  cfg.set("train_dataloader", test::two_view_fmnist_loader(data_root));
  return cfg;
}
} // namespace

TEST(SimSiamTest, TrainsWithTheHookHoldingThePredictorLr) {
  test::load_plugins();
  test::TempDir dir;
  test::make_fake_fmnist(dir.path() / "data", 64, 10);
  core::TrainOptions o;
  o.work_dir = (dir.path() / "work").string();
  o.threads = 2;
  core::Runner runner(tiny_fmnist_config(dir.path() / "data"), o);
  runner.train();
  EXPECT_EQ(runner.iter(), 8);
  // Epoch 1 of a 2-epoch cosine: the schedule gives the others 0.05 * (1 + cos(pi / 2)) / 2;
  // the predictor's groups stay at 0.05.
  size_t fixed = 0, others = 0;
  for (size_t g = 0; g < runner.optimizer().param_groups().size(); ++g) {
    const double lr = runner.optimizer().param_groups()[g].options().get_lr();
    if (runner.param_group_name(g).find("head.predictor.") == 0) {
      EXPECT_DOUBLE_EQ(lr, 0.05) << runner.param_group_name(g);
      ++fixed;
    } else {
      EXPECT_NEAR(lr, 0.025, 1e-12) << runner.param_group_name(g);
      ++others;
    }
  }
  EXPECT_EQ(fixed, 5u); // fc0.weight, bn0.weight, bn0.bias, fc1.weight, fc1.bias
  EXPECT_GT(others, 0u);

  // fix_lr under a key that does not name the predictor is refused, naming the key.
  Json bad = tiny_fmnist_config(dir.path() / "data");
  bad.find("optim_wrapper")
      ->find("paramwise_cfg")
      ->set("custom_keys", Json::parse(R"({"neck": {"fix_lr": true}})", "t"));
  o.work_dir = (dir.path() / "bad").string();
  EXPECT_TRUE(test::has_substr(test::message_of<ConfigError>([&] { core::Runner r(bad, o); }),
                               "optim_wrapper.paramwise_cfg.custom_keys.neck.fix_lr"));
}
