// SwAV (plugins/swav): Sinkhorn-Knopp against an independent loop and upstream, SwAVLoss
// against an independent formulation, the algorithm (neck, head, loss, gradients) and the
// queue step through SwAVHook against upstream MMSelfSup 1.0
// (tests/fixtures/swav/make_swav_reference.py), the hook's freezing, and a few training
// iterations of the shipped Fashion-MNIST config on generated data.
#include <gtest/gtest.h>

#include <cmath>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <string>
#include <vector>

#include <torch/serialize.h>
#include <torch/torch.h>

#include <selfsup/core/config_file.h>
#include <selfsup/core/runner.h>
#include <selfsup/sdk.h>

#include "../../../plugins/swav/sinkhorn.h"
#include "local_registry.h"
#include "plugins/plugin_test_support.h"
#include "test_support.h"

using namespace selfsup;
namespace fs = std::filesystem;

namespace {

using test::ref;
using Dict = test::TensorDict;

const test::LocalRegistry& registry() {
  static const test::LocalRegistry registry("swav_test",
                                            [](Registrar& r) { test::add_pass_backbone(r); });
  return registry;
}

Dict reference() {
  return test::load_fixture("tests/fixtures/swav/swav_reference.pt");
}

void expect_close(const torch::Tensor& ours, const torch::Tensor& theirs, const std::string& what,
                  double rtol = 1e-5, double atol = 1e-9) {
  test::expect_allclose(ours, theirs, rtol, atol, what);
}

/// Sinkhorn-Knopp written out with plain loops (one process): Q = exp(S / eps)^T, Q /= sum;
/// `iters` times rows to 1/K then columns to 1/B; Q *= B; returned as [B][K].
std::vector<std::vector<double>> plain_sinkhorn(const torch::Tensor& scores, int iters,
                                                double eps) {
  const auto s = scores.to(torch::kDouble).contiguous();
  const int64_t b = s.size(0), k = s.size(1);
  std::vector<std::vector<double>> q(static_cast<size_t>(k),
                                     std::vector<double>(static_cast<size_t>(b)));
  double total = 0;
  for (int64_t j = 0; j < k; ++j)
    for (int64_t i = 0; i < b; ++i)
      total += q[size_t(j)][size_t(i)] = std::exp(s[i][j].item<double>() / eps);
  for (auto& row : q)
    for (double& v : row) v /= total;
  for (int it = 0; it < iters; ++it) {
    for (auto& row : q) {
      double sum = 0;
      for (double v : row) sum += v;
      for (double& v : row) v /= sum * double(k);
    }
    for (int64_t i = 0; i < b; ++i) {
      double sum = 0;
      for (int64_t j = 0; j < k; ++j) sum += q[j][i];
      for (int64_t j = 0; j < k; ++j) q[j][i] /= sum * double(b);
    }
  }
  std::vector<std::vector<double>> out(static_cast<size_t>(b),
                                       std::vector<double>(static_cast<size_t>(k)));
  for (int64_t i = 0; i < b; ++i)
    for (int64_t j = 0; j < k; ++j) out[i][j] = q[j][i] * double(b);
  return out;
}

Json swav_config(int64_t prototypes, const std::string& crops = "[2, 2]") {
  return Json::parse(R"({"type": "SwAV", "backbone": {"type": "TestPassBackbone"},
      "neck": {"type": "SwAVNeck", "in_channels": 6, "hid_channels": 12, "out_channels": 5,
               "with_avg_pool": true, "norm_cfg": {"type": "BN"}},
      "head": {"type": "SwAVHead", "loss": {"type": "SwAVLoss", "feat_dim": 5,
               "num_prototypes": )" +
                         std::to_string(prototypes) + R"(, "num_crops": )" + crops +
                         R"(, "crops_for_assign": [0, 1], "epsilon": 0.05, "temperature": 0.1}}})",
                     "swav_config");
}

std::shared_ptr<Algorithm> make_swav(int64_t prototypes = 7) {
  return build<Algorithm>(registry().config(swav_config(prototypes), "model"));
}

void load_init(Algorithm& model, const Dict& d) {
  torch::NoGradGuard no_grad;
  auto params = model.named_parameters(), buffers = model.named_buffers();
  size_t n = 0;
  for (const auto& item : d) {
    const std::string key = item.key().toStringRef();
    if (key.rfind("init.", 0) != 0) continue;
    // Upstream's SwAVNeck also holds its BN as `bn`, the same module as projection_neck.1.
    if (key.rfind("init.neck.bn.", 0) == 0) continue;
    torch::Tensor* dst = params.find(key.substr(5));
    if (!dst) dst = buffers.find(key.substr(5));
    ASSERT_NE(dst, nullptr) << key;
    dst->copy_(item.value().toTensor());
    ++n;
  }
  EXPECT_EQ(n, params.size() + buffers.size());
}

std::vector<torch::Tensor> crops(const Dict& d, bool grad = true) {
  std::vector<torch::Tensor> out;
  for (int i = 0; i < 4; ++i)
    out.push_back(ref(d, "crop" + std::to_string(i)).clone().requires_grad_(grad));
  return out;
}

/// A run around one model, for driving SwAVHook by hand: epoch and iteration are set by the
/// test, the work dir is a temp folder; what the hook does not use throws.
class HookRun final : public RunnerContext {
public:
  HookRun(Algorithm& model, std::string dir) : model_(model), dir_(std::move(dir)) {}
  int64_t epoch_now = 0, iter_now = 0;
  int64_t epoch() const override { return epoch_now; }
  int64_t iter() const override { return iter_now; }
  int64_t inner_iter() const override { return iter_now; }
  int64_t max_epochs() const override { return 100; }
  int64_t max_iters() const override { return 1000; }
  int64_t iters_per_epoch() const override { return 10; }
  Algorithm& model() override { return model_; }
  torch::optim::Optimizer& optimizer() override { throw ValueError("HookRun: no optimizer"); }
  const std::string& param_group_name(size_t) const override {
    throw ValueError("HookRun: no optimizer");
  }
  const Dataset& train_dataset() const override { throw ValueError("HookRun: no dataset"); }
  Sampler& train_sampler() override { throw ValueError("HookRun: no sampler"); }
  int64_t train_batch_size() const override { return 4; }
  const std::string& work_dir() const override { return dir_; }
  int rank() const override { return 0; }
  int world_size() const override { return 1; }
  uint64_t seed() const override { return 0; }
  std::string save_checkpoint(const std::string&) override { return ""; }
  void log_scalar(const std::string&, double) override {}
  void log(const std::string&) override {}

private:
  Algorithm& model_;
  std::string dir_;
};

void write_queue(const fs::path& file, const torch::Tensor& queue) {
  c10::Dict<std::string, torch::Tensor> dict;
  dict.insert("queue", queue);
  const std::vector<char> bytes = torch::pickle_save(dict);
  std::ofstream(file, std::ios::binary).write(bytes.data(), std::streamsize(bytes.size()));
}

torch::Tensor read_queue(const fs::path& file) {
  std::ifstream in(file, std::ios::binary);
  const std::vector<char> bytes((std::istreambuf_iterator<char>(in)),
                                std::istreambuf_iterator<char>());
  return torch::pickle_load(bytes).toGenericDict().at("queue").toTensor();
}

} // namespace

TEST(SwAVTest, SinkhornMatchesAPlainLoopUpstreamAndHasTheMarginals) {
  using selfsup::plugins::swav::distributed_sinkhorn;
  const Dict d = reference();
  // Upstream's distributed_sinkhorn on a fixed [6, 5] matrix (3 iterations, epsilon 0.05).
  const torch::Tensor scores = ref(d, "sinkhorn.scores");
  const torch::Tensor ours = distributed_sinkhorn(scores, 3, 1, 0.05);
  expect_close(ours, ref(d, "sinkhorn.q"), "sinkhorn vs upstream");
  // The same against the loops written out here.
  const auto plain = plain_sinkhorn(scores, 3, 0.05);
  for (int64_t i = 0; i < 6; ++i)
    for (int64_t j = 0; j < 5; ++j)
      EXPECT_NEAR(ours[i][j].item<double>(), plain[size_t(i)][size_t(j)],
                  1e-12 * std::abs(plain[size_t(i)][size_t(j)]))
          << i << "," << j;
  // Marginals on a known matrix: each sample's row sums to 1 after any number of iterations;
  // once converged each prototype's column receives B / K of the mass.
  const torch::Tensor known = torch::arange(12, torch::kDouble).reshape({4, 3}).sin() * 0.2;
  EXPECT_TRUE(torch::allclose(distributed_sinkhorn(known, 3, 1, 0.05).sum(1),
                              torch::ones({4}, torch::kDouble), 1e-12, 1e-12));
  const torch::Tensor converged = distributed_sinkhorn(known, 200, 1, 0.05);
  EXPECT_TRUE(torch::allclose(converged.sum(1), torch::ones({4}, torch::kDouble), 1e-12, 1e-12));
  EXPECT_TRUE(
      torch::allclose(converged.sum(0), torch::full({3}, 4.0 / 3.0, torch::kDouble), 1e-6, 1e-9))
      << converged.sum(0);
  // A zero row (a prototype no sample reaches: exp underflows) takes upstream's 1e-12 branch
  // instead of dividing by zero.
  const torch::Tensor dead = torch::tensor({{0.0, -100.0}, {0.0, -100.0}}, torch::kDouble);
  const torch::Tensor q = distributed_sinkhorn(dead, 3, 1, 0.05);
  EXPECT_FALSE(q.isnan().any().item<bool>());
  EXPECT_TRUE(torch::allclose(q.sum(1), torch::ones({2}, torch::kDouble), 1e-9, 1e-12));
}

TEST(SwAVTest, LossMatchesAnIndependentFormulation) {
  // Codes from the plain Sinkhorn loop, then the swapped prediction written out:
  // L = mean_c [ 1/(V-1) sum_{v != c} -mean_i sum_k q_c[i,k] log softmax(s_v[i] / tau)_k ].
  torch::manual_seed(3);
  auto loss = build<Loss>(
      registry().config(Json::parse(R"({"type": "SwAVLoss", "feat_dim": 4, "num_prototypes": 6,
                      "num_crops": [2, 1], "crops_for_assign": [0, 1], "temperature": 0.1,
                      "epsilon": 0.05, "sinkhorn_iterations": 3})",
                                    "t"),
                        "loss"));
  loss->to(torch::kDouble);
  const int64_t b = 5, v = 3;
  auto z = torch::nn::functional::normalize(torch::randn({v * b, 4}, torch::kDouble),
                                            torch::nn::functional::NormalizeFuncOptions().dim(1));
  z.requires_grad_(true);
  const torch::Tensor ours = loss->forward(z, torch::Tensor());
  const torch::Tensor w = loss->named_parameters()["prototypes.weight"];
  EXPECT_TRUE(torch::allclose(w.norm(2, 1), torch::ones({6}, torch::kDouble), 1e-12, 1e-12))
      << "the prototypes are re-normalised at each call";
  const torch::Tensor s = torch::mm(z.detach(), w.t());
  double expected = 0;
  for (int64_t c : {0, 1}) {
    const auto q = plain_sinkhorn(s.slice(0, c * b, (c + 1) * b), 3, 0.05);
    double sub = 0;
    for (int64_t other = 0; other < v; ++other) {
      if (other == c) continue;
      const auto logp = torch::log_softmax(s.slice(0, other * b, (other + 1) * b) / 0.1, 1);
      double total = 0;
      for (int64_t i = 0; i < b; ++i)
        for (int64_t k = 0; k < 6; ++k) total += q[i][k] * logp[i][k].item<double>();
      sub -= total / double(b);
    }
    expected += sub / double(v - 1);
  }
  expected /= 2;
  EXPECT_NEAR(ours.item<double>(), expected, 1e-10 * std::abs(expected));
  // The codes carry no gradient: d loss / d z only flows through the predictions.
  ours.backward();
  EXPECT_TRUE(z.grad().defined());
}

