#include <gtest/gtest.h>

#include <cmath>
#include <filesystem>
#include <fstream>
#include <functional>
#include <iterator>

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
using test::l2_rows;
using test::ref;

// Test doubles: the backbone passes its input through, the neck flattens it, so the
// embeddings MoCo sees are exactly the vectors a test feeds in.
const test::LocalRegistry& registry() {
  static const test::LocalRegistry registry("moco_test", [](Registrar& r) {
    test::add_pass_backbone(r);
    test::add_flatten_neck(r);
  });
  return registry;
}

Json moco_json(const std::string& neck, double temperature, int64_t queue_len, int64_t feat_dim,
               double momentum) {
  Json cfg = Json::parse(R"({"type": "MoCo", "backbone": {"type": "TestPassBackbone"},
      "head": {"type": "ContrastiveHead", "loss": {"type": "mmcls.CrossEntropyLoss"}}})",
                         "t");
  cfg.set("neck", Json::parse(neck, "t"));
  cfg.find("head")->set("temperature", temperature);
  cfg.set("queue_len", queue_len);
  cfg.set("feat_dim", feat_dim);
  cfg.set("momentum", momentum);
  return cfg;
}

std::shared_ptr<Algorithm> make_moco(const std::string& neck, double temperature, int64_t queue_len,
                                     int64_t feat_dim, double momentum) {
  return build<Algorithm>(
      registry().config(moco_json(neck, temperature, queue_len, feat_dim, momentum), "model"));
}

// MoCo's loss written directly: cross-entropy of [q.k, q.queue] / t with class 0.
torch::Tensor independent_loss(const torch::Tensor& q, const torch::Tensor& k,
                               const torch::Tensor& queue, double t) {
  auto logits = torch::cat({(q * k).sum(1, true), q.mm(queue)}, 1) / t;
  return (torch::logsumexp(logits, 1) - logits.select(1, 0)).mean();
}

// Upstream's values (tests/fixtures/moco/make_moco_reference.py).
test::TensorDict reference() {
  return test::load_fixture("tests/fixtures/moco/moco_reference.pt");
}

void expect_close(const torch::Tensor& ours, const torch::Tensor& theirs, double rtol = 1e-5,
                  double atol = 1e-7) {
  test::expect_allclose(ours, theirs, rtol, atol);
}

torch::Tensor buffer(Algorithm& model, const std::string& name) {
  return model.named_buffers()[name];
}

torch::Tensor param(Algorithm& model, const std::string& name) {
  return model.named_parameters()[name];
}

const char* kLinearNeck =
    R"({"type": "LinearNeck", "in_channels": 6, "out_channels": 5, "with_avg_pool": true})";

} // namespace

TEST(MoCoV2NeckTest, MatchesFcReluFcAndUpstream) {
  const auto r = reference();
  auto neck = build<Neck>(
      registry().config(Json::parse(R"({"type": "MoCoV2Neck", "in_channels": 6, "hid_channels": 7,
                      "out_channels": 3})",
                                    "t"),
                        "model.neck"));
  auto params = neck->named_parameters();
  ASSERT_EQ(params.size(), 4u);
  {
    torch::NoGradGuard no_grad;
    params["mlp.0.weight"].copy_(ref(r, "neck_w0"));
    params["mlp.0.bias"].copy_(ref(r, "neck_b0"));
    params["mlp.2.weight"].copy_(ref(r, "neck_w2"));
    params["mlp.2.bias"].copy_(ref(r, "neck_b2"));
  }
  const auto x = ref(r, "neck_x");
  const auto y = neck->forward({x})[0];
  // fc -> relu -> fc on the pooled map, written directly.
  const auto pooled = x.mean({2, 3});
  const auto h = torch::relu(pooled.mm(ref(r, "neck_w0").t()) + ref(r, "neck_b0"));
  expect_close(y, h.mm(ref(r, "neck_w2").t()) + ref(r, "neck_b2"));
  expect_close(y, ref(r, "neck_y"));
}

