// Pre-flight (issue 7, point 3): the whole merged training config checked before anything is
// built, read or written; and the loader's own refusals (point 8): a batch size of 0, and a
// dataset that yields no batch.
#include <gtest/gtest.h>

#include <algorithm>
#include <chrono>
#include <filesystem>

#include <selfsup/core/config_file.h>
#include <selfsup/core/data.h>
#include <selfsup/core/preflight.h>
#include <selfsup/errors.h>

#include "local_registry.h"
#include "test_support.h"

using namespace selfsup;
namespace fs = std::filesystem;
using selfsup::test::has_substr;
using selfsup::test::message_of;

namespace {

const test::LocalRegistry& registry() {
  static const test::LocalRegistry registry;
  return registry;
}

core::TrainOptions options_with_registry() {
  core::TrainOptions o;
  o.registry = &registry().registry();
  return o;
}

std::string shipped(const std::string& name) {
  return std::string(SELFSUP_SOURCE_DIR) + "/configs/simclr/" + name;
}

std::string joined(const std::vector<std::string>& problems) {
  std::string out;
  for (const auto& p : problems) out += "\n  " + p;
  return out;
}

// The first problem that starts with `path`, or "".
std::string problem_at(const std::vector<std::string>& problems, const std::string& path) {
  for (const auto& p : problems)
    if (p.rfind(path + ": ", 0) == 0) return p;
  return "";
}

} // namespace

TEST(PreflightTest, ShippedConfigsPassQuickly) {
  for (const char* name : {"simclr_resnet18_fmnist.json", "simclr_resnet18_fmnist_demo.json"}) {
    const Json cfg = core::load_config_file(shipped(name));
    (void)core::preflight(cfg, options_with_registry()); // warm up
    const auto start = std::chrono::steady_clock::now();
    const auto problems = core::preflight(cfg, options_with_registry());
    const double s =
        std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    if (fs::is_directory("/usr/share/datasets/fashion-mnist")) {
      EXPECT_TRUE(problems.empty()) << name << joined(problems);
    }
    EXPECT_LT(s, 0.25) << name; // milliseconds in practice: no model, no data
  }
}

TEST(PreflightTest, ListsEveryMistakeWithItsPath) {
  test::TempDir tmp;
  Json cfg = core::load_config_file(shipped("simclr_resnet18_fmnist.json"));
  core::apply_overrides(cfg, {"model.backbone.type=ResNett", "model.neck.hid_channel=512",
                              "model.head.temperature=hot", "train_dataloader.batch_size=0",
                              "train_dataloader.dataset.data_root=" + (tmp.path() / "no").string(),
                              "train_cfg.max_epochs=null", "optim_wrapper.optimizer.type=LAR",
                              "param_scheduler.0.start_factor=2", "custom_hooks.0.k=0",
                              "load_from=" + (tmp.path() / "w.pth").string(),
                              "train_dataloader.dataset.pipeline.0.transforms.0.0.size=-1",
                              "default_hooks.checkpoint.typ=CheckpointHook"});
  const auto problems = core::preflight(cfg, options_with_registry());
  const std::pair<const char*, const char*> expected[] = {
      {"model.backbone.type", "unknown backbone type 'ResNett'; did you mean 'ResNet'?"},
      {"model.neck.hid_channel", "unknown key (accepted: in_channels, hid_channels,"},
      {"model.neck.hid_channel", "did you mean 'hid_channels'?"},
      {"model.head.temperature", "expected float, got \"hot\""},
      {"train_dataloader.batch_size", "expected int > 0, got 0"},
      {"train_dataloader.dataset.data_root", "expected an existing folder, got \""},
      {"train_cfg.max_epochs", "required key is missing"},
      {"optim_wrapper.optimizer.type", "unknown optimizer type 'LAR'; did you mean 'LARS'?"},
      {"param_scheduler[0].start_factor", "expected float in [0, 1], got 2"},
      {"custom_hooks[0].k", "expected int > 0, got 0"},
      {"load_from", "expected an existing file, got \""},
      {"train_dataloader.dataset.pipeline[0].transforms[0][0].size", "got -1"},
      {"default_hooks.checkpoint.typ", "unknown key"},
  };
  for (const auto& [path, what] : expected)
    EXPECT_TRUE(has_substr(problem_at(problems, path), what)) << path << joined(problems);
  EXPECT_EQ(problems.size(), std::size(expected) - 1) << joined(problems); // hid_channel twice

  // All of them in one ConfigError, each on its own line.
  const std::string msg = message_of<ConfigError>(
      [&] { core::check_before_training(cfg, options_with_registry(), "cfg.json"); });
  EXPECT_TRUE(has_substr(msg, "cfg.json: 12 problems (found before anything was built"));
  EXPECT_TRUE(has_substr(msg, "\n  model.backbone.type: unknown backbone type 'ResNett'"));
  EXPECT_TRUE(has_substr(msg, "\n  load_from: expected an existing file"));
}

