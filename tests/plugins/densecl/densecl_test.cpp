#include <gtest/gtest.h>

#include <cmath>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <sstream>

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

// Test doubles. The backbone (test::PassBackbone) passes its input through (the "images" are
// backbone maps).
// A DenseCL-shaped neck without weights: the dense grid is channels 2..3 of the map, the
// global and pooled vectors are its mean over positions. Channels 0..1 reach only the
// backbone-feature matching.
class PayloadNeck final : public Neck {
public:
  std::vector<torch::Tensor> forward(const std::vector<torch::Tensor>& x) override {
    auto grid = x[0].slice(1, 2, 4).flatten(2); // [N, 2, S]
    return {grid.mean(2), grid, grid.mean(2)};
  }
};

const test::LocalRegistry& registry() {
  static const test::LocalRegistry registry("densecl_test", [](Registrar& r) {
    test::add_pass_backbone(r);
    r.add<Neck>(
        "TestPayloadNeck", [](const Config&) { return std::make_shared<PayloadNeck>(); },
        Schema("test"));
  });
  return registry;
}

std::shared_ptr<Algorithm> make_densecl(const std::string& neck, int64_t queue_len,
                                        int64_t feat_dim, double momentum, double loss_lambda,
                                        double temperature) {
  Json cfg = Json::parse(R"({"type": "DenseCL", "backbone": {"type": "TestPassBackbone"},
      "head": {"type": "ContrastiveHead", "loss": {"type": "mmcls.CrossEntropyLoss"}}})",
                         "t");
  cfg.set("neck", Json::parse(neck, "t"));
  cfg.find("head")->set("temperature", temperature);
  cfg.set("queue_len", queue_len);
  cfg.set("feat_dim", feat_dim);
  cfg.set("momentum", momentum);
  cfg.set("loss_lambda", loss_lambda);
  return build<Algorithm>(registry().config(cfg, "model"));
}

// -log softmax(logits)[0] per row, averaged.
double info_nce(const torch::Tensor& logits) {
  return (torch::logsumexp(logits, 1) - logits.select(1, 0)).mean().item<double>();
}

using RefDict = test::TensorDict;

// Upstream's values (tests/fixtures/densecl/make_densecl_reference.py).
test::TensorDict reference() {
  return test::load_fixture("tests/fixtures/densecl/densecl_reference.pt");
}

void expect_close(const torch::Tensor& ours, const torch::Tensor& theirs, const std::string& what,
                  double rtol = 1e-5, double atol = 1e-6) {
  test::expect_allclose(ours, theirs, rtol, atol, what);
}

const char* kDenseNeck =
    R"({"type": "DenseCLNeck", "in_channels": 6, "hid_channels": 10, "out_channels": 4})";

} // namespace

TEST(DenseCLNeckTest, MatchesUpstreamAndADirectFormulation) {
  const auto r = reference();
  auto neck = build<Neck>(registry().config(Json::parse(kDenseNeck, "t"), "model.neck"));
  auto params = neck->named_parameters();
  ASSERT_EQ(params.size(), 8u); // mlp.0, mlp.2, mlp2.0, mlp2.2: weight and bias each
  {
    torch::NoGradGuard g;
    for (auto& p : params) p.value().copy_(ref(r, "neck." + p.key()));
  }
  const auto x = ref(r, "neck_input");
  auto out = neck->forward({x});
  ASSERT_EQ(out.size(), 3u);
  expect_close(out[0], ref(r, "neck_global"), "global");
  expect_close(out[1], ref(r, "neck_grid"), "grid");
  expect_close(out[2], ref(r, "neck_pooled"), "pooled");

  // Written out: the global MLP on the spatial mean; the 1x1 convs as matrix products per
  // position; the pooled vector as the grid's mean.
  auto w = [&](const std::string& k) { return params[k]; };
  auto mean = x.mean({2, 3});
  auto global = torch::relu(mean.matmul(w("mlp.0.weight").t()) + w("mlp.0.bias"))
                    .matmul(w("mlp.2.weight").t()) +
                w("mlp.2.bias");
  auto cols = x.flatten(2).transpose(1, 2); // [N, S, C]
  auto h = torch::relu(cols.matmul(w("mlp2.0.weight").flatten(1).t()) + w("mlp2.0.bias"));
  auto grid = (h.matmul(w("mlp2.2.weight").flatten(1).t()) + w("mlp2.2.bias")).transpose(1, 2);
  expect_close(out[0], global, "global (direct)");
  expect_close(out[1], grid, "grid (direct)");
  expect_close(out[2], grid.mean(2), "pooled (direct)");

  // num_grid pools the map first: a 6x6 map gives 2x2 = 4 positions.
  auto pooled_neck = build<Neck>(
      registry().config(Json::parse(R"({"type": "DenseCLNeck", "in_channels": 6, "hid_channels": 10,
                      "out_channels": 4, "num_grid": 2})",
                                    "t"),
                        "model.neck"));
  EXPECT_EQ(pooled_neck->forward({torch::randn({2, 6, 6, 6})})[1].sizes(),
            (std::vector<int64_t>{2, 4, 4}));
}