TEST(MoCoTest, LossOnFixedEmbeddingsMatchesIndependentFormAndUpstream) {
  const auto r = reference();
  const auto q = ref(r, "fixed_q"), k = ref(r, "fixed_k"), queue0 = ref(r, "fixed_queue");
  for (const auto& [name, t] : {std::pair<std::string, double>{"v1", 0.07}, {"v2", 0.2}}) {
    auto model = make_moco(R"({"type": "TestFlattenNeck"})", t, 12, 8, 0.999);
    buffer(*model, "queue").copy_(queue0);
    const auto loss = model->loss({q, k}, DataSamples{})["loss"];
    const auto expected = independent_loss(l2_rows(q.flatten(1)), l2_rows(k.flatten(1)), queue0, t);
    EXPECT_NEAR(loss.item<double>(), expected.item<double>(),
                1e-5 * std::abs(expected.item<double>()))
        << name;
    expect_close(loss, ref(r, "fixed_loss_" + name));
    // The keys went into columns 0..3; the pointer moved by the batch.
    expect_close(buffer(*model, "queue"), ref(r, "fixed_queue_after_" + name));
    expect_close(buffer(*model, "queue").narrow(1, 0, 4).t(), l2_rows(k.flatten(1)));
    EXPECT_EQ(buffer(*model, "queue_ptr").item<int64_t>(),
              ref(r, "fixed_ptr_after_" + name).item<int64_t>());
  }
}

TEST(MoCoTest, ThreeTrainingStepsMatchUpstreamEmaQueueAndLosses) {
  // LinearNeck, momentum 0.9, queue 8 (wraps after two batches of 4), SGD lr 0.5 by hand; the
  // run's iterations 0, 1, 2: the first update copies, later ones average.
  const auto r = reference();
  auto model = make_moco(kLinearNeck, 0.2, 8, 5, 0.9);
  FakeRun run;
  model->set_context(&run);
  {
    torch::NoGradGuard no_grad;
    param(*model, "neck.fc.weight").copy_(ref(r, "ema_fc_weight"));
    param(*model, "neck.fc.bias").copy_(ref(r, "ema_fc_bias"));
    buffer(*model, "queue").copy_(ref(r, "ema_queue"));
  }
  auto key_w = param(*model, "encoder_k.module.1.fc.weight");
  auto key_b = param(*model, "encoder_k.module.1.fc.bias");
  for (int step = 0; step < 3; ++step) {
    const auto s = std::to_string(step);
    run.iteration = step;
    // The EMA written directly, from the key and query weights before this step.
    const auto query_w = param(*model, "neck.fc.weight").detach().clone();
    const auto expected_key_w = step == 0 ? query_w : 0.9 * key_w.detach() + 0.1 * query_w;
    auto loss = model->loss({ref(r, "ema_xq_" + s), ref(r, "ema_xk_" + s)}, DataSamples{})["loss"];
    model->zero_grad();
    loss.backward();
    {
      torch::NoGradGuard no_grad;
      for (auto& p : model->named_parameters())
        if (p.value().grad().defined()) p.value().sub_(0.5 * p.value().grad());
    }
    expect_close(key_w, expected_key_w);
    expect_close(loss, ref(r, "ema_loss_" + s));
    expect_close(buffer(*model, "queue"), ref(r, "ema_queue_" + s));
    EXPECT_EQ(buffer(*model, "queue_ptr").item<int64_t>(), ref(r, "ema_ptr_" + s).item<int64_t>());
    expect_close(key_w, ref(r, "ema_key_fc_weight_" + s));
    expect_close(key_b, ref(r, "ema_key_fc_bias_" + s));
    expect_close(param(*model, "neck.fc.weight"), ref(r, "ema_fc_weight_" + s));
    expect_close(param(*model, "neck.fc.bias"), ref(r, "ema_fc_bias_" + s));
  }
  // After 3 batches of 4 in a queue of 8 the pointer wrapped to 4: columns 0..3 hold the
  // third batch's keys, 4..7 the second's.
  EXPECT_EQ(buffer(*model, "queue_ptr").item<int64_t>(), 4);
}