TEST(PreflightTest, RulesAndMissingCheckpoints) {
  test::TempDir tmp;
  Json cfg = core::load_config_file(shipped("simclr_resnet18_fmnist_demo.json"));
  // A rule over several keys (MultiView: one num_views per pipeline), a resume checkpoint
  // that is not there, and --resume naming a missing file.
  core::apply_overrides(cfg, {"train_dataloader.dataset.pipeline.0.num_views=[2,2]",
                              "resume=" + (tmp.path() / "gone.pth").string()});
  core::TrainOptions o = options_with_registry();
  o.resume = (tmp.path() / "also_gone.pth").string();
  const auto problems = core::preflight(cfg, o);
  EXPECT_TRUE(has_substr(problem_at(problems, "train_dataloader.dataset.pipeline[0].num_views"),
                         "expected one count per pipeline of `transforms` (1)"))
      << joined(problems);
  EXPECT_TRUE(
      has_substr(problem_at(problems, "resume"), "expected an existing file or \"auto\", got \""))
      << joined(problems);
  EXPECT_TRUE(has_substr(problem_at(problems, "--resume"), "also_gone.pth")) << joined(problems);
  EXPECT_EQ(problems.size(), 3u) << joined(problems);
  // "auto" and an existing file pass.
  test::write_file(tmp.path() / "here.pth", "x");
  core::apply_overrides(cfg, {"train_dataloader.dataset.pipeline.0.num_views=[2]", "resume=auto"});
  o.resume = (tmp.path() / "here.pth").string();
  if (fs::is_directory("/usr/share/datasets/fashion-mnist")) {
    EXPECT_TRUE(core::preflight(cfg, o).empty()) << joined(core::preflight(cfg, o));
  }
}

TEST(PreflightTest, UnknownTypesNameTheNearestEverywhere) {
  Json cfg = core::load_config_file(shipped("simclr_resnet18_fmnist_demo.json"));
  core::apply_overrides(cfg, {"model.type=SimCRL", "train_cfg.type=EpochBasedTrainLop",
                              "train_dataloader.sampler.type=DefaultSampeler",
                              "train_dataloader.dataset.type=FashionMNST",
                              "train_dataloader.dataset.pipeline.1.type=PackSelfSupInput",
                              "param_scheduler.1.type=CosineAnnealingLR_",
                              "custom_hooks.0.type=KNNEvalHok"});
  const auto problems = core::preflight(cfg, options_with_registry());
  for (const auto& [path, near] : std::vector<std::pair<std::string, std::string>>{
           {"model.type", "SimCLR"},
           {"train_cfg.type", "EpochBasedTrainLoop"},
           {"train_dataloader.sampler.type", "DefaultSampler"},
           {"train_dataloader.dataset.type", "FashionMNIST"},
           {"train_dataloader.dataset.pipeline[1].type", "PackSelfSupInputs"},
           {"param_scheduler[1].type", "CosineAnnealingLR"},
           {"custom_hooks[0].type", "KNNEvalHook"}})
    EXPECT_TRUE(has_substr(problem_at(problems, path), "did you mean '" + near + "'?"))
        << path << joined(problems);
  EXPECT_EQ(problems.size(), 7u) << joined(problems);
}

// ---- point 8: the loader's refusals ------------------------------------------------------

namespace {

Config loader_cfg(const fs::path& root, const std::string& extra) {
  return registry().config(
      Json::parse(R"({"num_workers": 0, "dataset": {"type": "FashionMNIST", "data_root": ")" +
                      root.string() + R"(", "pipeline": [{"type": "PackSelfSupInputs"}]}, )" +
                      extra + "}",
                  "t"),
      "train_dataloader");
}

} // namespace

TEST(LoaderRefusalTest, BatchSizeZeroNamesTheKey) {
  test::TempDir tmp;
  test::make_fake_fmnist(tmp.path(), 10, 4);
  EXPECT_EQ(message_of<ConfigError>([&] {
              (void)core::DataLoader::from_config(loader_cfg(tmp.path(), R"("batch_size": 0)"), 0);
            }),
            "train_dataloader.batch_size: expected int > 0, got 0");
}

TEST(LoaderRefusalTest, ADatasetSmallerThanABatchWithDropLastSaysWhy) {
  test::TempDir tmp;
  test::make_fake_fmnist(tmp.path(), 10, 4);
  const std::string msg = message_of<ConfigError>([&] {
    (void)core::DataLoader::from_config(
        loader_cfg(tmp.path(), R"("batch_size": 16, "drop_last": true)"), 0);
  });
  EXPECT_TRUE(has_substr(msg, "train_dataloader: no batch in an epoch: the dataset has 10 "
                              "samples, fewer than batch_size 16, and drop_last is true"));
  // Without drop_last the one short batch is kept; with enough samples drop_last is fine.
  EXPECT_EQ(core::DataLoader::from_config(loader_cfg(tmp.path(), R"("batch_size": 16)"), 0)
                ->num_batches(),
            1);
  EXPECT_EQ(core::DataLoader::from_config(
                loader_cfg(tmp.path(), R"("batch_size": 5, "drop_last": true)"), 0)
                ->num_batches(),
            2);
  // Sharded: this process's share is named.
  const std::string shard = message_of<ConfigError>([&] {
    (void)core::DataLoader::from_config(
        loader_cfg(tmp.path(), R"("batch_size": 6, "drop_last": true)"), 0, 1, 2);
  });
  EXPECT_TRUE(has_substr(shard, "the dataset has 10 samples (5 for this process, rank 1 of 2), "
                                "fewer than batch_size 6"));
  // No sample at all (`indices: 0`).
  const std::string empty = message_of<ConfigError>([&] {
    (void)core::DataLoader::from_config(
        registry().config(
            Json::parse(R"({"batch_size": 2, "dataset": {"type": "FashionMNIST", "indices": 0,
                            "data_root": ")" +
                            tmp.str() + R"("}})",
                        "t"),
            "train_dataloader"),
        0);
  });
  EXPECT_TRUE(has_substr(empty, "train_dataloader: no batch in an epoch: the dataset has 0 "
                                "samples; give the dataset samples"));
}
