#include <gtest/gtest.h>

#include <cmath>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <stdexcept>

#include <torch/torch.h>

#include <selfsup/bricks/ema.h>
#include <selfsup/core/checkpoint.h>
#include <selfsup/core/runner.h>
#include <selfsup/sdk.h>

#include "local_registry.h"
#include "plugins/plugin_test_support.h"
#include "test_support.h"

using namespace selfsup;
namespace fs = std::filesystem;

namespace {

using test::FakeRun;
using test::ref;

// The backbone passes its input through, so BYOL sees the features a test feeds in.
const test::LocalRegistry& registry() {
  static const test::LocalRegistry registry("byol_test",
                                            [](Registrar& r) { test::add_pass_backbone(r); });
  return registry;
}

using Dict = test::TensorDict;

test::TensorDict reference() {
  return test::load_fixture("tests/fixtures/byol/byol_reference.pt");
}

void expect_close(const torch::Tensor& ours, const torch::Tensor& theirs, const std::string& what,
                  double rtol = 1e-5, double atol = 1e-9) {
  test::expect_allclose(ours, theirs, rtol, atol, what);
}

// The fixture's model: pass-through backbone, 8 -> 16 -> 4 projector, 4 -> 16 -> 4 predictor.
Json byol_config(double base_momentum) {
  Json cfg = Json::parse(R"({"type": "BYOL", "backbone": {"type": "TestPassBackbone"},
      "neck": {"type": "NonLinearNeck", "in_channels": 8, "hid_channels": 16, "out_channels": 4,
               "num_layers": 2, "with_bias": true, "with_last_bn": false, "with_avg_pool": true,
               "norm_cfg": {"type": "BN"}},
      "head": {"type": "LatentPredictHead",
               "predictor": {"type": "NonLinearNeck", "in_channels": 4, "hid_channels": 16,
                             "out_channels": 4, "num_layers": 2, "with_bias": true,
                             "with_last_bn": false, "with_avg_pool": false,
                             "norm_cfg": {"type": "BN"}},
               "loss": {"type": "CosineSimilarityLoss"}}})",
                         "t");
  cfg.set("base_momentum", base_momentum);
  return cfg;
}

} // namespace

TEST(BYOLTest, CosineSimilarityLossMatchesFormulaAndUpstream) {
  const Dict d = reference();
  const auto pred = ref(d, "cos_pred"), target = ref(d, "cos_target");
  auto loss = build<Loss>(
      registry().config(Json::parse(R"({"type": "CosineSimilarityLoss"})", "t"), "loss"));
  auto scaled = build<Loss>(registry().config(
      Json::parse(R"({"type": "CosineSimilarityLoss", "shift_factor": 2, "scale_factor": 2})", "t"),
      "loss"));
  // Independent formulation: row-wise dot / (|a| |b|).
  const auto cos = (pred * target).sum(1) / (pred.norm(2, 1) * target.norm(2, 1));
  EXPECT_NEAR(loss->forward(pred, target).item<double>(), (-cos).mean().item<double>(), 1e-12);
  EXPECT_NEAR(scaled->forward(pred, target).item<double>(), (2 - 2 * cos).mean().item<double>(),
              1e-12);
  expect_close(loss->forward(pred, target), ref(d, "cos_loss"), "CosineSimilarityLoss");
  expect_close(scaled->forward(pred, target), ref(d, "cos_loss_shift_scale"),
               "CosineSimilarityLoss(2, 2)");
}

TEST(BYOLTest, LatentPredictHeadDetachesTheTarget) {
  auto head = build<Head>(registry().config(
      Json::parse(R"({"type": "LatentPredictHead", "loss": {"type": "CosineSimilarityLoss"},
          "predictor": {"type": "NonLinearNeck", "in_channels": 4, "hid_channels": 8,
                        "out_channels": 4, "with_avg_pool": false, "norm_cfg": {"type": "BN"}}})",
                  "t"),
      "head"));
  torch::manual_seed(1);
  auto input = torch::randn({5, 4}, torch::requires_grad());
  auto target = torch::randn({5, 4}, torch::requires_grad());
  auto loss = head->loss({input}, target);
  loss.backward();
  EXPECT_FALSE(target.grad().defined() && target.grad().abs().sum().item<double>() != 0);
  ASSERT_TRUE(input.grad().defined());
  EXPECT_GT(input.grad().abs().sum().item<double>(), 0);
  // Independent formulation: -mean cos(predictor(input), target).
  torch::NoGradGuard no_grad;
  head->eval();
  auto pred = head->named_children()["predictor"]->as<Neck>()->forward({input})[0];
  auto cos = torch::cosine_similarity(pred, target, 1);
  EXPECT_NEAR(head->loss({input}, target).item<double>(), (-cos).mean().item<double>(), 1e-6);
}