TEST(SwAVTest, AlgorithmAndQueueStepMatchUpstream) {
  const Dict d = reference();
  auto model = make_swav();
  model->to(torch::kDouble);
  model->train();
  load_init(*model, d);
  auto x = crops(d);
  auto loss = model->loss(x, DataSamples{})["loss"];
  expect_close(loss, ref(d, "model.loss"), "loss");
  loss.backward();
  for (int i = 0; i < 4; ++i)
    expect_close(x[size_t(i)].grad(), ref(d, "model.grad.crop" + std::to_string(i)),
                 "grad of crop " + std::to_string(i));
  auto params = model->named_parameters();
  for (const char* name : {"neck.projection_neck.0.weight", "neck.projection_neck.3.weight",
                           "head.loss.prototypes.weight"})
    expect_close(params[name].grad(), ref(d, std::string("model.grad.") + name), name);
  expect_close(params["head.loss.prototypes.weight"], ref(d, "model.prototypes"),
               "re-normalised prototypes");

  // The neck alone (eval mode: BN running statistics after the step above).
  auto neck = model->named_children()["neck"]->as<Neck>();
  model->eval();
  {
    torch::NoGradGuard no_grad;
    const auto emb = neck->forward({torch::cat({x[0], x[1]}), torch::cat({x[2], x[3]})})[0];
    expect_close(emb, ref(d, "neck.eval_embedding"), "neck embedding (eval)");
  }
  model->train();

  // Second step with a queue, given through SwAVHook's queue file: the hook loads it into the
  // loss, the loss uses it (its last row is non-zero) and shifts it, the hook saves it.
  test::TempDir dir;
  write_queue(dir.path() / "queue.pth", ref(d, "queue.before"));
  auto hook = build<Hook>(registry().config(
      Json::parse(R"({"type": "SwAVHook", "batch_size": 4, "epoch_queue_starts": 15,
                      "feat_dim": 5, "queue_length": 8, "priority": "VERY_HIGH"})",
                  "t"),
      "custom_hooks[0]"));
  EXPECT_EQ(hook->priority(), 10);
  HookRun run(*model, dir.path().string());
  hook->before_run(run);
  hook->before_train_epoch(run);
  std::vector<torch::Tensor> x2;
  for (const auto& c : x) x2.push_back(c.detach().flip(0).requires_grad_(true));
  const auto loss2 = model->loss(x2, DataSamples{})["loss"];
  expect_close(loss2, ref(d, "queue.loss"), "loss with the queue");
  hook->after_train_epoch(run);
  expect_close(read_queue(dir.path() / "queue.pth"), ref(d, "queue.after"), "queue after");
}

