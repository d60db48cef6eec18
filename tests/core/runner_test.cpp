#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>

#include <ATen/autocast_mode.h>
#include <torch/torch.h>

#include <selfsup/core/checkpoint.h>
#include <selfsup/core/runner.h>
#include <selfsup/sdk.h>

#include "test_support.h"

using namespace selfsup;
namespace fs = std::filesystem;

namespace {

std::shared_ptr<Optimizer> make_opt(const std::string& json) {
  test::load_plugins();
  return build<Optimizer>(Config(Json::parse(json, "t"), "optim_wrapper.optimizer"));
}

// A tiny SimCLR run on a generated dataset: 64 images, batch 16, 4 iterations per epoch.
Json tiny_config(const fs::path& data_root, int epochs, bool channels_last = false) {
  Json cfg = Json::parse(R"({
    "model": {"type": "SimCLR",
      "data_preprocessor": {"mean": [128.0], "std": [64.0], "bgr_to_rgb": false},
      "backbone": {"type": "ResNet", "depth": 18, "in_channels": 1, "base_channels": 4,
                   "stem": "cifar", "zero_init_residual": true},
      "neck": {"type": "NonLinearNeck", "in_channels": 32, "hid_channels": 32, "out_channels": 16},
      "head": {"type": "ContrastiveHead", "loss": {"type": "CrossEntropyLoss"}, "temperature": 0.1}},
    "train_dataloader": {"batch_size": 16, "num_workers": 2, "drop_last": true,
      "dataset": {"type": "FashionMNIST", "split": "train", "pipeline": [
        {"type": "MultiView", "num_views": [2], "transforms": [[
          {"type": "RandomResizedCrop", "size": 16, "scale": [0.2, 1.0]},
          {"type": "RandomFlip", "prob": 0.5}]]},
        {"type": "PackSelfSupInputs"}]}},
    "optim_wrapper": {"type": "OptimWrapper",
      "optimizer": {"type": "LARS", "lr": 0.3, "momentum": 0.9, "weight_decay": 1e-6},
      "paramwise_cfg": {"custom_keys": {"bn": {"decay_mult": 0, "lars_exclude": true},
                                        "bias": {"decay_mult": 0, "lars_exclude": true}}}},
    "param_scheduler": [
      {"type": "LinearLR", "start_factor": 0.1, "begin": 0, "end": 1, "convert_to_iter_based": true},
      {"type": "CosineAnnealingLR", "T_max": 3, "begin": 1, "end": 4, "convert_to_iter_based": true}],
    "default_hooks": {"logger": {"type": "LoggerHook", "interval": 2},
                      "checkpoint": {"type": "CheckpointHook", "interval": 1, "max_keep_ckpts": 2}},
    "randomness": {"seed": 7}
  })",
                         "t");
  cfg.find("train_dataloader")->find("dataset")->set("data_root", data_root.string());
  cfg.set("train_cfg",
          Json::object({{"type", "EpochBasedTrainLoop"}, {"max_epochs", Json(epochs)}}));
  cfg.set("env_cfg", Json::object({{"channels_last", channels_last}}));
  return cfg;
}

core::TensorMap final_weights(const fs::path& work_dir, int epoch) {
  return core::load_checkpoint((work_dir / ("epoch_" + std::to_string(epoch) + ".pth")).string())
      .state_dict;
}

} // namespace

// A generated Fashion-MNIST root (64 train, 20 test images) in a fresh temp dir, and the
// engine's types loaded.
class RunnerTest : public ::testing::Test {
protected:
  void SetUp() override {
    test::load_plugins();
    test::make_fake_fmnist(data(), 64, 20);
  }
  [[nodiscard]] fs::path data() const { return root_.path() / "data"; }
  /// Train options writing into `sub` below the temp dir (the temp dir itself if empty).
  [[nodiscard]] core::TrainOptions options(const std::string& sub = "") const {
    core::TrainOptions o;
    o.work_dir = sub.empty() ? root_.str() : (root_.path() / sub).string();
    return o;
  }
  test::TempDir root_;
};

TEST(OptimizerTest, SgdMomentumWeightDecayByHand) {
  auto opt = make_opt(R"({"type": "SGD", "lr": 0.1, "momentum": 0.9, "weight_decay": 0.01})");
  auto p = torch::ones({1}, torch::requires_grad());
  ParamGroup g = opt->defaults();
  g.params = {p};
  opt->add_param_group(g);
  for (int i = 0; i < 2; ++i) {
    opt->zero_grad();
    (2 * p).sum().backward();
    opt->step();
  }
  // d1 = 2 + 0.01 = 2.01, p1 = 0.799; d2 = 2.00799, buf = 0.9*2.01 + 2.00799, p2 = 0.417301.
  EXPECT_NEAR(p.item<double>(), 0.417301, 1e-6);
}