TEST(MoCoTest, MomentumUpdateFollowsTheRunsIteration) {
  torch::manual_seed(1);
  auto model = make_moco(kLinearNeck, 0.2, 8, 5, 0.99);
  FakeRun run;
  model->set_context(&run);
  auto w = param(*model, "neck.fc.weight");
  auto key_w = param(*model, "encoder_k.module.1.fc.weight");
  const auto x = torch::randn({4, 6, 1, 1});
  auto move_query = [&] {
    torch::NoGradGuard no_grad;
    w.add_(torch::randn_like(w));
  };
  // Mid-run (iteration 7): one average with momentum 0.99.
  move_query();
  run.iteration = 7;
  auto before = key_w.detach().clone();
  (void)model->loss({x, x}, DataSamples{});
  expect_close(key_w, 0.99 * before + 0.01 * w.detach());
  // Two more at iterations 8 and 9: k steps compound as m^k.
  auto start = key_w.detach().clone();
  for (int it = 8; it < 10; ++it) {
    run.iteration = it;
    (void)model->loss({x, x}, DataSamples{});
  }
  const double m2 = 0.99 * 0.99;
  expect_close(key_w, m2 * start + (1 - m2) * w.detach());
  // Iteration 0 (a run's first): a copy, as MMEngine's averaged model's first update.
  move_query();
  run.iteration = 0;
  (void)model->loss({x, x}, DataSamples{});
  expect_close(key_w, w.detach());
  // Outside a run (no context) every update is the first one: a copy.
  model->set_context(nullptr);
  move_query();
  (void)model->loss({x, x}, DataSamples{});
  expect_close(key_w, w.detach());
}

TEST(MoCoTest, NoGradientReachesTheKeyEncoderOrTheQueue) {
  torch::manual_seed(2);
  auto model = make_moco(kLinearNeck, 0.2, 8, 5, 0.999);
  FakeRun run;
  run.iteration = 3;
  model->set_context(&run);
  auto loss =
      model->loss({torch::randn({4, 6, 1, 1}), torch::randn({4, 6, 1, 1})}, DataSamples{})["loss"];
  loss.backward();
  int key_params = 0;
  for (const auto& p : model->named_parameters()) {
    if (p.key().rfind("encoder_k.", 0) == 0) {
      ++key_params;
      EXPECT_FALSE(p.value().requires_grad()) << p.key();
      EXPECT_FALSE(p.value().grad().defined()) << p.key();
    } else {
      ASSERT_TRUE(p.value().grad().defined()) << p.key();
      EXPECT_GT(p.value().grad().abs().sum().item<double>(), 0) << p.key();
    }
  }
  EXPECT_EQ(key_params, 2);
  EXPECT_FALSE(buffer(*model, "queue").requires_grad());
}

TEST(MoCoTest, ShuffleBnPermutesAndRestoresTheBatch) {
  // With a BatchNorm key encoder, the keys depend on the batch's statistics only, so shuffling
  // the key batch and unshuffling the keys gives each image its own key back.
  torch::manual_seed(4);
  auto model = build<Algorithm>(
      registry().config(Json::parse(R"({"type": "MoCo", "queue_len": 16, "feat_dim": 4,
          "backbone": {"type": "TestPassBackbone"},
          "neck": {"type": "NonLinearNeck", "in_channels": 6, "hid_channels": 8,
                   "out_channels": 4, "norm_cfg": {"type": "BN"}},
          "head": {"type": "ContrastiveHead", "loss": {"type": "CrossEntropyLoss"}}})",
                                    "t"),
                        "model"));
  model->train();
  const auto xk = torch::randn({8, 6, 1, 1});
  (void)model->loss({torch::randn({8, 6, 1, 1}), xk}, DataSamples{});
  // The keys went to columns 0..7: they are the key encoder's output for xk in order (the
  // encoder sees the batch permuted, BN in training mode is permutation-invariant).
  auto key_neck = model->named_modules()["encoder_k.module.1"];
  ASSERT_TRUE(key_neck);
  torch::Tensor expected;
  {
    torch::NoGradGuard no_grad;
    auto as_neck = std::dynamic_pointer_cast<Neck>(key_neck);
    ASSERT_TRUE(as_neck);
    expected = l2_rows(as_neck->forward({xk})[0]);
  }
  expect_close(buffer(*model, "queue").narrow(1, 0, 8).t(), expected, 1e-5, 1e-6);
}