TEST(DenseCLTest, DenseCorrespondenceOnAHandBuiltExample) {
  // One image, a 2x2 map (4 positions), 4 channels. Channels 0..1 are a large "position code"
  // that decides the matching; channels 2..3 a small payload that the test neck returns as the
  // dense grid. The key view holds the query's codes at permuted positions: key position j
  // carries the code of query position perm[j], perm = {3, 0, 1, 2}, so query position i
  // matches key position j*(i) = {1, 2, 3, 0}[i].
  const float codes[4][2] = {{10, 0}, {0, 10}, {-10, 0}, {0, -10}};
  const int perm[4] = {3, 0, 1, 2};
  const int64_t expected_match[4] = {1, 2, 3, 0};
  torch::manual_seed(4);
  auto payload_q = 0.1 * torch::randn({4, 2}), payload_k = 0.1 * torch::randn({4, 2});
  auto xq = torch::zeros({1, 4, 2, 2}), xk = torch::zeros({1, 4, 2, 2});
  for (int p = 0; p < 4; ++p) {
    for (int c = 0; c < 2; ++c) {
      xq[0][c][p / 2][p % 2] = codes[p][c];
      xk[0][c][p / 2][p % 2] = codes[perm[p]][c];
      xq[0][2 + c][p / 2][p % 2] = payload_q[p][c];
      xk[0][2 + c][p / 2][p % 2] = payload_k[p][c];
    }
  }
  const int64_t K = 6;
  const double t = 0.2;
  auto model = make_densecl(R"({"type": "TestPayloadNeck"})", K, 2, 0.999, 1.0, t);
  auto bufs = model->named_buffers();
  const auto queue2 = bufs["queue2"].clone();

  const auto losses = model->loss({xq, xk}, DataSamples{});
  EXPECT_NEAR(losses.at("loss_single").item<double>(), 0.0, 1e-12); // loss_lambda 1

  // The dense InfoNCE written with the known matching: query row i against key row j*(i).
  auto qn = l2_rows(payload_q), kn = l2_rows(payload_k);
  auto dense = [&](const int64_t* match) {
    auto pos = torch::zeros({4, 1});
    for (int i = 0; i < 4; ++i) pos[i][0] = (qn[i] * kn[match[i]]).sum();
    return info_nce(torch::cat({pos, qn.matmul(queue2)}, 1) / t);
  };
  const double ours = losses.at("loss_dense").item<double>();
  EXPECT_NEAR(ours, dense(expected_match), 1e-5 * dense(expected_match));
  // The test can tell matchings apart: position-to-same-position gives another value.
  const int64_t identity[4] = {0, 1, 2, 3};
  EXPECT_GT(std::abs(dense(identity) - dense(expected_match)), 1e-3);
}

TEST(DenseCLTest, GlobalAndDenseLossesMatchADirectFormulation) {
  // The test neck on random maps, loss_lambda 0.3: loss_single = 0.7 * MoCo's InfoNCE,
  // loss_dense = 0.3 * the dense InfoNCE with cosine-argmax matching, written here directly.
  torch::manual_seed(8);
  const int64_t N = 3, K = 6;
  const double t = 0.2, lambda = 0.3;
  auto model = make_densecl(R"({"type": "TestPayloadNeck"})", K, 2, 0.999, lambda, t);
  auto bufs = model->named_buffers();
  const auto queue = bufs["queue"].clone(), queue2 = bufs["queue2"].clone();
  auto xq = torch::randn({N, 4, 3, 3}), xk = torch::randn({N, 4, 3, 3});
  const auto losses = model->loss({xq, xk}, DataSamples{});

  auto q = l2_rows(xq.slice(1, 2, 4).flatten(2).mean(2));
  auto k = l2_rows(xk.slice(1, 2, 4).flatten(2).mean(2));
  auto single = info_nce(torch::cat({(q * k).sum(1, true), q.matmul(queue)}, 1) / t);
  EXPECT_NEAR(losses.at("loss_single").item<double>(), (1 - lambda) * single, 1e-5 * single);

  std::vector<torch::Tensor> pos, neg;
  for (int64_t n = 0; n < N; ++n) {
    auto bq = l2_rows(xq[n].flatten(1).t()), bk = l2_rows(xk[n].flatten(1).t()); // [S, 4]
    auto gq = l2_rows(xq[n].slice(0, 2, 4).flatten(1).t());
    auto gk = l2_rows(xk[n].slice(0, 2, 4).flatten(1).t());
    for (int64_t i = 0; i < 9; ++i) {
      const int64_t j = bk.matmul(bq[i]).argmax().item<int64_t>();
      pos.push_back((gq[i] * gk[j]).sum().view({1, 1}));
      neg.push_back(gq[i].matmul(queue2).view({1, -1}));
    }
  }
  const double dense = info_nce(torch::cat({torch::cat(pos), torch::cat(neg)}, 1) / t);
  EXPECT_NEAR(losses.at("loss_dense").item<double>(), lambda * dense, 1e-5 * dense);

  // Both queues took this batch's keys: queue the global keys, queue2 the pooled dense keys.
  bufs = model->named_buffers();
  expect_close(bufs["queue"].slice(1, 0, N), k.t(), "queue");
  expect_close(bufs["queue2"].slice(1, 0, N), k.t(), "queue2"); // the test neck pools alike
  EXPECT_EQ(bufs["queue_ptr"].item<int64_t>(), N);
  EXPECT_EQ(bufs["queue2_ptr"].item<int64_t>(), N);
}