TEST(OptimizerTest, LarsTrustRatioAndExclusion) {
  auto opt = make_opt(R"({"type": "LARS", "lr": 1.0, "eta": 0.001})");
  auto w = torch::tensor({3.0, 4.0}).requires_grad_();
  auto b = torch::tensor({3.0, 4.0}).requires_grad_();
  ParamGroup gw = opt->defaults(), gb = opt->defaults();
  gw.params = {w};
  gb.params = {b};
  gb.lars_exclude = true;
  opt->add_param_group(gw);
  opt->add_param_group(gb);
  ((w * torch::tensor({0.3, 0.4})).sum() + (b * torch::tensor({0.3, 0.4})).sum()).backward();
  opt->step();
  // |w| = 5, |g| = 0.5: local lr = 0.001 * 5 / 0.5 = 0.01.
  EXPECT_NEAR(w[0].item<double>(), 3 - 0.003, 1e-7);
  EXPECT_NEAR(w[1].item<double>(), 4 - 0.004, 1e-7);
  EXPECT_NEAR(b[0].item<double>(), 3 - 0.3, 1e-7);
  EXPECT_NEAR(b[1].item<double>(), 4 - 0.4, 1e-7);
}

TEST(SchedulerTest, WarmupThenCosineByIteration) {
  test::load_plugins();
  auto warm = build<ParamScheduler>(Config(Json::parse(
      R"({"type": "LinearLR", "start_factor": 0.1, "by_epoch": false, "begin": 0, "end": 10})",
      "t")));
  auto cos = build<ParamScheduler>(Config(Json::parse(
      R"({"type": "CosineAnnealingLR", "by_epoch": true, "begin": 1, "end": 3, "T_max": 2,
          "eta_min": 0.0, "convert_to_iter_based": true})",
      "t")));
  auto steps = build<ParamScheduler>(Config(Json::parse(
      R"({"type": "MultiStepLR", "by_epoch": true, "begin": 1, "milestones": [1], "gamma": 0.5})",
      "t")));
  warm->bind(10, 3);
  cos->bind(10, 3);
  steps->bind(10, 3);
  auto lr = [&](int64_t it) { return cos->apply(it, warm->apply(it, 1.0)); };
  // MMEngine's LinearLR reaches end_factor at the last step of [begin, end): 9 steps here.
  EXPECT_NEAR(lr(0), 0.1, 1e-12);
  EXPECT_NEAR(lr(3), 0.1 + 0.9 * 3 / 9, 1e-12);
  EXPECT_NEAR(lr(9), 1.0, 1e-12);
  EXPECT_NEAR(lr(10), 1.0, 1e-12);
  EXPECT_NEAR(lr(20), 0.5, 1e-12); // half way through the cosine
  EXPECT_NEAR(lr(15), (1 + std::cos(M_PI / 4)) / 2, 1e-12);
  EXPECT_NEAR(lr(29), (1 + std::cos(M_PI * 19 / 20)) / 2, 1e-12);
  // MultiStepLR by epoch: milestones count from begin (epoch 1), so it halves from epoch 2.
  EXPECT_NEAR(steps->apply(15, 1.0), 1.0, 1e-12);
  EXPECT_NEAR(steps->apply(20, 1.0), 0.5, 1e-12);
  auto bad = Json::parse(R"({"type": "LinearLR", "start_factor": 1.5})", "t");
  EXPECT_THROW((void)build<ParamScheduler>(Config(bad, "param_scheduler[0]")), ConfigError);
}