namespace {
// A world of two ranks seen from rank 0: the other rank's part of each gather comes from a
// function of the call's number and of the permutation rank 0 broadcast.
class FakeTwoRanks final : public Distributed {
public:
  using Other = std::function<torch::Tensor(int call, const torch::Tensor& perm)>;
  explicit FakeTwoRanks(Other other) : other_(std::move(other)) {}
  int rank() const override { return 0; }
  int world_size() const override { return 2; }
  void all_reduce(torch::Tensor&, ReduceOp) override {}
  std::vector<torch::Tensor> all_gather(const torch::Tensor& t) override {
    return {t.detach(), other_(calls++, perm)};
  }
  torch::Tensor all_gather_with_grad(const torch::Tensor& t) override {
    return torch::cat({t, other_(calls++, perm)});
  }
  void broadcast(torch::Tensor& t, int src) override {
    EXPECT_EQ(src, 0);
    perm = t.clone();
  }
  void barrier() override {}
  int calls = 0;
  torch::Tensor perm;

private:
  Other other_;
};
} // namespace

TEST(MoCoTest, TwoRanksShuffleAcrossTheGlobalBatchAndEnqueueEveryRanksKeys) {
  torch::manual_seed(6);
  const double t = 0.2;
  auto model = make_moco(R"({"type": "TestFlattenNeck"})", t, 16, 4, 0.999);
  const auto queue0 = buffer(*model, "queue").clone();
  const auto xq = torch::randn({3, 4, 1, 1}), xk = torch::randn({3, 4, 1, 1});
  const auto other_xk = torch::randn({3, 4, 1, 1});
  const auto other_keys = l2_rows(torch::randn({3, 4}));
  // Gathers in order: the key images (shuffle), the shuffled keys (unshuffle), the keys
  // (enqueue). Rank 1 holds the global batch's rows perm[3:6] after the shuffle.
  auto world = std::make_shared<FakeTwoRanks>([&](int call, const torch::Tensor& perm) {
    if (call == 0) return other_xk;
    if (call == 1) {
      auto all = torch::cat({xk, other_xk}).flatten(1);
      return l2_rows(all.index_select(0, perm.narrow(0, 3, 3)));
    }
    return other_keys;
  });
  set_dist(world);
  torch::Tensor loss;
  try {
    loss = model->loss({xq, xk}, DataSamples{})["loss"];
  } catch (...) {
    set_dist(nullptr);
    throw;
  }
  set_dist(nullptr);
  EXPECT_EQ(world->calls, 3);
  ASSERT_EQ(world->perm.numel(), 6);
  EXPECT_TRUE(std::get<0>(world->perm.sort()).equal(torch::arange(6)));
  // Each image got its own key back, and the queue took both ranks' keys in rank order.
  const auto k = l2_rows(xk.flatten(1));
  const auto expected = independent_loss(l2_rows(xq.flatten(1)), k, queue0, t);
  EXPECT_NEAR(loss.item<double>(), expected.item<double>(), 1e-5 * expected.item<double>());
  expect_close(buffer(*model, "queue").narrow(1, 0, 6).t(), torch::cat({k, other_keys}));
  expect_close(buffer(*model, "queue").narrow(1, 6, 10), queue0.narrow(1, 6, 10));
  EXPECT_EQ(buffer(*model, "queue_ptr").item<int64_t>(), 6);
}

