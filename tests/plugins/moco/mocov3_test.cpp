// MoCoV3 and MoCoV3Head (moco plugin) with MoCoV3ViT (backbones plugin): the head and the
// algorithm-level loss against independent formulations and against upstream MMSelfSup 1.0
// (fixture made by tests/fixtures/mocov3/make_mocov3_fixture.py: loss, gradients, one SGD
// step, the CosineEMA update at iteration 1 of 10), EMA parameters at chosen iterations, no
// gradient into the momentum encoder, the global batch through dist(), and a few training
// iterations of a tiny Fashion-MNIST config with AdamW and paramwise rules.
#include <gtest/gtest.h>

#include <cmath>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <memory>
#include <string>
#include <vector>

#include <torch/torch.h>

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

const test::TensorDict& reference() {
  static const auto dict = test::load_fixture("tests/fixtures/mocov3/mocov3_reference.pt");
  return dict;
}

torch::Tensor fixture(const std::string& key) {
  const auto& d = reference();
  auto it = d.find(c10::IValue(key));
  if (it == d.end()) throw std::runtime_error("fixture has no '" + key + "'");
  return it->value().toTensor();
}

// Copies '<prefix>.<name>' of the fixture into every parameter and buffer of `m` whose name
// does not start with `skip`.
void load_reference(torch::nn::Module& m, const std::string& prefix, const std::string& skip = "") {
  torch::NoGradGuard no_grad;
  auto load = [&](const std::string& name, torch::Tensor& t) {
    if (!skip.empty() && name.rfind(skip, 0) == 0) return;
    t.copy_(fixture(prefix + "." + name));
  };
  for (auto& p : m.named_parameters()) load(p.key(), p.value());
  for (auto& b : m.named_buffers()) load(b.key(), b.value());
}

void expect_close(const torch::Tensor& ours, const torch::Tensor& theirs, double rtol = 1e-5,
                  double atol = 1e-7, const std::string& what = "") {
  SCOPED_TRACE(what);
  ASSERT_EQ(ours.sizes(), theirs.sizes());
  const double err =
      (ours.to(torch::kDouble) - theirs.to(torch::kDouble)).abs().max().item<double>();
  const double scale = theirs.abs().max().item<double>();
  EXPECT_LE(err, atol + rtol * scale) << "max abs error " << err << " at scale " << scale;
}

// A world of two ranks seen from rank 1: rank 0's momentum features are fixed rows.
class FakeTwoRanks final : public Distributed {
public:
  explicit FakeTwoRanks(torch::Tensor other) : other_(std::move(other)) {}
  int rank() const override { return 1; }
  int world_size() const override { return 2; }
  void all_reduce(torch::Tensor&, ReduceOp) override {}
  std::vector<torch::Tensor> all_gather(const torch::Tensor& t) override {
    ++calls;
    return {other_, t.detach()};
  }
  torch::Tensor all_gather_with_grad(const torch::Tensor& t) override {
    return torch::cat({other_, t});
  }
  void broadcast(torch::Tensor&, int) override {}
  void barrier() override {}
  int calls = 0;

private:
  torch::Tensor other_;
};

const test::LocalRegistry& registry() {
  static const test::LocalRegistry registry;
  return registry;
}

// The tiny model of the fixture: MoCoV3ViT 16-d, 2 layers; projector 16-32-32-8; predictor
// 8-32-8; temperature 0.2, loss weight 2T.
const char* kModel = R"({"type": "MoCoV3", "base_momentum": 0.99,
  "backbone": {"type": "MoCoV3ViT", "arch": {"embed_dims": 16, "num_layers": 2, "num_heads": 2,
               "feedforward_channels": 32}, "img_size": 8, "patch_size": 4,
               "stop_grad_conv1": true},
  "neck": {"type": "NonLinearNeck", "in_channels": 16, "hid_channels": 32, "out_channels": 8,
           "num_layers": 3, "with_bias": false, "with_last_bn": true,
           "with_last_bn_affine": false, "with_last_bias": false, "with_avg_pool": false,
           "vit_backbone": true, "norm_cfg": {"type": "BN"}},
  "head": {"type": "MoCoV3Head",
           "predictor": {"type": "NonLinearNeck", "in_channels": 8, "hid_channels": 32,
                         "out_channels": 8, "num_layers": 2, "with_bias": false,
                         "with_last_bn": true, "with_last_bn_affine": false,
                         "with_last_bias": false, "with_avg_pool": false,
                         "norm_cfg": {"type": "BN"}},
           "loss": {"type": "mmcls.CrossEntropyLoss", "loss_weight": 0.4},
           "temperature": 0.2}})";

std::shared_ptr<Algorithm> make_model() {
  return build<Algorithm>(registry().config(Json::parse(kModel, "t"), "model"));
}