TEST_F(RunnerTest, ParamwiseDecayFollowsMMEngineOrder) {
  core::TrainOptions o = options();
  auto decay_of = [&](const Json& paramwise) {
    Json cfg = tiny_config(data(), 1);
    cfg.find("optim_wrapper")->set("paramwise_cfg", paramwise);
    core::Runner r(cfg, o);
    std::map<std::string, double> wd;
    for (const auto& g : r.optimizer().param_groups()) wd[g.names.at(0)] = g.weight_decay;
    return wd;
  };
  // bias_decay_mult alone covers norm biases too; norm weights keep the base decay.
  auto wd = decay_of(Json::parse(R"({"bias_decay_mult": 0})", "t"));
  EXPECT_EQ(wd.at("backbone.bn1.bias"), 0.0);
  EXPECT_EQ(wd.at("neck.fc0.weight"), 1e-6);
  EXPECT_EQ(wd.at("backbone.bn1.weight"), 1e-6);
  // norm_decay_mult takes every norm parameter first.
  wd = decay_of(Json::parse(R"({"norm_decay_mult": 0, "bias_decay_mult": 2})", "t"));
  EXPECT_EQ(wd.at("backbone.bn1.weight"), 0.0);
  EXPECT_EQ(wd.at("backbone.bn1.bias"), 0.0);
  // custom_keys: the longest matching key wins.
  wd = decay_of(Json::parse(R"({"custom_keys": {"bn": {"decay_mult": 0},
      "layer1.0.bn1": {"decay_mult": 3}}})",
                            "t"));
  EXPECT_EQ(wd.at("backbone.layer1.0.bn1.weight"), 3e-6);
  EXPECT_EQ(wd.at("backbone.layer1.0.bn2.weight"), 0.0);
}

TEST_F(RunnerTest, Bf16AutocastTrainsAndRestoresState) {
  core::TrainOptions o = options();
  Json cfg = tiny_config(data(), 1);
  cfg.find("optim_wrapper")->set("type", "AmpOptimWrapper");
  cfg.find("optim_wrapper")->set("dtype", "bfloat16");
  core::Runner(cfg, o).train();
  EXPECT_FALSE(at::autocast::is_cpu_enabled());
  std::ifstream jl(root_.path() / "scalars.jsonl");
  std::string line;
  std::getline(jl, line);
  EXPECT_TRUE(std::isfinite(Json::parse(line, "scalars").find("loss")->as_number()));
  cfg.find("optim_wrapper")->set("dtype", "float16");
  EXPECT_THROW(core::Runner(cfg, o), ConfigError);
}

class RunnerResumeTest : public RunnerTest, public ::testing::WithParamInterface<bool> {};

TEST_P(RunnerResumeTest, ResumeGivesIdenticalWeights) {
  const bool channels_last = GetParam();
  torch::set_num_threads(2);

  core::TrainOptions straight = options("straight");
  straight.threads = 2;
  core::Runner(tiny_config(data(), 2, channels_last), straight).train();

  core::TrainOptions first = options("split");
  first.threads = 2;
  core::Runner(tiny_config(data(), 1, channels_last), first).train();
  ASSERT_TRUE(fs::exists(root_.path() / "split" / "epoch_1.pth"));
  core::TrainOptions second = first;
  second.resume = "auto";
  core::Runner(tiny_config(data(), 2, channels_last), second).train();

  auto a = final_weights(root_.path() / "straight", 2);
  auto b = final_weights(root_.path() / "split", 2);
  ASSERT_EQ(a.size(), b.size());
  ASSERT_GT(a.size(), 50u);
  for (const auto& [name, t] : a) {
    ASSERT_TRUE(b.count(name)) << name;
    EXPECT_TRUE(torch::equal(t, b.at(name))) << name;
  }
  // Weights moved at all (the comparison is not trivially true).
  auto init = core::load_checkpoint((root_.path() / "split" / "epoch_1.pth").string()).state_dict;
  EXPECT_FALSE(torch::equal(init.at("backbone.conv1.weight"), a.at("backbone.conv1.weight")));
  // Logs and the merged config are in the work dir; max_keep_ckpts kept the last two.
  EXPECT_TRUE(fs::exists(root_.path() / "straight" / "scalars.jsonl"));
  EXPECT_TRUE(fs::exists(root_.path() / "straight" / "config.json"));
  std::ifstream jl(root_.path() / "straight" / "scalars.jsonl");
  std::string line;
  int lines = 0;
  while (std::getline(jl, line)) {
    Json rec = Json::parse(line, "scalars.jsonl");
    EXPECT_TRUE(rec.find("loss") && rec.find("lr") && rec.find("iter") && rec.find("time"));
    ++lines;
  }
  EXPECT_EQ(lines, 8);
}

INSTANTIATE_TEST_SUITE_P(MemoryFormat, RunnerResumeTest, ::testing::Values(false, true),
                         [](const auto& info) {
                           return info.param ? "ChannelsLast" : "Contiguous";
                         });