TEST(SwAVTest, HookStartsTheQueueAtItsEpochAndFreezesThePrototypes) {
  auto model = make_swav();
  test::TempDir dir;
  auto hook = build<Hook>(registry().config(
      Json::parse(R"({"type": "SwAVHook", "batch_size": 4, "epoch_queue_starts": 2,
                      "feat_dim": 5, "queue_length": 10,
                      "frozen_layers_cfg": {"prototypes": 3}})",
                  "t"),
      "custom_hooks[0]"));
  HookRun run(*model, dir.path().string());
  hook->before_run(run);
  auto proto = [&] { return model->named_parameters()["head.loss.prototypes.weight"]; };
  auto other = [&] { return model->named_parameters()["neck.projection_neck.0.weight"]; };
  for (int64_t it : {0, 2}) {
    run.iter_now = it;
    hook->before_train_iter(run);
    EXPECT_FALSE(proto().requires_grad()) << "iteration " << it;
    EXPECT_TRUE(other().requires_grad());
  }
  run.iter_now = 3;
  hook->before_train_iter(run);
  EXPECT_TRUE(proto().requires_grad());

  torch::manual_seed(0);
  std::vector<torch::Tensor> x;
  for (int i = 0; i < 4; ++i) x.push_back(torch::randn({4, 6, 2, 2}));
  for (int64_t epoch = 0; epoch < 3; ++epoch) {
    run.epoch_now = epoch;
    hook->before_train_epoch(run);
    (void)model->loss(x, DataSamples{});
    hook->after_train_epoch(run);
    // Before epoch 2 there is no queue (nothing saved); from it, 10 rounded down to a multiple
    // of the batch (8) rows per assigned crop, the newest embeddings on top.
    EXPECT_EQ(fs::exists(dir.path() / "queue.pth"), epoch >= 2) << "epoch " << epoch;
  }
  const auto queue = read_queue(dir.path() / "queue.pth");
  EXPECT_EQ(queue.sizes(), (std::vector<int64_t>{2, 8, 5}));
  EXPECT_GT(queue.slice(1, 0, 4).abs().sum().item<double>(), 0);
  EXPECT_EQ(queue.slice(1, 4).abs().sum().item<double>(), 0);
}