TEST(BYOLTest, LossAndCosineEmaTargetMatchUpstreamOverIterations) {
  // Upstream's BYOL (base_momentum 0.9, max_iters 10) for 4 iterations with an SGD step
  // (lr 0.5) on the online network between them: the loss of each iteration and the target
  // network's parameters and buffers after it, at 1e-5.
  const Dict d = reference();
  auto model = build<Algorithm>(registry().config(byol_config(0.9), "model"));
  model->to(torch::kDouble);
  model->train();
  auto params = model->named_parameters(), buffers = model->named_buffers();
  {
    torch::NoGradGuard no_grad;
    for (const auto& item : d) {
      const std::string key = item.key().toStringRef();
      if (key.rfind("init.", 0) != 0) continue;
      const std::string name = key.substr(5);
      torch::Tensor* dst = params.find(name);
      if (!dst) dst = buffers.find(name);
      ASSERT_NE(dst, nullptr) << "no parameter or buffer " << name;
      dst->copy_(item.value().toTensor());
    }
  }
  std::vector<torch::Tensor> online;
  for (const auto& p : model->named_parameters())
    if (p.key().rfind("target_net.", 0) != 0) online.push_back(p.value());
  torch::optim::SGD sgd(online, torch::optim::SGDOptions(0.5));
  for (int it = 0; it < 4; ++it) {
    const std::string at = "iter" + std::to_string(it) + ".";
    FakeRun run(it, 10);
    model->set_context(&run);
    auto loss = model->loss({ref(d, at + "v1"), ref(d, at + "v2")}, DataSamples{})["loss"];
    model->set_context(nullptr);
    expect_close(loss, ref(d, at + "loss"), at + "loss");
    sgd.zero_grad();
    loss.backward();
    for (const auto& p : model->named_parameters())
      if (p.key().rfind("target_net.", 0) == 0) {
        EXPECT_FALSE(p.value().requires_grad()) << p.key();
        EXPECT_FALSE(p.value().grad().defined()) << p.key();
      }
    sgd.step();
    for (const auto& item : d) {
      const std::string key = item.key().toStringRef();
      if (key.rfind(at + "target.", 0) != 0) continue;
      const std::string name = "target_net." + key.substr(at.size() + 7);
      // Copies: named_parameters()/named_buffers() return temporaries, so no pointer into them.
      const auto params = model->named_parameters();
      const auto buffers = model->named_buffers();
      const torch::Tensor* ours = params.find(name);
      if (!ours) ours = buffers.find(name);
      ASSERT_NE(ours, nullptr) << name;
      expect_close(*ours, item.value().toTensor(), at + name);
    }
  }
}

TEST(BYOLTest, EmaStepsFollowTheCosineMomentumAtChosenIterations) {
  // Independent of upstream: after the first (copy) update, each update at iteration k of K
  // keeps m_k = 1 - (1 - m0) (cos(pi k / K) + 1) / 2 of the target.
  auto model = build<Algorithm>(registry().config(byol_config(0.99), "model"));
  const auto online_w = [&] { return model->named_parameters()["neck.fc0.weight"]; };
  const auto target_w = [&] { return model->named_parameters()["target_net.module.1.fc0.weight"]; };
  torch::manual_seed(2);
  auto shift = [&] {
    torch::NoGradGuard no_grad;
    online_w().add_(torch::randn_like(online_w()));
  };
  auto update = [&](int64_t it, int64_t max_iters) {
    FakeRun run(it, max_iters);
    model->set_context(&run);
    torch::NoGradGuard no_grad;
    (void)model->loss({torch::randn({4, 8, 1, 1}), torch::randn({4, 8, 1, 1})}, DataSamples{});
    model->set_context(nullptr);
  };
  shift();
  update(0, 100); // a copy
  EXPECT_TRUE(torch::equal(target_w(), online_w()));
  for (int64_t k : {1, 37, 50, 99}) {
    shift();
    const auto before = target_w().clone(), src = online_w().clone();
    update(k, 100);
    const double m = 1 - (1 - 0.99) * (std::cos(M_PI * double(k) / 100) + 1) / 2;
    EXPECT_TRUE(torch::allclose(target_w(), m * before + (1 - m) * src, 1e-6, 1e-7)) << k;
    EXPECT_NEAR(bricks::cosine_ema_momentum(0.99, 1.0, k, 100), m, 1e-15);
  }
}

