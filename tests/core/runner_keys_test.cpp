// The runner's top-level keys (issue 8, point 5): the keys MMSelfSup's default_runtime.py
// carries are accepted, values that would mean something else are refused naming their path,
// unknown keys stay errors; load_from loads the weights only; resume=true with a load_from
// resumes from it (as MMEngine's Runner).
#include <gtest/gtest.h>

#include <algorithm>
#include <filesystem>
#include <string>
#include <vector>

#include <torch/torch.h>

#include <selfsup/core/checkpoint.h>
#include <selfsup/core/preflight.h>
#include <selfsup/core/runner.h>
#include <selfsup/interfaces/algorithm.h>
#include <selfsup/json.h>

#include "test_support.h"

using namespace selfsup;
namespace fs = std::filesystem;

namespace {

// A tiny SimCLR run: 32 generated images, batch 16, 2 iterations per epoch.
Json tiny_config(const fs::path& data_root) {
  Json cfg = Json::parse(R"({
    "model": {"type": "SimCLR",
      "data_preprocessor": {"mean": [128.0], "std": [64.0], "bgr_to_rgb": false},
      "backbone": {"type": "ResNet", "depth": 18, "in_channels": 1, "stem_channels": 4,
                   "base_channels": 4, "stem": "cifar"},
      "neck": {"type": "NonLinearNeck", "in_channels": 32, "hid_channels": 16, "out_channels": 8},
      "head": {"type": "ContrastiveHead", "loss": {"type": "CrossEntropyLoss"}, "temperature": 0.1}},
    "train_dataloader": {"batch_size": 16, "num_workers": 1, "drop_last": true,
      "dataset": {"type": "FashionMNIST", "split": "train", "pipeline": [
        {"type": "MultiView", "num_views": [2], "transforms": [[
          {"type": "RandomResizedCrop", "size": 12, "scale": [0.2, 1.0]}]]},
        {"type": "PackSelfSupInputs"}]}},
    "train_cfg": {"type": "EpochBasedTrainLoop", "max_epochs": 1},
    "optim_wrapper": {"optimizer": {"type": "SGD", "lr": 0.1, "momentum": 0.9}},
    "default_hooks": {"checkpoint": {"type": "CheckpointHook", "interval": 1}},
    "randomness": {"seed": 3}
  })",
                         "t");
  cfg.find("train_dataloader")->find("dataset")->set("data_root", data_root.string());
  return cfg;
}

// What MMSelfSup 1.0's configs/selfsup/_base_/default_runtime.py carries besides the hooks.
const char* kMMSelfSupRuntime = R"({
  "default_scope": "mmselfsup",
  "env_cfg": {"cudnn_benchmark": false,
              "mp_cfg": {"mp_start_method": "fork", "opencv_num_threads": 0},
              "dist_cfg": {"backend": "nccl"}},
  "log_processor": {"window_size": 10,
                    "custom_cfg": [{"data_src": "", "method": "mean", "window_size": "global"}]},
  "vis_backends": [{"type": "LocalVisBackend"}],
  "visualizer": {"type": "SelfSupVisualizer", "vis_backends": [{"type": "LocalVisBackend"}],
                 "name": "visualizer"},
  "log_level": "INFO",
  "load_from": null,
  "resume": false,
  "launcher": "none",
  "auto_scale_lr": {"base_batch_size": 256},
  "find_unused_parameters": false
})";

class RunnerKeysTest : public ::testing::Test {
protected:
  void SetUp() override {
    test::load_plugins();
    test::make_fake_fmnist(data(), 32, 8);
  }
  [[nodiscard]] fs::path data() const { return root_.path() / "data"; }
  [[nodiscard]] core::TrainOptions options(const std::string& sub) const {
    core::TrainOptions o;
    o.work_dir = (root_.path() / sub).string();
    o.threads = 1;
    return o;
  }
  /// The tiny config with `extra`'s top-level keys set over it.
  [[nodiscard]] Json config_with(const std::string& extra) const {
    Json cfg = tiny_config(data());
    const Json more = Json::parse(extra, "extra");
    for (const auto& k : more.keys()) cfg.set(k, *more.find(k));
    return cfg;
  }
  [[nodiscard]] std::vector<std::string> problems(const std::string& extra) const {
    return core::preflight(config_with(extra), options("w"));
  }
  test::TempDir root_;
};

std::string joined(const std::vector<std::string>& v) {
  std::string out;
  for (const auto& s : v) out += s + "\n";
  return out;
}

} // namespace