TEST(MoCoTest, ConfigErrorsNameTheirPath) {
  auto cfg = moco_json(kLinearNeck, 0.2, 8, 5, 0.999);
  auto no_neck = cfg;
  no_neck.erase("neck");
  EXPECT_TRUE(test::has_substr(test::model_config_error(registry(), no_neck),
                               "model.neck: MoCo needs a neck"));
  auto bad_len = cfg;
  bad_len.set("queue_len", 0);
  EXPECT_TRUE(test::has_substr(test::model_config_error(registry(), bad_len), "model.queue_len"));
  // feat_dim must be the neck's output: the first batch says which.
  auto model = make_moco(kLinearNeck, 0.2, 8, 7, 0.999);
  EXPECT_TRUE(test::has_substr(
      test::message_of([&] {
        (void)model->loss({torch::randn({2, 6, 1, 1}), torch::randn({2, 6, 1, 1})}, DataSamples{});
      }),
      "feat_dim = 7"));
}

namespace {
// A tiny MoCo v2 run on generated Fashion-MNIST: 64 images, batch 16, 4 iterations per epoch.
Json tiny_moco_config(const fs::path& data_root) {
  Json cfg = Json::parse(R"({
    "model": {"type": "MoCo", "queue_len": 48, "feat_dim": 16, "momentum": 0.99,
      "data_preprocessor": {"mean": [128.0], "std": [64.0], "bgr_to_rgb": false},
      "backbone": {"type": "ResNet", "depth": 18, "in_channels": 1, "stem_channels": 4,
                   "base_channels": 4, "stem": "cifar", "out_indices": [4]},
      "neck": {"type": "MoCoV2Neck", "in_channels": 32, "hid_channels": 32, "out_channels": 16},
      "head": {"type": "ContrastiveHead", "loss": {"type": "CrossEntropyLoss"}, "temperature": 0.2}},
    "optim_wrapper": {"type": "OptimWrapper",
      "optimizer": {"type": "SGD", "lr": 0.03, "momentum": 0.9, "weight_decay": 1e-4}},
    "param_scheduler": [{"type": "CosineAnnealingLR", "T_max": 2, "by_epoch": true,
                         "begin": 0, "end": 2}],
    "train_cfg": {"type": "EpochBasedTrainLoop", "max_epochs": 2},
    "default_hooks": {"logger": {"type": "LoggerHook", "interval": 1},
                      "checkpoint": {"type": "CheckpointHook", "interval": 1}},
    "randomness": {"seed": 5}
  })",
                         "t");
  cfg.set("train_dataloader", test::two_view_fmnist_loader(data_root));
  return cfg;
}
} // namespace

TEST(MoCoTest, TrainsOnTinyFashionMnistAndCheckpointsQueueAndKeyEncoder) {
  test::load_plugins();
  test::TinyFmnistRun tiny(64, 8);
  const fs::path& data = tiny.data;
  const core::TrainOptions& o = tiny.options;
  core::Runner runner(tiny_moco_config(data), o);
  auto& model = runner.model();
  const auto queue0 = buffer(model, "queue").clone();
  runner.train();
  // 8 iterations of 16 keys in a queue of 48: the pointer wrapped to 128 % 48 = 32 and every
  // column was written.
  EXPECT_EQ(buffer(model, "queue_ptr").item<int64_t>(), 32);
  EXPECT_TRUE((buffer(model, "queue") - queue0).abs().sum(0).gt(1e-6).all().item<bool>());
  // The key encoder followed the query encoder without being equal to it.
  const auto q = param(model, "backbone.conv1.weight");
  const auto k = param(model, "encoder_k.module.0.conv1.weight");
  EXPECT_FALSE(torch::allclose(q, k));
  EXPECT_LT((q - k).abs().max().item<double>(), q.abs().max().item<double>());
  const auto scalars = test::read_text(fs::path(o.work_dir) / "scalars.jsonl");
  EXPECT_NE(scalars.find("\"loss\""), std::string::npos);
  EXPECT_EQ(scalars.find("nan"), std::string::npos);
  // The checkpoint carries the queue, its pointer and the key encoder.
  const auto state =
      core::load_checkpoint((fs::path(o.work_dir) / "epoch_2.pth").string()).state_dict;
  EXPECT_EQ(state.count("queue"), 1u);
  EXPECT_EQ(state.count("queue_ptr"), 1u);
  EXPECT_EQ(state.count("encoder_k.module.0.conv1.weight"), 1u);
  EXPECT_EQ(state.count("encoder_k.module.1.mlp.2.bias"), 1u);
}
