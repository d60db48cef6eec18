#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <set>

#include <ATen/autocast_mode.h>
#include <torch/torch.h>

#include <selfsup/core/checkpoint.h>
#include <selfsup/core/data.h>
#include <selfsup/core/knn_eval.h>
#include <selfsup/core/plugin_loader.h>
#include <selfsup/core/sampler.h>
#include <selfsup/core/runner.h>
#include <selfsup/sdk.h>

#include "local_registry.h"
#include "test_support.h"

using namespace selfsup;
namespace fs = std::filesystem;

namespace {

// A tiny SimCLR run on a generated dataset: 64 images, batch 16, 4 iterations per epoch.
Json tiny_config(const fs::path& data_root, int epochs, bool channels_last = false) {
  Json cfg = Json::parse(R"({
    "model": {"type": "SimCLR",
      "data_preprocessor": {"mean": [128.0], "std": [64.0], "bgr_to_rgb": false},
      "backbone": {"type": "ResNet", "depth": 18, "in_channels": 1, "stem_channels": 4, "base_channels": 4,
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
    EXPECT_TRUE(
        test::has_substr(test::message_of<ConfigError>([&] { core::Runner r(cfg, o); }), text));
  };
  expect_error([](Json& c) { c.set("modle", Json::object()); }, "modle: unknown key");
  expect_error([](Json& c) { c.find("model")->find("head")->set("temperature", "hot"); },
               "model.head.temperature: expected float, got \"hot\"");
  expect_error([](Json& c) { c.find("model")->find("backbone")->erase("depth"); },
               "model.backbone.depth: required key is missing");
  expect_error([](Json& c) { c.find("optim_wrapper")->find("optimizer")->set("type", "Adamm"); },
               "optim_wrapper.optimizer.type: unknown optimizer type 'Adamm'");
  expect_error([](Json& c) { c.find("train_dataloader")->set("batch_size", 1000); },
               "train_dataloader: no batch in an epoch");
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
  static const test::LocalRegistry registry("runner_test", [](Registrar& r) {
    r.add<Hook>(
        "TestMoveRecorder", [](const Config&) { return std::make_shared<MoveRecorder>(); },
        Schema("test"));
  });
  core::TrainOptions o = options();
  o.registry = &registry.registry();
  Json cfg = tiny_config(data(), 2); // 4 iterations per epoch, 8 in all
  cfg.find("optim_wrapper")->set("accumulative_counts", 3);
  cfg.set("custom_hooks", Json::array({Json::object({{"type", "TestMoveRecorder"}})}));
  g_moved.clear();
  core::Runner(cfg, o).train();
  // Steps after iterations 3 and 6 (windows of 3, across the epoch boundary) and 8 (the end).
  EXPECT_EQ(g_moved, (std::vector<bool>{false, false, true, false, false, true, false, true}));
}

// ---- The run as hooks and algorithms see it -------------------------------------------

TEST_F(RunnerTest, PluginHookReadsTheWholeRunContext) {
  core::PluginLoader loader;
  loader.load_file(std::string(SELFSUP_TEST_FIXTURE_DIR) +
                   "/context_probe/libfixture_context_probe.so");
  core::TrainOptions o = options("probe");
  Json cfg = tiny_config(data(), 2);
  cfg.find("optim_wrapper")->set("accumulative_counts", 3);
  cfg.set("custom_hooks", Json::array({Json::object({{"type", "ContextProbeHook"}})}));
  core::Runner(cfg, o).train();

  std::ifstream in(root_.path() / "probe" / "probe.jsonl");
  std::vector<Json> recs;
  for (std::string line; std::getline(in, line);) recs.push_back(Json::parse(line, "probe"));
  std::map<std::string, int> count;
  for (const auto& r : recs) ++count[r.find("event")->as_string()];
  // 2 epochs of 4 iterations; accumulation 3 steps after iterations 3, 6 and 8.
  EXPECT_EQ(count["before_run"], 1);
  EXPECT_EQ(count["before_train_epoch"], 2);
  EXPECT_EQ(count["before_train_iter"], 8);
  EXPECT_EQ(count["after_optimizer_step"], 3);
  EXPECT_EQ(count["after_train_iter"], 8);
  EXPECT_EQ(count["after_train_epoch"], 2);
  EXPECT_EQ(count["after_run"], 1);
  std::vector<int64_t> step_iters;
  for (const auto& r : recs) {
    EXPECT_EQ(r.find("max_epochs")->as_int(), 2);
    EXPECT_EQ(r.find("max_iters")->as_int(), 8);
    EXPECT_EQ(r.find("iters_per_epoch")->as_int(), 4);
    EXPECT_GT(r.find("num_params")->as_int(), 10);
    EXPECT_TRUE(r.find("model_has_context")->as_bool());
    EXPECT_EQ(r.find("dataset_size")->as_int(), 64);
    EXPECT_EQ(r.find("sampler_size")->as_int(), 64);
    EXPECT_EQ(r.find("batch_size")->as_int(), 16);
    EXPECT_EQ(r.find("work_dir")->as_string(), (root_.path() / "probe").string());
    EXPECT_EQ(r.find("rank")->as_int(), 0);
    EXPECT_EQ(r.find("world_size")->as_int(), 1);
    EXPECT_EQ(r.find("seed")->as_int(), 7);
    EXPECT_GT(r.find("lr")->as_number(), 0.0);
    EXPECT_EQ(r.find("group0")->as_string(), "backbone.conv1.weight");
    if (r.find("event")->as_string() == "after_optimizer_step")
      step_iters.push_back(r.find("iter")->as_int());
  }
  EXPECT_EQ(step_iters, (std::vector<int64_t>{3, 6, 8}));
  // The iteration counters as each event sees them.
  EXPECT_EQ(recs.front().find("iter")->as_int(), 0);
  EXPECT_EQ(recs.back().find("event")->as_string(), "after_run");
  EXPECT_EQ(recs.back().find("iter")->as_int(), 8);
  EXPECT_EQ(recs.back().find("epoch")->as_int(), 2);
  // The checkpoint asked for by the hook was written and holds the run's state.
  const std::string ckpt = recs.back().find("checkpoint")->as_string();
  EXPECT_EQ(ckpt, (root_.path() / "probe" / "probe.pth").string());
  EXPECT_EQ(core::load_checkpoint(ckpt).meta.find("iter")->as_int(), 8);
}

TEST_F(RunnerTest, IterBasedLoopRunsMaxItersAcrossEpochs) {
  core::TrainOptions o = options("iters");
  Json cfg = tiny_config(data(), 1);
  cfg.set("train_cfg", Json::object({{"type", "IterBasedTrainLoop"}, {"max_iters", Json(10)}}));
  core::Runner runner(cfg, o);
  EXPECT_EQ(runner.max_iters(), 10);
  EXPECT_EQ(runner.max_epochs(), 3); // 4 + 4 + 2
  runner.train();
  EXPECT_EQ(runner.iter(), 10);
  EXPECT_EQ(runner.epoch(), 3);
  int lines = 0;
  std::ifstream jl(root_.path() / "iters" / "scalars.jsonl");
  for (std::string line; std::getline(jl, line);) ++lines;
  EXPECT_EQ(lines, 10);
  cfg.set("train_cfg", Json::object({{"type", "IterBasedTrainLoop"}, {"max_iters", Json(0)}}));
  EXPECT_NE(test::message_of([&] { core::Runner(cfg, o); }).find("train_cfg.max_iters"),
            std::string::npos);
}

TEST(SamplerTest, DefaultSamplerShardsDisjointEqualAndEpochSeeded) {
  test::load_plugins();
  auto make = [](bool round_up, int rank, int world) {
    core::DefaultSamplerOptions o;
    o.round_up = round_up;
    core::DefaultSampler s(o);
    s.bind(10, rank, world, 3);
    return s;
  };
  // Three ranks, round_up: 4 each, 12 in all (two indices repeated), every index seen.
  std::multiset<int64_t> all;
  for (int r = 0; r < 3; ++r) {
    auto s = make(true, r, 3);
    auto idx = s.indices(5);
    EXPECT_EQ(int64_t(idx.size()), s.size());
    EXPECT_EQ(s.size(), 4);
    all.insert(idx.begin(), idx.end());
  }
  EXPECT_EQ(all.size(), 12u);
  for (int64_t i = 0; i < 10; ++i) EXPECT_GE(all.count(i), 1u) << i;
  // Without round_up the shards are disjoint and cover the dataset exactly: 4, 3, 3.
  std::set<int64_t> seen;
  int64_t total = 0;
  for (int r = 0; r < 3; ++r) {
    auto idx = make(false, r, 3).indices(5);
    total += int64_t(idx.size());
    seen.insert(idx.begin(), idx.end());
  }
  EXPECT_EQ(total, 10);
  EXPECT_EQ(seen.size(), 10u);
  // The rank's shard is every world_size-th index of the one global order.
  auto global = make(true, 0, 1).indices(5);
  auto r1 = make(true, 1, 3).indices(5);
  EXPECT_EQ(r1[0], global[1]);
  EXPECT_EQ(r1[1], global[4]);
  // Same epoch, same order; another epoch, another order; shuffle off is the identity.
  EXPECT_EQ(make(true, 0, 1).indices(5), global);
  EXPECT_NE(make(true, 0, 1).indices(6), global);
  core::DefaultSamplerOptions no_shuffle;
  no_shuffle.shuffle = false;
  core::DefaultSampler plain(no_shuffle);
  plain.bind(4, 0, 1, 3);
  EXPECT_EQ(plain.indices(9), (std::vector<int64_t>{0, 1, 2, 3}));
  EXPECT_THROW(plain.bind(4, 2, 2, 0), ValueError);
}

TEST(DataPreprocessorTest, MMEngineDefaultsAndBroadcast) {
  test::load_plugins();
  auto make = [](const std::string& json) {
    return build<DataPreprocessor>(Config(Json::parse(json, "t"), "model.data_preprocessor"));
  };
  auto x = torch::arange(2 * 3 * 2 * 2, torch::kInt64).to(torch::kUInt8).view({2, 3, 2, 2});
  DataSamples samples;
  // No mean/std: a plain cast, channels kept in order (bgr_to_rgb defaults to false).
  auto plain = make(R"({"type": "SelfSupDataPreprocessor"})")->forward({x}, samples);
  EXPECT_TRUE(torch::equal(plain[0], x.to(torch::kFloat32)));
  // One-value mean/std broadcast over channels; bgr_to_rgb flips channels first.
  auto norm = make(R"({"type": "SelfSupDataPreprocessor", "mean": [2.0], "std": [4.0],
                       "bgr_to_rgb": true})")
                  ->forward({x}, samples);
  EXPECT_TRUE(torch::allclose(norm[0], (x.flip({1}).to(torch::kFloat32) - 2.0) / 4.0));
  // TwoNorm: the second view with its own statistics.
  auto two = make(R"({"type": "TwoNormDataPreprocessor", "mean": [1.0], "std": [2.0],
                      "second_mean": [0.0], "second_std": [255.0]})")
                 ->forward({x, x}, samples);
  EXPECT_TRUE(torch::allclose(two[0], (x.to(torch::kFloat32) - 1.0) / 2.0));
  EXPECT_TRUE(torch::allclose(two[1], x.to(torch::kFloat32) / 255.0));
  // Errors name the place.
  EXPECT_NE(test::message_of([&] {
              make(R"({"type": "SelfSupDataPreprocessor", "mean": [1]})");
            }).find("model.data_preprocessor"),
            std::string::npos);
  EXPECT_NE(test::message_of([&] {
              make(R"({"type": "NoSuchPreprocessor"})");
            }).find("unknown data_preprocessor type"),
            std::string::npos);
}

namespace {
// An algorithm evaluated on its own features: the per-image mean and max intensity.
class OwnFeatures final : public BaseModel {
public:
  explicit OwnFeatures(const Config& cfg) : BaseModel(cfg) {}
  std::vector<torch::Tensor> extract_feat(const std::vector<torch::Tensor>& inputs) override {
    auto x = inputs[0].flatten(1);
    return {torch::stack({x.mean(1), std::get<0>(x.max(1))}, 1)};
  }
  LossMap loss(const std::vector<torch::Tensor>& inputs, const DataSamples&) override {
    return {{"loss", backbone_->forward(inputs[0]).back().mean()}};
  }
};
} // namespace

TEST_F(RunnerTest, KnnFeaturesComeFromExtractFeat) {
  static const test::LocalRegistry registry("runner_test", [](Registrar& r) {
    r.add<Algorithm>(
        "TestOwnFeatures", [](const Config& c) { return std::make_shared<OwnFeatures>(c); },
        BaseModel::base_schema("test"));
  });
  Json model = Json::parse(R"({"type": "TestOwnFeatures",
      "backbone": {"type": "ResNet", "depth": 18, "in_channels": 1, "stem_channels": 4, "base_channels": 4,
                   "stem": "cifar"}})",
                           "t");
  auto algo = build<Algorithm>(registry.config(model, "model"));
  Json loader_cfg = Json::parse(R"({"batch_size": 8, "num_workers": 1,
      "sampler": {"type": "DefaultSampler", "shuffle": false},
      "dataset": {"type": "FashionMNIST", "split": "test",
                  "pipeline": [{"type": "PackSelfSupInputs"}]}})",
                                "t");
  loader_cfg.find("dataset")->set("data_root", data().string());
  auto loader = core::DataLoader::from_config(Config(loader_cfg, "bank_dataloader"), 0);
  torch::Tensor labels;
  auto feats = core::extract_features(*algo, *loader, labels, torch::kCPU);
  ASSERT_EQ(feats.sizes(), (std::vector<int64_t>{20, 2})); // not the backbone's 32 channels
  // Row 0 is image 0: (mean, max) of its normalised pixels, L2-normalised.
  loader->start_epoch(0);
  auto batch = loader->next();
  auto x = batch->views[0].to(torch::kFloat32).flatten(1);
  auto f0 = torch::stack({x[0].mean(), x[0].max()});
  EXPECT_TRUE(torch::allclose(feats[0], f0 / f0.norm(), 1e-5, 1e-6));
}

TEST_F(RunnerTest, ThreadsAreBoundedByTheMachine) {
  core::TrainOptions o = options();
  o.threads = 100000;
  EXPECT_TRUE(test::has_substr(
      test::message_of<ConfigError>([&] { core::Runner r(tiny_config(data(), 1), o); }),
      "--threads: expected at most "));
}