TEST(SwAVTest, ConfigErrorsNameThePath) {
  EXPECT_TRUE(test::has_substr(
      test::model_config_error(
          registry(),
          [] {
            Json j = swav_config(7);
            j.find("head")->find("loss")->set("num_prototypes", Json::array({Json(3), Json(4)}));
            return j;
          }()),
      "model.head.loss.num_prototypes: a list (MultiPrototypes) is not supported"));
  EXPECT_TRUE(test::has_substr(test::model_config_error(registry(), swav_config(7, "[1, 0]")),
                               "model.head.loss.num_crops"));
  Json no_neck = swav_config(7);
  no_neck.erase("neck");
  EXPECT_TRUE(test::has_substr(test::model_config_error(registry(), no_neck), "SwAV needs a neck"));
}

TEST(SwAVTest, TrainsTheFashionMnistConfigOnTinyData) {
  test::load_plugins();
  test::TinyFmnistRun tiny(32, 8);
  Json cfg = core::load_config_file(std::string(SELFSUP_SOURCE_DIR) +
                                    "/configs/swav/swav_resnet18_fmnist.json");
  Json* loader = cfg.find("train_dataloader");
  loader->set("batch_size", 8);
  loader->set("num_workers", 1);
  loader->find("dataset")->set("data_root", tiny.data.string());
  cfg.find("model")->find("backbone")->set("base_channels", 8);
  cfg.find("model")->find("backbone")->set("stem_channels", 8);
  cfg.find("model")->find("neck")->set("in_channels", 64);
  // The SwAV hook with the test's batch: the queue from epoch 1, prototypes frozen 2 iterations.
  cfg.set("custom_hooks", Json::parse(R"([{"type": "SwAVHook", "priority": "VERY_HIGH",
      "batch_size": 8, "epoch_queue_starts": 1, "crops_for_assign": [0, 1], "feat_dim": 128,
      "queue_length": 16, "frozen_layers_cfg": {"prototypes": 2}}])",
                                      "hooks"));
  cfg.set("train_cfg", Json::parse(R"({"type": "EpochBasedTrainLoop", "max_epochs": 2})", "t"));
  core::Runner runner(cfg, tiny.options);
  runner.train();
  const auto scalars = test::read_text(fs::path(tiny.options.work_dir) / "scalars.jsonl");
  EXPECT_NE(scalars.find("\"loss\""), std::string::npos);
  EXPECT_EQ(scalars.find("nan"), std::string::npos);
  const auto queue = read_queue(fs::path(tiny.options.work_dir) / "queue.pth");
  EXPECT_EQ(queue.sizes(), (std::vector<int64_t>{2, 16, 128}));
}