TEST(DenseCLTest, TwoStepsMatchUpstream) {
  // Upstream's two steps: losses, both queues (the second step wraps the pointer to 0) and the
  // key neck after the copy (iteration 0) and after one momentum update (iteration 1).
  const auto r = reference();
  auto model = make_densecl(kDenseNeck, 4, 4, 0.9, 0.3, 0.2);
  FakeRun run;
  model->set_context(&run);
  {
    torch::NoGradGuard g;
    auto params = model->named_parameters();
    for (auto& p : model->named_parameters())
      if (p.key().rfind("neck.", 0) == 0) p.value().copy_(ref(r, p.key()));
    auto bufs = model->named_buffers();
    bufs["queue"].copy_(ref(r, "queue_before"));
    bufs["queue2"].copy_(ref(r, "queue2_before"));
  }
  for (int step = 1; step <= 2; ++step) {
    const std::string s = std::to_string(step);
    if (step == 2) {
      torch::NoGradGuard g;
      for (auto& p : model->named_parameters())
        if (p.key().rfind("neck.", 0) == 0) p.value().add_(ref(r, "delta." + p.key().substr(5)));
    }
    run.iteration = step - 1;
    auto losses = model->loss({ref(r, "xq" + s), ref(r, "xk" + s)}, DataSamples{});
    expect_close(losses.at("loss_single").detach().reshape({1}), ref(r, "loss_single" + s),
                 "loss_single step " + s, 1e-5, 0);
    expect_close(losses.at("loss_dense").detach().reshape({1}), ref(r, "loss_dense" + s),
                 "loss_dense step " + s, 1e-5, 0);
    auto bufs = model->named_buffers();
    expect_close(bufs["queue"], ref(r, "queue_after" + s), "queue step " + s);
    expect_close(bufs["queue2"], ref(r, "queue2_after" + s), "queue2 step " + s);
    EXPECT_EQ(bufs["queue_ptr"].item<int64_t>(), ref(r, "queue_ptr_after" + s).item<int64_t>());
    EXPECT_EQ(bufs["queue2_ptr"].item<int64_t>(), ref(r, "queue_ptr_after" + s).item<int64_t>());
    for (auto& p : model->named_parameters()) {
      const std::string prefix = "encoder_k.module.1.";
      if (p.key().rfind(prefix, 0) == 0)
        expect_close(p.value(), ref(r, "key_neck" + s + "." + p.key().substr(prefix.size())),
                     p.key() + " step " + s);
    }
  }
  model->set_context(nullptr);
}

TEST(DenseCLTest, NoGradientIntoTheKeyEncoderAndConfigErrors) {
  torch::manual_seed(1);
  auto model = make_densecl(kDenseNeck, 8, 4, 0.999, 0.5, 0.2);
  auto losses =
      model->loss({torch::randn({2, 6, 3, 3}), torch::randn({2, 6, 3, 3})}, DataSamples{});
  (losses.at("loss_single") + losses.at("loss_dense")).backward();
  int key_params = 0;
  for (auto& p : model->named_parameters()) {
    if (p.key().rfind("encoder_k.", 0) == 0) {
      ++key_params;
      EXPECT_FALSE(p.value().requires_grad()) << p.key();
      EXPECT_FALSE(p.value().grad().defined()) << p.key();
    } else {
      ASSERT_TRUE(p.value().grad().defined()) << p.key();
      EXPECT_GT(p.value().grad().abs().sum().item<double>(), 0) << p.key();
    }
  }
  EXPECT_EQ(key_params, 8);

  Json cfg = Json::parse(R"({"type": "DenseCL", "backbone": {"type": "TestPassBackbone"},
      "neck": {"type": "TestPayloadNeck"}, "head": {"type": "ContrastiveHead"},
      "loss_lambda": 1.5})",
                         "t");
  EXPECT_TRUE(test::has_substr(test::model_config_error(registry(), cfg), "model.loss_lambda"));
  cfg.set("loss_lambda", 0.5);
  cfg.erase("head");
  EXPECT_TRUE(test::has_substr(test::model_config_error(registry(), cfg),
                               "model.head: DenseCL needs a head"));
}

