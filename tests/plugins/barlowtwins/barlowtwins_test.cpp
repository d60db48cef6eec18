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
  static const test::LocalRegistry registry("barlowtwins_test",
                                            [](Registrar& r) { test::add_pass_backbone(r); });
  return registry;
}

using Dict = test::TensorDict;

test::TensorDict reference() {
  return test::load_fixture("tests/fixtures/barlowtwins/barlowtwins_reference.pt");
}

void expect_close(const torch::Tensor& ours, const torch::Tensor& theirs, const std::string& what,
                  double rtol = 1e-5, double atol = 1e-9) {
  test::expect_allclose(ours, theirs, rtol, atol, what);
}

std::shared_ptr<Loss> make_loss(double lambd) {
  Json cfg = Json::parse(R"({"type": "CrossCorrelationLoss"})", "t");
  cfg.set("lambd", lambd);
  return build<Loss>(registry().config(cfg, "loss"));
}

std::shared_ptr<Head> make_head(int64_t channels) {
  Json cfg = Json::parse(
      R"({"type": "LatentCrossCorrelationHead", "loss": {"type": "CrossCorrelationLoss"}})", "t");
  cfg.set("in_channels", channels);
  return build<Head>(registry().config(cfg, "head"));
}

// Independent formulation of the loss: loop over the entries.
double loop_loss(const torch::Tensor& c, double lambd) {
  const auto a = c.accessor<double, 2>();
  double on = 0, off = 0;
  for (int64_t i = 0; i < c.size(0); ++i)
    for (int64_t j = 0; j < c.size(1); ++j)
      (i == j ? on : off) += i == j ? (a[i][j] - 1) * (a[i][j] - 1) : a[i][j] * a[i][j];
  return on + lambd * off;
}

} // namespace

TEST(BarlowTwinsTest, CrossCorrelationLossMatchesLoopAndUpstream) {
  const Dict d = reference();
  const auto m = ref(d, "ccl_matrix");
  // The default lambd is upstream's 0.0051.
  auto dflt = build<Loss>(
      registry().config(Json::parse(R"({"type": "CrossCorrelationLoss"})", "t"), "loss"));
  EXPECT_NEAR(dflt->forward(m, {}).item<double>(), loop_loss(m, 0.0051), 1e-10);
  EXPECT_NEAR(make_loss(0.1)->forward(m, {}).item<double>(), loop_loss(m, 0.1), 1e-10);
  expect_close(dflt->forward(m, {}), ref(d, "ccl_loss"), "lambd 0.0051");
  expect_close(make_loss(0.1)->forward(m, {}), ref(d, "ccl_loss_lambd_0.1"), "lambd 0.1");
  // The identity costs nothing; the input is not modified (upstream works on a copy here).
  EXPECT_NEAR(dflt->forward(torch::eye(5, torch::kDouble), {}).item<double>(), 0, 1e-15);
  EXPECT_TRUE(torch::equal(m, ref(d, "ccl_matrix")));
  EXPECT_THROW((void)dflt->forward(torch::zeros({2, 3}), {}), c10::Error);
}

TEST(BarlowTwinsTest, HeadStandardisesWithoutAffineAndMatchesUpstream) {
  const Dict d = reference();
  const auto z1 = ref(d, "head_z1"), z2 = ref(d, "head_z2");
  auto head = make_head(z1.size(1));
  head->to(torch::kDouble);
  head->train();
  EXPECT_TRUE(head->parameters().empty()); // BN without affine: nothing to learn
  // Independent formulation: batch standardisation (biased variance, eps 1e-5), then
  // C = a^T b / N.
  auto standardise = [](const torch::Tensor& z) {
    auto mean = z.mean(0, true), var = z.var(0, /*unbiased=*/false, true);
    return (z - mean) / torch::sqrt(var + 1e-5);
  };
  const auto c = torch::mm(standardise(z1).t(), standardise(z2)) / double(z1.size(0));
  expect_close(c, ref(d, "head_c"), "cross-correlation vs upstream");
  const double loss = head->loss({z1}, z2).item<double>();
  EXPECT_NEAR(loss, loop_loss(c, 0.0051), 1e-9 * std::abs(loss));
  expect_close(torch::tensor(loss, torch::kDouble), ref(d, "head_loss"), "head loss");
  // Its BN saw input and target (two updates of the running statistics), as upstream.
  auto buffers = head->named_buffers();
  expect_close(buffers["bn.running_mean"], ref(d, "head_running_mean"), "running_mean");
  expect_close(buffers["bn.running_var"], ref(d, "head_running_var"), "running_var");
}