std::shared_ptr<Head> make_head(double temperature, double loss_weight) {
  Json cfg = Json::parse(R"({"type": "MoCoV3Head",
      "predictor": {"type": "NonLinearNeck", "in_channels": 8, "hid_channels": 32,
                    "out_channels": 8, "num_layers": 2, "with_bias": false,
                    "with_last_bn": true, "with_last_bn_affine": false, "with_avg_pool": false,
                    "norm_cfg": {"type": "BN"}},
      "loss": {"type": "mmcls.CrossEntropyLoss"}})",
                         "t");
  cfg.set("temperature", temperature);
  cfg.find("loss")->set("loss_weight", loss_weight);
  return build<Head>(registry().config(cfg, "model.head"));
}

// The contrastive loss written directly: rows are samples, each one's positive is its own
// key (column offset + i), the rest of the keys are negatives.
torch::Tensor independent_head_loss(const torch::Tensor& pred, const torch::Tensor& keys, double t,
                                    double weight, int64_t offset) {
  auto p = pred / pred.norm(2, 1, true);
  auto k = keys / keys.norm(2, 1, true);
  auto logits = torch::mm(p, k.t()) / t;
  auto rows = torch::arange(p.size(0));
  auto pos = logits.index({rows, rows + offset});
  return weight * (torch::logsumexp(logits, 1) - pos).mean();
}

torch::Tensor param(torch::nn::Module& m, const std::string& name) {
  return m.named_parameters()[name];
}

torch::Tensor state(torch::nn::Module& m, const std::string& name) {
  auto params = m.named_parameters();
  if (params.contains(name)) return params[name];
  return m.named_buffers()[name];
}

} // namespace

TEST(MoCoV3HeadTest, MatchesIndependentFormulationAndMmselfsup) {
  auto head = make_head(0.2, 0.4);
  head->to(torch::kDouble); // the fixture's model ran in float64
  load_reference(*head, "mocov3.head");
  const auto base = fixture("head.base_out"), momentum = fixture("head.momentum_out");
  auto ours = head->loss({base}, momentum);
  expect_close(ours, fixture("head.loss"), 1e-9, 0, "head loss");

  // The same with the predictor applied by hand and the loss written directly.
  auto pred = std::dynamic_pointer_cast<Neck>(head->named_children()["predictor"]);
  ASSERT_TRUE(pred);
  auto expected = independent_head_loss(pred->forward({base})[0], momentum, 0.2, 0.4, 0);
  EXPECT_NEAR(ours.item<double>(), expected.item<double>(), 1e-5 * expected.item<double>());
  // No gradient reaches the momentum features.
  auto m = momentum.clone().requires_grad_(true);
  head->loss({base.clone().requires_grad_(true)}, m).backward();
  EXPECT_FALSE(m.grad().defined());
}

TEST(MoCoV3HeadTest, GathersKeysOfAllRanksWithRankOffsetLabels) {
  torch::manual_seed(4);
  auto head = make_head(0.5, 1.0);
  auto base = torch::randn({3, 8}), momentum = torch::randn({3, 8});
  auto other = torch::randn({3, 8});
  other = other / other.norm(2, 1, true);
  auto world = std::make_shared<FakeTwoRanks>(other);
  set_dist(world);
  torch::Tensor ours, pred;
  try {
    ours = head->loss({base}, momentum);
    auto p = std::dynamic_pointer_cast<Neck>(head->named_children()["predictor"]);
    pred = p->forward({base})[0];
  } catch (...) {
    set_dist(nullptr);
    throw;
  }
  set_dist(nullptr);
  EXPECT_EQ(world->calls, 1);
  // Rank 1 of 2: keys [rank 0's; ours], labels 3..5.
  auto keys = torch::cat({other, momentum / momentum.norm(2, 1, true)});
  auto expected = independent_head_loss(pred, keys, 0.5, 1.0, 3);
  EXPECT_NEAR(ours.item<double>(), expected.item<double>(), 1e-5);
}