TEST_F(RunnerKeysTest, MMSelfSupRuntimeKeysAreAccepted) {
  EXPECT_TRUE(problems(kMMSelfSupRuntime).empty()) << joined(problems(kMMSelfSupRuntime));
  // The runner itself builds with them.
  core::Runner runner(config_with(kMMSelfSupRuntime), options("w"));
  EXPECT_EQ(runner.epoch(), 0);
  for (const char* key : {"default_scope", "log_level", "visualizer", "vis_backends",
                          "log_processor", "launcher", "auto_scale_lr", "find_unused_parameters"}) {
    const auto& keys = core::runner_config_keys();
    EXPECT_NE(std::find(keys.begin(), keys.end(), key), keys.end()) << key;
  }
}

TEST_F(RunnerKeysTest, ValuesThatWouldMeanSomethingElseAreRefused) {
  const std::string all = joined(problems(R"({
    "default_scope": "mmcls", "launcher": "slurm", "log_level": "VERBOSE",
    "auto_scale_lr": {"base_batch_size": 256, "enable": true},
    "env_cfg": {"mp_cfg": {"opencv_num_threads": 4}, "dist_cfg": {"backend": "tcp"}},
    "visualizer": 3, "log_levl": "INFO"})"));
  for (const char* want :
       {"default_scope: expected one of \"mmselfsup\", got \"mmcls\"",
        "launcher: expected one of \"none\", \"pytorch\", got \"slurm\"",
        "log_level: expected one of", "auto_scale_lr.enable: expected one of false, got true",
        "env_cfg.mp_cfg.opencv_num_threads: expected one of 0, got 4",
        "env_cfg.dist_cfg.backend: expected one of", "log_levl: unknown key"})
    EXPECT_TRUE(test::has_substr(all, want)) << want;
  EXPECT_TRUE(test::has_substr(joined(problems(R"({"visualizer": 3})")),
                               "visualizer: expected a dict, got 3"));
}

TEST_F(RunnerKeysTest, LoadFromLoadsTheWeightsOnly) {
  torch::manual_seed(0);
  {
    core::Runner first(tiny_config(data()), options("a"));
    first.train();
  }
  const std::string ckpt = (root_.path() / "a" / "epoch_1.pth").string();
  ASSERT_TRUE(fs::exists(ckpt));
  const core::TensorMap saved = core::load_checkpoint(ckpt).state_dict;

  Json cfg = tiny_config(data());
  cfg.set("load_from", ckpt);
  cfg.find("randomness")->set("seed", Json(99)); // another init, overwritten by load_from
  core::Runner second(cfg, options("b"));
  EXPECT_EQ(second.epoch(), 0);
  EXPECT_EQ(second.iter(), 0);
  size_t compared = 0;
  for (const auto& p : second.model().named_parameters()) {
    ASSERT_TRUE(saved.count(p.key())) << p.key();
    EXPECT_TRUE(torch::equal(p.value(), saved.at(p.key()))) << p.key();
    ++compared;
  }
  EXPECT_GT(compared, 10u);
  // The optimizer starts afresh: no momentum buffers.
  EXPECT_TRUE(second.optimizer().state().empty());

  // Without load_from the seed-99 weights differ.
  Json plain = tiny_config(data());
  plain.find("randomness")->set("seed", Json(99));
  core::Runner third(plain, options("c"));
  EXPECT_FALSE(torch::equal(third.model().named_parameters()["backbone.conv1.weight"],
                            saved.at("backbone.conv1.weight")));
}

// MMEngine: resume=True with load_from resumes from load_from (counters and optimizer too).
TEST_F(RunnerKeysTest, ResumeTrueResumesFromLoadFrom) {
  {
    core::Runner first(tiny_config(data()), options("a"));
    first.train();
  }
  const std::string ckpt = (root_.path() / "a" / "epoch_1.pth").string();
  Json cfg = tiny_config(data());
  cfg.set("load_from", ckpt);
  cfg.set("resume", Json(true));
  cfg.find("train_cfg")->set("max_epochs", Json(2));
  core::Runner resumed(cfg, options("b"));
  EXPECT_EQ(resumed.epoch(), 1);
  EXPECT_EQ(resumed.iter(), 2);
  EXPECT_FALSE(resumed.optimizer().state().empty());
  // resume=false with load_from: the weights only.
  cfg.set("resume", Json(false));
  core::Runner loaded(cfg, options("c"));
  EXPECT_EQ(loaded.epoch(), 0);
}