TEST(BarlowTwinsTest, LossAndGradientsMatchUpstream) {
  const Dict d = reference();
  auto model = build<Algorithm>(registry().config(
      Json::parse(R"({"type": "BarlowTwins", "backbone": {"type": "TestPassBackbone"},
      "neck": {"type": "NonLinearNeck", "in_channels": 8, "hid_channels": 16, "out_channels": 12,
               "num_layers": 3, "with_last_bn": false, "with_last_bn_affine": false,
               "with_avg_pool": true, "norm_cfg": {"type": "BN"}},
      "head": {"type": "LatentCrossCorrelationHead", "in_channels": 12,
               "loss": {"type": "CrossCorrelationLoss"}}})",
                  "t"),
      "model"));
  model->to(torch::kDouble);
  model->train();
  {
    torch::NoGradGuard no_grad;
    auto params = model->named_parameters(), buffers = model->named_buffers();
    for (const auto& item : d) {
      const std::string key = item.key().toStringRef();
      if (key.rfind("init.", 0) != 0) continue;
      torch::Tensor* dst = params.find(key.substr(5));
      if (!dst) dst = buffers.find(key.substr(5));
      ASSERT_NE(dst, nullptr) << key;
      dst->copy_(item.value().toTensor());
    }
  }
  auto v1 = ref(d, "v1").clone().requires_grad_(true);
  auto v2 = ref(d, "v2").clone().requires_grad_(true);
  auto loss = model->loss({v1, v2}, DataSamples{})["loss"];
  expect_close(loss, ref(d, "loss"), "loss");
  loss.backward();
  expect_close(v1.grad(), ref(d, "grad.v1"), "grad of view 1");
  expect_close(v2.grad(), ref(d, "grad.v2"), "grad of view 2");
  auto params = model->named_parameters();
  for (const char* name : {"neck.fc0.weight", "neck.fc2.weight", "neck.bn1.weight"})
    expect_close(params[name].grad(), ref(d, std::string("grad.") + name), name);
}

namespace {
// The other rank's contribution to C is a fixed matrix (what its all_reduce would add).
class FakeTwoRanks final : public Distributed {
public:
  explicit FakeTwoRanks(torch::Tensor other) : other_(std::move(other)) {}
  int rank() const override { return 0; }
  int world_size() const override { return 2; }
  void all_reduce(torch::Tensor& t, ReduceOp) override {
    ++calls;
    t.add_(other_);
  }
  std::vector<torch::Tensor> all_gather(const torch::Tensor& t) override { return {t, other_}; }
  torch::Tensor all_gather_with_grad(const torch::Tensor& t) override {
    return torch::cat({t, other_});
  }
  void broadcast(torch::Tensor&, int) override {}
  void barrier() override {}
  int calls = 0;

private:
  torch::Tensor other_;
};
} // namespace

TEST(BarlowTwinsTest, HeadDividesByTheGlobalBatchAndSumsOverRanks) {
  torch::manual_seed(6);
  const auto z1 = torch::randn({5, 4}, torch::kDouble), z2 = torch::randn({5, 4}, torch::kDouble);
  const auto other = torch::randn({4, 4}, torch::kDouble);
  auto head = make_head(4);
  head->to(torch::kDouble);
  head->eval(); // running statistics (0, 1): standardisation is the identity up to eps
  auto world = std::make_shared<FakeTwoRanks>(other);
  set_dist(world);
  double ours = 0;
  torch::Tensor grad;
  try {
    auto a = z1.clone().requires_grad_(true);
    auto loss = head->loss({a}, z2);
    loss.backward();
    ours = loss.item<double>();
    grad = a.grad();
  } catch (...) {
    set_dist(nullptr);
    throw;
  }
  set_dist(nullptr);
  EXPECT_EQ(world->calls, 1);
  const double s = 1 / std::sqrt(1 + 1e-5);
  auto local = torch::mm((z1 * s).t(), z2 * s) / 10.0; // N * world size
  EXPECT_NEAR(ours, loop_loss(local + other, 0.0051), 1e-9);
  // The gradient flows through this rank's term only.
  auto a = z1.clone().requires_grad_(true);
  auto c = torch::mm((a * s).t(), z2 * s) / 10.0 + other;
  auto diag = c.diagonal();
  auto expected = (diag - 1).pow(2).sum() + 0.0051 * (c.pow(2).sum() - diag.pow(2).sum());
  expected.backward();
  EXPECT_TRUE(torch::allclose(grad, a.grad(), 1e-9, 1e-12));
}