TEST(MoCoV3Test, LossGradientsAndCosineEmaEqualMmselfsup) {
  auto model = make_model();
  model->to(torch::kDouble); // the fixture's model ran in float64
  load_reference(*model, "mocov3", "momentum_encoder");
  // MoCoV3ViT's fixed position embedding is upstream's.
  expect_close(param(*model, "backbone.pos_embed"), fixture("mocov3.pos_embed_init"));
  FakeRun run(0, 10);
  model->set_context(&run);
  run.iteration = 0;
  auto loss0 = model->loss({fixture("mocov3.view0"), fixture("mocov3.view1")}, DataSamples{});
  expect_close(loss0["loss"], fixture("mocov3.loss0"), 1e-9, 0, "loss0");
  loss0["loss"].backward();
  for (const char* name : {"backbone.layers.0.attn.qkv.weight", "backbone.cls_token",
                           "backbone.ln1.weight", "neck.fc0.weight", "head.predictor.fc1.weight"})
    expect_close(param(*model, name).grad(), fixture(std::string("mocov3.grad.") + name), 1e-9,
                 1e-15, name);
  // Stop-gradient: nothing reaches the momentum encoder, the fixed pos_embed or the frozen
  // patch projection.
  for (const auto& p : model->named_parameters()) {
    if (p.key().rfind("momentum_encoder.", 0) == 0 || p.key() == "backbone.pos_embed" ||
        p.key().rfind("backbone.patch_embed.", 0) == 0) {
      EXPECT_FALSE(p.value().requires_grad()) << p.key();
      EXPECT_FALSE(p.value().grad().defined()) << p.key();
    }
  }
  {
    torch::NoGradGuard no_grad;
    for (auto& p : model->parameters())
      if (p.grad().defined()) p.sub_(0.5 * p.grad());
  }
  model->zero_grad();
  run.iteration = 1;
  auto loss1 = model->loss({fixture("mocov3.view2"), fixture("mocov3.view3")}, DataSamples{});
  expect_close(loss1["loss"], fixture("mocov3.loss1"), 1e-9, 0, "loss1");
  for (const char* name :
       {"0.layers.1.ffn.layers.1.weight", "0.cls_token", "1.fc2.weight", "1.bn0.running_mean"})
    expect_close(state(*model, std::string("momentum_encoder.module.") + name),
                 fixture(std::string("mocov3.ema.") + name), 1e-7, 1e-15, name);
  EXPECT_EQ(model->named_buffers()["momentum_encoder.steps"].item<int64_t>(), 2);
}

TEST(MoCoV3Test, EmaParametersAtChosenIterations) {
  auto model = make_model();
  FakeRun run;
  run.total = 10;
  model->set_context(&run);
  auto views = std::vector<torch::Tensor>{torch::randn({4, 3, 8, 8}), torch::randn({4, 3, 8, 8})};
  const std::string online = "neck.fc1.weight", target = "momentum_encoder.module.1.fc1.weight";
  auto shift = [&] {
    torch::NoGradGuard no_grad;
    param(*model, online).add_(1.0);
  };
  // Iteration 0: the momentum encoder becomes a copy.
  shift();
  (void)model->loss(views, DataSamples{});
  EXPECT_TRUE(torch::equal(param(*model, online), param(*model, target)));
  // Iteration 5 of 10: momentum 1 - 0.01 * (cos(pi / 2) + 1) / 2 = 0.995.
  for (int64_t it : {5, 3, 10}) {
    shift();
    const auto before = param(*model, target).clone();
    const auto src = param(*model, online).clone();
    run.iteration = it;
    (void)model->loss(views, DataSamples{});
    const double m = 1.0 - 0.01 * (std::cos(M_PI * double(it) / 10.0) + 1.0) / 2.0;
    expect_close(param(*model, target), m * before + (1 - m) * src, 1e-6, 1e-7);
    if (it == 10) {
      EXPECT_TRUE(torch::equal(param(*model, target), before)); // momentum 1
    }
  }
  // Outside a run (no context) every update is the first one: a copy.
  shift();
  model->set_context(nullptr);
  (void)model->loss(views, DataSamples{});
  EXPECT_TRUE(torch::equal(param(*model, online), param(*model, target)));
}

TEST(MoCoV3Test, ConfigErrorsNameThePath) {
  Json cfg = Json::parse(kModel, "t");
  cfg.erase("neck");
  EXPECT_TRUE(test::has_substr(test::model_config_error(registry(), cfg),
                               "model.neck: MoCoV3 needs a neck"));
  cfg = Json::parse(kModel, "t");
  cfg.set("base_momentum", 1.5);
  EXPECT_TRUE(test::has_substr(test::model_config_error(registry(), cfg), "model.base_momentum"));
  cfg = Json::parse(kModel, "t");
  cfg.find("head")->erase("predictor");
  EXPECT_TRUE(test::has_substr(test::model_config_error(registry(), cfg), "model.head.predictor"));
}