TEST_F(RunnerTest, ChannelsLastComputesTheSameLoss) {
  double first_loss[2];
  for (int cl = 0; cl < 2; ++cl) {
    core::TrainOptions o = options(std::to_string(cl));
    o.threads = 1;
    Json cfg = tiny_config(data(), 1, cl == 1);
    core::Runner(cfg, o).train();
    std::ifstream jl(root_.path() / std::to_string(cl) / "scalars.jsonl");
    std::string line;
    std::getline(jl, line);
    first_loss[cl] = Json::parse(line, "scalars.jsonl").find("loss")->as_number();
  }
  EXPECT_NEAR(first_loss[0], first_loss[1], 1e-4 * std::abs(first_loss[0]));
}

TEST_F(RunnerTest, StopRequestSavesCheckpointAndResumes) {
  core::TrainOptions o = options("w");
  o.threads = 2;
  core::request_stop(); // as if SIGINT arrived during the first iteration
  EXPECT_THROW(core::Runner(tiny_config(data(), 2), o).train(), core::Interrupted);
  ASSERT_TRUE(fs::exists(root_.path() / "w" / "iter_1.pth"));
  core::clear_stop_request();
  o.resume = "auto";
  core::Runner(tiny_config(data(), 1), o).train();
  EXPECT_TRUE(fs::exists(root_.path() / "w" / "epoch_1.pth"));
  EXPECT_FALSE(fs::exists(root_.path() / "w" / "iter_1.pth")); // superseded, pruned
}

TEST_F(RunnerTest, ConfigErrorsNameTheirPath) {
  core::TrainOptions o = options();
  auto expect_error = [&](const std::function<void(Json&)>& edit, const std::string& text) {
    Json cfg = tiny_config(data(), 1);
    edit(cfg);
    try {
      core::Runner r(cfg, o);
      ADD_FAILURE() << "no error for " << text;
    } catch (const ConfigError& e) {
      EXPECT_NE(std::string(e.what()).find(text), std::string::npos) << e.what();
    }
  };
  expect_error([](Json& c) { c.set("modle", Json::object()); }, "modle: unknown key");
  expect_error([](Json& c) { c.find("model")->find("head")->set("temperature", "hot"); },
               "model.head.temperature: expected float, got \"hot\"");
  expect_error([](Json& c) { c.find("model")->find("backbone")->erase("depth"); },
               "model.backbone.depth: required key is missing");
  expect_error([](Json& c) { c.find("optim_wrapper")->find("optimizer")->set("type", "Adamm"); },
               "optim_wrapper.optimizer.type: unknown optimizer type 'Adamm'");
  expect_error([](Json& c) { c.find("train_dataloader")->set("batch_size", 1000); },
               "train_dataloader: the dataset yields no batch");
  expect_error([](Json& c) { c.find("param_scheduler")->at(1).set("eta_min", "x"); },
               "param_scheduler[1].eta_min: expected float");
}

namespace {
// Records, after every iteration, whether the weights moved since the previous one.
std::vector<bool> g_moved;
class MoveRecorder final : public Hook {
public:
  void after_train_iter(RunnerContext& ctx) override {
    auto w = ctx.model().named_parameters()["backbone.conv1.weight"].detach().clone();
    g_moved.push_back(last_.defined() && !torch::equal(w, last_));
    last_ = w;
  }
  void before_run(RunnerContext& ctx) override {
    last_ = ctx.model().named_parameters()["backbone.conv1.weight"].detach().clone();
  }

private:
  torch::Tensor last_;
};
} // namespace

TEST_F(RunnerTest, AccumulationStepsEveryNIterationsAndAtTheEnd) {
  static bool registered = [] {
    Registrar r("runner_test", "runner_test.cpp");
    r.add<Hook>(
        "TestMoveRecorder", [](const Config&) { return std::make_shared<MoveRecorder>(); },
        Schema("test"));
    r.commit();
    return true;
  }();
  (void)registered;
  core::TrainOptions o = options();
  Json cfg = tiny_config(data(), 2); // 4 iterations per epoch, 8 in all
  cfg.find("optim_wrapper")->set("accumulative_counts", 3);
  cfg.set("custom_hooks", Json::array({Json::object({{"type", "TestMoveRecorder"}})}));
  g_moved.clear();
  core::Runner(cfg, o).train();
  // Steps after iterations 3 and 6 (windows of 3, across the epoch boundary) and 8 (the end).
  EXPECT_EQ(g_moved, (std::vector<bool>{false, false, true, false, false, true, false, true}));
}