namespace {
// A tiny DenseCL run on generated Fashion-MNIST: 64 images, batch 16, with the warm-up hook.
Json tiny_densecl_config(const fs::path& data_root) {
  Json cfg = Json::parse(R"({
    "model": {"type": "DenseCL", "queue_len": 64, "feat_dim": 8, "loss_lambda": 0.5,
      "data_preprocessor": {"mean": [128.0], "std": [64.0], "bgr_to_rgb": false},
      "backbone": {"type": "ResNet", "depth": 18, "in_channels": 1, "stem_channels": 4,
                   "base_channels": 4, "stem": "cifar", "out_indices": [4]},
      "neck": {"type": "DenseCLNeck", "in_channels": 32, "hid_channels": 32, "out_channels": 8},
      "head": {"type": "ContrastiveHead", "loss": {"type": "CrossEntropyLoss"}, "temperature": 0.2}},
    "optim_wrapper": {"type": "OptimWrapper",
      "optimizer": {"type": "SGD", "lr": 0.03, "momentum": 0.9, "weight_decay": 1e-4}},
    "train_cfg": {"type": "EpochBasedTrainLoop", "max_epochs": 2},
    "default_hooks": {"logger": {"type": "LoggerHook", "interval": 1},
                      "checkpoint": {"type": "CheckpointHook", "interval": 2}},
    "custom_hooks": [{"type": "DenseCLHook", "start_iters": 3}],
    "randomness": {"seed": 3}
  })",
                         "t");
  cfg.set("train_dataloader", test::two_view_fmnist_loader(data_root));
  return cfg;
}
} // namespace

TEST(DenseCLTest, TrainsOnTinyFashionMnistWithTheWarmUpHook) {
  test::load_plugins();
  test::TinyFmnistRun tiny(64, 8);
  const fs::path& data = tiny.data;
  const core::TrainOptions& o = tiny.options;
  core::Runner(tiny_densecl_config(data), o).train();

  // DenseCLHook(start_iters=3): loss_dense is 0 for the first 3 iterations, then weighted.
  std::istringstream lines(test::read_text(fs::path(o.work_dir) / "scalars.jsonl"));
  std::string line;
  std::vector<double> dense, single;
  while (std::getline(lines, line)) {
    const Json rec = Json::parse(line, "scalars.jsonl");
    const Json* d = rec.find("loss_dense");
    if (!d) continue;
    dense.push_back(d->as_number());
    single.push_back(rec.find("loss_single")->as_number());
  }
  ASSERT_EQ(dense.size(), 8u);
  for (size_t i = 0; i < dense.size(); ++i) {
    EXPECT_TRUE(std::isfinite(single[i]) && single[i] > 0) << i;
    if (i < 3)
      EXPECT_EQ(dense[i], 0.0) << i;
    else
      EXPECT_GT(dense[i], 0.0) << i;
  }
  // The checkpoint carries both queues, their pointers and the key encoder.
  const auto state =
      core::load_checkpoint((fs::path(o.work_dir) / "epoch_2.pth").string()).state_dict;
  for (const char* key : {"queue", "queue_ptr", "queue2", "queue2_ptr",
                          "encoder_k.module.0.conv1.weight", "encoder_k.module.1.mlp2.0.weight"})
    EXPECT_TRUE(state.count(key)) << key;
  EXPECT_EQ(state.at("queue_ptr").item<int64_t>(), (8 * 16) % 64);

  // The hook refuses another algorithm.
  Json other = tiny_densecl_config(data);
  other.set("model", Json::parse(R"({"type": "SimCLR",
      "data_preprocessor": {"mean": [128.0], "std": [64.0], "bgr_to_rgb": false},
      "backbone": {"type": "ResNet", "depth": 18, "in_channels": 1, "stem_channels": 4,
                   "base_channels": 4, "stem": "cifar"},
      "neck": {"type": "NonLinearNeck", "in_channels": 32, "hid_channels": 8, "out_channels": 8},
      "head": {"type": "ContrastiveHead"}})",
                                 "t"));
  core::TrainOptions o2 = o;
  o2.work_dir = (tiny.root.path() / "other").string();
  EXPECT_TRUE(
      test::has_substr(test::message_of<ConfigError>([&] { core::Runner(other, o2).train(); }),
                       "DenseCLHook: the model must be a DenseCL"));
}