namespace {
Json tiny_mocov3_config(const fs::path& data_root) {
  Json cfg = Json::parse(R"({
    "model": {"type": "MoCoV3", "base_momentum": 0.99,
      "data_preprocessor": {"mean": [128.0], "std": [64.0], "bgr_to_rgb": false},
      "backbone": {"type": "MoCoV3ViT", "arch": {"embed_dims": 16, "num_layers": 2,
                   "num_heads": 2, "feedforward_channels": 32}, "img_size": 16,
                   "patch_size": 4, "in_channels": 1, "stop_grad_conv1": true},
      "neck": {"type": "NonLinearNeck", "in_channels": 16, "hid_channels": 32,
               "out_channels": 8, "num_layers": 3, "with_bias": false, "with_last_bn": true,
               "with_last_bn_affine": false, "with_last_bias": false, "with_avg_pool": false,
               "vit_backbone": true},
      "head": {"type": "MoCoV3Head",
               "predictor": {"type": "NonLinearNeck", "in_channels": 8, "hid_channels": 32,
                             "out_channels": 8, "num_layers": 2, "with_bias": false,
                             "with_last_bn": true, "with_last_bn_affine": false,
                             "with_last_bias": false, "with_avg_pool": false},
               "loss": {"type": "mmcls.CrossEntropyLoss", "loss_weight": 0.4},
               "temperature": 0.2}},
    "optim_wrapper": {"type": "OptimWrapper",
      "optimizer": {"type": "AdamW", "lr": 1e-3, "weight_decay": 0.1},
      "paramwise_cfg": {"norm_decay_mult": 0.0, "bias_decay_mult": 0.0,
                        "custom_keys": {"cls_token": {"decay_mult": 0.0}}}},
    "param_scheduler": [{"type": "CosineAnnealingLR", "T_max": 2, "by_epoch": true,
                         "begin": 0, "end": 2}],
    "train_cfg": {"type": "EpochBasedTrainLoop", "max_epochs": 2},
    "default_hooks": {"logger": {"type": "LoggerHook", "interval": 1},
                      "checkpoint": {"type": "CheckpointHook", "interval": 2}},
    "randomness": {"seed": 5}
  })",
                         "t");
  cfg.set("train_dataloader", test::two_view_fmnist_loader(data_root));
  return cfg;
}
} // namespace

TEST(MoCoV3Test, TrainsOnTinyFashionMnistWithAdamWParamwiseRules) {
  test::load_plugins();
  test::TinyFmnistRun tiny(64, 8);
  const fs::path& data = tiny.data;
  const core::TrainOptions& o = tiny.options;
  core::Runner runner(tiny_mocov3_config(data), o);
  auto& model = runner.model();
  const auto pos0 = param(model, "backbone.pos_embed").clone();
  const auto conv0 = param(model, "backbone.patch_embed.projection.weight").clone();
  const auto qkv0 = param(model, "backbone.layers.0.attn.qkv.weight").clone();
  runner.train();
  // 8 iterations: the trained parts moved, the fixed ones did not.
  EXPECT_FALSE(torch::equal(qkv0, param(model, "backbone.layers.0.attn.qkv.weight")));
  EXPECT_TRUE(torch::equal(pos0, param(model, "backbone.pos_embed")));
  EXPECT_TRUE(torch::equal(conv0, param(model, "backbone.patch_embed.projection.weight")));
  // The momentum encoder followed without being equal.
  const auto q = param(model, "backbone.layers.1.attn.qkv.weight");
  const auto k = param(model, "momentum_encoder.module.0.layers.1.attn.qkv.weight");
  EXPECT_FALSE(torch::allclose(q, k));
  EXPECT_LT((q - k).abs().max().item<double>(), q.abs().max().item<double>());
  // AdamW's groups got the paramwise rules: no decay on LayerNorms, biases and cls_token.
  RunnerContext& ctx = runner;
  auto& opt = ctx.optimizer();
  int checked = 0;
  for (size_t g = 0; g < opt.param_groups().size(); ++g) {
    const std::string& name = ctx.param_group_name(g);
    const double wd =
        static_cast<torch::optim::AdamWOptions&>(opt.param_groups()[g].options()).weight_decay();
    if (name == "backbone.layers.0.ln1.weight" || name == "backbone.layers.0.attn.qkv.bias" ||
        name == "backbone.cls_token") {
      EXPECT_EQ(wd, 0.0) << name;
      ++checked;
    }
    if (name == "backbone.layers.0.attn.qkv.weight" || name == "neck.fc0.weight") {
      EXPECT_NEAR(wd, 0.1, 1e-12) << name;
      ++checked;
    }
  }
  EXPECT_EQ(checked, 5);
  const auto scalars = test::read_text(fs::path(o.work_dir) / "scalars.jsonl");
  EXPECT_NE(scalars.find("\"loss\""), std::string::npos);
  EXPECT_EQ(scalars.find("nan"), std::string::npos);
  // The checkpoint carries the momentum encoder and its step counter.
  const auto st = core::load_checkpoint((fs::path(o.work_dir) / "epoch_2.pth").string()).state_dict;
  EXPECT_EQ(st.count("momentum_encoder.module.0.pos_embed"), 1u);
  EXPECT_EQ(st.count("momentum_encoder.module.1.fc2.weight"), 1u);
  EXPECT_EQ(st.count("momentum_encoder.steps"), 1u);
}