TEST(BYOLTest, ConfigErrorsNameThePath) {
  Json cfg = byol_config(0.996);
  cfg.set("base_momentum", 1.5);
  EXPECT_TRUE(test::has_substr(test::model_config_error(registry(), cfg), "model.base_momentum"));
  cfg = byol_config(0.996);
  cfg.erase("head");
  EXPECT_TRUE(
      test::has_substr(test::model_config_error(registry(), cfg), "model.head: BYOL needs a head"));
}

namespace {
// A tiny BYOL run on generated Fashion-MNIST (64 images, batch 16), LARS as its recipe.
Json tiny_fmnist_config(const fs::path& data_root) {
  Json cfg = Json::parse(R"({
    "model": {"type": "BYOL", "base_momentum": 0.99,
      "data_preprocessor": {"mean": [72.94], "std": [90.0], "bgr_to_rgb": false},
      "backbone": {"type": "ResNet", "depth": 18, "in_channels": 1, "stem_channels": 4,
                   "base_channels": 4, "stem": "cifar", "out_indices": [4]},
      "neck": {"type": "NonLinearNeck", "in_channels": 32, "hid_channels": 32, "out_channels": 16,
               "num_layers": 2, "with_bias": true, "with_last_bn": false, "with_avg_pool": true},
      "head": {"type": "LatentPredictHead", "loss": {"type": "CosineSimilarityLoss"},
               "predictor": {"type": "NonLinearNeck", "in_channels": 16, "hid_channels": 32,
                             "out_channels": 16, "num_layers": 2, "with_bias": true,
                             "with_last_bn": false, "with_avg_pool": false}}},
    "optim_wrapper": {"type": "OptimWrapper",
      "optimizer": {"type": "LARS", "lr": 0.3, "momentum": 0.9, "weight_decay": 1e-6},
      "paramwise_cfg": {"custom_keys": {
        "bn": {"decay_mult": 0, "lars_exclude": true},
        "bias": {"decay_mult": 0, "lars_exclude": true},
        "downsample.1": {"decay_mult": 0, "lars_exclude": true}}}},
    "param_scheduler": [
      {"type": "LinearLR", "start_factor": 1e-4, "by_epoch": true, "begin": 0, "end": 1,
       "convert_to_iter_based": true},
      {"type": "CosineAnnealingLR", "T_max": 1, "by_epoch": true, "begin": 1, "end": 2}],
    "train_cfg": {"type": "EpochBasedTrainLoop", "max_epochs": 2},
    "default_hooks": {"logger": {"type": "LoggerHook", "interval": 1},
                      "checkpoint": {"type": "CheckpointHook", "interval": 1}},
    "randomness": {"seed": 3}
  })",
                         "t");
  cfg.set("train_dataloader", test::two_view_fmnist_loader(data_root));
  return cfg;
}
} // namespace

TEST(BYOLTest, TrainsOnTinyFashionMnistAndCheckpointsTheTarget) {
  test::load_plugins();
  test::TempDir dir;
  test::make_fake_fmnist(dir.path() / "data", 64, 10);
  core::TrainOptions o;
  o.work_dir = (dir.path() / "work").string();
  o.threads = 2;
  core::Runner runner(tiny_fmnist_config(dir.path() / "data"), o);
  runner.train();
  EXPECT_EQ(runner.iter(), 8);
  EXPECT_FALSE(test::logged_iters(dir.path() / "work/scalars.jsonl").empty());
  const auto state = core::load_checkpoint((dir.path() / "work/epoch_2.pth").string()).state_dict;
  ASSERT_TRUE(state.count("target_net.module.0.conv1.weight"));
  ASSERT_TRUE(state.count("target_net.module.1.fc0.weight"));
  // The target followed the online network (momentum < 1) without being equal to it.
  const auto& t = state.at("target_net.module.1.fc0.weight");
  const auto& s = state.at("neck.fc0.weight");
  EXPECT_FALSE(torch::equal(t, s));
  EXPECT_TRUE(torch::isfinite(t).all().item<bool>());
}