TEST(BarlowTwinsTest, TrainsOnTinyFashionMnist) {
  test::load_plugins();
  test::TempDir dir;
  test::make_fake_fmnist(dir.path() / "data", 64, 10);
  Json cfg = Json::parse(R"({
    "model": {"type": "BarlowTwins",
      "data_preprocessor": {"mean": [72.94], "std": [90.0], "bgr_to_rgb": false},
      "backbone": {"type": "ResNet", "depth": 18, "in_channels": 1, "stem_channels": 4,
                   "base_channels": 4, "stem": "cifar", "out_indices": [4],
                   "zero_init_residual": true},
      "neck": {"type": "NonLinearNeck", "in_channels": 32, "hid_channels": 64, "out_channels": 64,
               "num_layers": 3, "with_last_bn": false, "with_last_bn_affine": false,
               "with_avg_pool": true},
      "head": {"type": "LatentCrossCorrelationHead", "in_channels": 64,
               "loss": {"type": "CrossCorrelationLoss"}}},
    "train_dataloader": {"batch_size": 16, "num_workers": 2, "drop_last": true,
      "dataset": {"type": "FashionMNIST", "split": "train", "pipeline": [
        {"type": "MultiView", "num_views": [2], "transforms": [[
          {"type": "RandomResizedCrop", "size": 16, "scale": [0.2, 1.0]},
          {"type": "RandomFlip", "prob": 0.5}]]},
        {"type": "PackSelfSupInputs"}]}},
    "optim_wrapper": {"type": "OptimWrapper",
      "optimizer": {"type": "LARS", "lr": 1.6, "momentum": 0.9, "weight_decay": 1e-6},
      "clip_grad": {"max_norm": 10.0},
      "paramwise_cfg": {"custom_keys": {
        "bn": {"decay_mult": 0, "lr_mult": 0.024, "lars_exclude": true},
        "bias": {"decay_mult": 0, "lr_mult": 0.024, "lars_exclude": true},
        "downsample.1": {"decay_mult": 0, "lr_mult": 0.024, "lars_exclude": true}}}},
    "param_scheduler": [
      {"type": "LinearLR", "start_factor": 1.6e-4, "by_epoch": true, "begin": 0, "end": 1,
       "convert_to_iter_based": true},
      {"type": "CosineAnnealingLR", "T_max": 1, "eta_min": 0.0016, "by_epoch": true, "begin": 1,
       "end": 2, "convert_to_iter_based": true}],
    "train_cfg": {"type": "EpochBasedTrainLoop", "max_epochs": 2},
    "default_hooks": {"logger": {"type": "LoggerHook", "interval": 1},
                      "checkpoint": {"type": "CheckpointHook", "interval": 2}},
    "randomness": {"seed": 3}
  })",
                         "t");
  cfg.find("train_dataloader")->find("dataset")->set("data_root", (dir.path() / "data").string());
  core::TrainOptions o;
  o.work_dir = (dir.path() / "work").string();
  o.threads = 2;
  core::Runner runner(cfg, o);
  runner.train();
  EXPECT_EQ(runner.iter(), 8);
  // The bn / bias groups got lr_mult 0.024 over the schedule's value.
  for (size_t g = 0; g < runner.optimizer().param_groups().size(); ++g)
    if (runner.param_group_name(g) == "neck.bn0.weight") {
      const double lr = runner.optimizer().param_groups()[g].options().get_lr();
      EXPECT_LT(lr, 1.6 * 0.024 + 1e-12);
    }
  EXPECT_FALSE(test::logged_iters(dir.path() / "work/scalars.jsonl").empty());
}

TEST(BarlowTwinsTest, ProjectorKaimingInitCfgAsUpstreamRecipe) {
  // init_cfg {type: 'Kaiming', distribution: 'uniform', layer: ['Linear']}: MMEngine's
  // KaimingInit defaults a = 0, mode fan_out, relu gain, bias 0: U(-b, b), b = sqrt(6 / fan_out).
  torch::manual_seed(8);
  auto neck = build<Neck>(registry().config(
      Json::parse(R"({"type": "NonLinearNeck", "in_channels": 64, "hid_channels": 256,
          "out_channels": 128, "num_layers": 3, "with_last_bn": false, "with_bias": true,
          "with_last_bias": true, "with_avg_pool": false,
          "init_cfg": {"type": "Kaiming", "distribution": "uniform", "layer": ["Linear"]}})",
                  "t"),
      "neck"));
  auto params = neck->named_parameters();
  for (const auto& [name, fan_out] :
       std::vector<std::pair<std::string, int64_t>>{{"fc0", 256}, {"fc1", 256}, {"fc2", 128}}) {
    const auto w = params[name + ".weight"];
    const double bound = std::sqrt(6.0 / double(fan_out));
    EXPECT_LE(w.abs().max().item<double>(), bound) << name;
    EXPECT_GT(w.abs().max().item<double>(), 0.95 * bound) << name;
    // The variance of U(-b, b) is b^2 / 3 = 2 / fan_out.
    EXPECT_NEAR(w.var().item<double>(), 2.0 / double(fan_out), 0.1 * 2.0 / double(fan_out)) << name;
    EXPECT_EQ(params[name + ".bias"].abs().max().item<double>(), 0.0) << name;
  }
  auto bad = Json::parse(R"({"type": "NonLinearNeck", "in_channels": 4, "hid_channels": 4,
      "out_channels": 4, "init_cfg": {"type": "Kaiming", "layer": ["Conv2d"]}})",
                         "t");
  EXPECT_TRUE(test::has_substr(
      test::message_of<ConfigError>([&] { (void)build<Neck>(registry().config(bad, "neck")); }),
      "neck.init_cfg.layer"));
}
