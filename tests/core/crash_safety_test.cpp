// Crash-safe training and numerical faults (issue 7, points 6, 7 and 9): checksummed
// checkpoints, resume=auto falling back past a corrupt one, a full disk, symbolic links in
// the work dir, NaN losses and diverged weights, and what a fresh or resumed run does with a
// used work dir.
#include <gtest/gtest.h>

#include <sys/wait.h>
#include <unistd.h>

#include <array>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <limits>

#include <torch/torch.h>

#include <selfsup/core/checkpoint.h>
#include <selfsup/core/runner.h>
#include <selfsup/sdk.h>

#include "local_registry.h"
#include "test_support.h"

using namespace selfsup;
namespace fs = std::filesystem;

namespace {

std::vector<int64_t> one_to(int64_t n) {
  std::vector<int64_t> v;
  for (int64_t i = 1; i <= n; ++i) v.push_back(i);
  return v;
}

// A test algorithm: the mean of the backbone's last stage as "loss" and a second term
// "loss_aux"; at 0-based iteration g_nan_at the first term is NaN, at g_diverge_at the
// gradients are huge (1e37 per weight) while the loss stays finite.
int64_t g_nan_at = -1;
int64_t g_diverge_at = -1;
class FaultyAlgorithm final : public BaseModel {
public:
  explicit FaultyAlgorithm(const Config& cfg) : BaseModel(cfg) {}
  LossMap loss(const std::vector<torch::Tensor>& inputs, const DataSamples&) override {
    const int64_t it = context() ? context()->iter() : -1;
    torch::Tensor out = backbone_->forward(inputs[0]).back().mean();
    if (it == g_nan_at) out = out * std::numeric_limits<float>::quiet_NaN();
    if (it == g_diverge_at)
      for (const auto& p : parameters()) out = out + ((p - p.detach()) * 1e37f).sum();
    return {{"loss", out}, {"loss_aux", torch::full({}, 0.5)}};
  }
};

const test::LocalRegistry& faulty_registry() {
  static const test::LocalRegistry registry("crash_safety_test", [](Registrar& r) {
    r.add<Algorithm>(
        "TestFaulty", [](const Config& c) { return std::make_shared<FaultyAlgorithm>(c); },
        BaseModel::base_schema("test"));
  });
  return registry;
}

// `images` / 16 iterations per epoch of TestFaulty, plain SGD, a checkpoint every epoch.
Json faulty_config(const fs::path& data, int epochs, double lr = 0.01) {
  Json cfg = Json::parse(R"({
    "model": {"type": "TestFaulty",
      "backbone": {"type": "ResNet", "depth": 18, "in_channels": 1, "stem_channels": 4, "base_channels": 4,
                   "stem": "cifar"}},
    "train_dataloader": {"batch_size": 16, "num_workers": 1, "drop_last": true,
      "dataset": {"type": "FashionMNIST", "split": "train",
                  "pipeline": [{"type": "PackSelfSupInputs"}]}},
    "optim_wrapper": {"type": "OptimWrapper", "optimizer": {"type": "SGD", "lr": 0.01}},
    "default_hooks": {"checkpoint": {"type": "CheckpointHook", "interval": 1}},
    "randomness": {"seed": 3}
  })",
                         "t");
  cfg.find("train_dataloader")->find("dataset")->set("data_root", data.string());
  cfg.find("optim_wrapper")->find("optimizer")->set("lr", lr);
  cfg.set("train_cfg",
          Json::object({{"type", "EpochBasedTrainLoop"}, {"max_epochs", Json(epochs)}}));
  return cfg;
}

class CrashSafetyTest : public ::testing::Test {
protected:
  void SetUp() override {
    test::load_plugins();
    test::make_fake_fmnist(data(), 64, 8); // 4 iterations per epoch at batch 16
    g_nan_at = g_diverge_at = -1;
  }
  void TearDown() override { g_nan_at = g_diverge_at = -1; }
  [[nodiscard]] fs::path data() const { return root_.path() / "data"; }
  [[nodiscard]] fs::path dir(const std::string& sub) const { return root_.path() / sub; }
  [[nodiscard]] core::TrainOptions options(const std::string& sub) const {
    core::TrainOptions o;
    o.work_dir = dir(sub).string();
    o.threads = 1;
    o.registry = &faulty_registry().registry();
    return o;
  }
  /// Trains and returns what the run printed.
  std::string train(const Json& cfg, const core::TrainOptions& o) {
    ::testing::internal::CaptureStdout();
    try {
      core::Runner(cfg, o).train();
    } catch (...) {
      ::testing::internal::GetCapturedStdout();
      throw;
    }
    return ::testing::internal::GetCapturedStdout();
  }
  test::TempDir root_;
};

core::Checkpoint small_checkpoint() {
  core::Checkpoint c;
  c.meta.set("iter", Json(int64_t(3)));
  c.state_dict["w"] = torch::arange(1000, torch::kFloat32);
  c.optimizer = c10::IValue();
  return c;
}

} // namespace

// ---- Point 6: the checkpoint file ------------------------------------------------------

TEST(CheckpointFileTest, ChecksumCatchesAFlippedByteAndTruncation) {
  test::TempDir dir;
  const std::string path = (dir.path() / "c.pth").string();
  core::save_checkpoint(path, small_checkpoint());
  EXPECT_EQ(core::load_checkpoint(path).meta.find("iter")->as_int(), 3);
  std::string bytes = test::read_text(path);
  EXPECT_NE(bytes.find(std::string("selfsup-crc32:")), std::string::npos);

  // One byte of a weight changed: the zip and the pickle still read, the checksum does not.
  std::string flipped = bytes;
  const size_t at = flipped.find(std::string("data/0")) + 200;
  flipped[at] = char(flipped[at] ^ 0x10);
  test::write_file(dir.path() / "flipped.pth", flipped);
  EXPECT_TRUE(test::has_substr(test::message_of<ValueError>([&] {
                                 (void)core::load_checkpoint((dir.path() / "flipped.pth").string());
                               }),
                               (dir.path() / "flipped.pth").string() +
                                   ": corrupt checkpoint: the checksum does not match"));
  test::write_file(dir.path() / "cut.pth", bytes.substr(0, bytes.size() / 2));
  EXPECT_TRUE(test::has_substr(test::message_of<ValueError>([&] {
                                 (void)core::load_checkpoint((dir.path() / "cut.pth").string());
                               }),
                               (dir.path() / "cut.pth").string() + ": "));
  // The comment alone cut away: a selfsup-checkpoint-3 without its checksum is refused.
  const size_t tag = bytes.rfind("selfsup-crc32:");
  std::string unsigned_bytes = bytes.substr(0, tag);
  unsigned_bytes[tag - 2] = unsigned_bytes[tag - 1] = 0;
  test::write_file(dir.path() / "unsigned.pth", unsigned_bytes);
  EXPECT_TRUE(test::has_substr(test::message_of<ValueError>([&] {
                                 (void)core::load_checkpoint(
                                     (dir.path() / "unsigned.pth").string());
                               }),
                               "without its checksum"));
}

TEST(CheckpointFileTest, NonFiniteWeightsAreNeverWritten) {
  test::TempDir dir;
  const std::string path = (dir.path() / "c.pth").string();
  core::save_checkpoint(path, small_checkpoint());
  core::Checkpoint bad = small_checkpoint();
  bad.state_dict["w"][5] = std::numeric_limits<float>::infinity();
  bad.meta.set("iter", Json(int64_t(4)));
  EXPECT_TRUE(test::has_substr(
      test::message_of<ValueError>([&] { core::save_checkpoint(path, bad); }),
      path + ": refusing to write a checkpoint whose weights are not finite (w holds NaN"));
  EXPECT_EQ(core::load_checkpoint(path).meta.find("iter")->as_int(), 3); // the old one
}

TEST(CheckpointFileTest, WritesNeverGoThroughSymbolicLinks) {
  test::TempDir dir;
  const fs::path target = dir.path() / "precious.txt";
  test::write_file(target, "keep me");
  // A link planted at the temp name is removed, not followed.
  fs::create_symlink(target, dir.path() / "out.json.tmp");
  core::write_file_atomic((dir.path() / "out.json").string(), "{}\n");
  EXPECT_EQ(test::read_text(target), "keep me");
  EXPECT_EQ(test::read_text(dir.path() / "out.json"), "{}\n");
  EXPECT_FALSE(fs::exists(fs::symlink_status(dir.path() / "out.json.tmp")));
  // A link in place of the output is refused, naming it.
  fs::create_symlink(target, dir.path() / "link.pth");
  EXPECT_TRUE(test::has_substr(test::message_of<ValueError>([&] {
                                 core::save_checkpoint((dir.path() / "link.pth").string(),
                                                       small_checkpoint());
                               }),
                               "link.pth: is a symbolic link; refusing to write through it"));
  EXPECT_EQ(test::read_text(target), "keep me");
}

TEST(CheckpointFileTest, AFullDiskKeepsThePreviousFile) {
  test::TempDir dir;
  const std::string path = (dir.path() / "c.pth").string();
  core::save_checkpoint(path, small_checkpoint());
  const std::string before = test::read_text(path);
  core::Checkpoint next = small_checkpoint();
  next.meta.set("iter", Json(int64_t(9)));
  ::setenv("SELFSUP_TEST_FAIL_WRITE_AFTER", "1500", 1);
  const std::string msg = test::message_of<ValueError>([&] { core::save_checkpoint(path, next); });
  ::unsetenv("SELFSUP_TEST_FAIL_WRITE_AFTER");
  EXPECT_TRUE(test::has_substr(msg, path + ": cannot write: No space left on device"));
  EXPECT_TRUE(test::has_substr(msg, "the previous c.pth, if any, is kept"));
  EXPECT_EQ(test::read_text(path), before);
  EXPECT_FALSE(fs::exists(path + ".tmp"));
}

// ---- Point 6 and 9: resuming ----------------------------------------------------------

TEST_F(CrashSafetyTest, ResumeAutoFallsBackPastACorruptCheckpointAndSaysSo) {
  core::TrainOptions o = options("w");
  train(faulty_config(data(), 2), o);
  ASSERT_TRUE(fs::exists(dir("w") / "epoch_2.pth"));
  EXPECT_EQ(test::read_text(dir("w") / "last_checkpoint"), "epoch_2.pth\n"); // relative
  // The newest checkpoint damaged after it was written.
  std::string bytes = test::read_text(dir("w") / "epoch_2.pth");
  bytes[bytes.size() / 2] = char(bytes[bytes.size() / 2] ^ 1);
  test::write_file(dir("w") / "epoch_2.pth", bytes);
  o.resume = "auto";
  const std::string out = train(faulty_config(data(), 3), o);
  EXPECT_TRUE(test::has_substr(
      out, "resume=auto: cannot resume from " + (dir("w") / "epoch_2.pth").string() + ": " +
               (dir("w") / "epoch_2.pth").string() + ": corrupt checkpoint"));
  EXPECT_TRUE(
      test::has_substr(out, "resume=auto: falling back to " + (dir("w") / "epoch_1.pth").string()));
  EXPECT_TRUE(test::has_substr(out, "Resumed from " + (dir("w") / "epoch_1.pth").string() +
                                        " at epoch 1, iter 4"));
  EXPECT_EQ(core::load_checkpoint((dir("w") / "epoch_3.pth").string()).meta.find("iter")->as_int(),
            12);
  // The scalar log holds each iteration once: those after the checkpoint were cut back.
  EXPECT_EQ(test::logged_iters(dir("w") / "scalars.jsonl"), one_to(12));
}

TEST_F(CrashSafetyTest, AMovedWorkDirResumesFromItself) {
  core::TrainOptions o = options("before");
  train(faulty_config(data(), 1), o);
  // An older run's absolute path in last_checkpoint is read by its file name too.
  test::write_file(dir("before") / "last_checkpoint",
                   (dir("before") / "epoch_1.pth").string() + "\n");
  fs::rename(dir("before"), dir("after"));
  o = options("after");
  o.resume = "auto";
  const std::string out = train(faulty_config(data(), 2), o);
  EXPECT_TRUE(test::has_substr(out, "Resumed from " + (dir("after") / "epoch_1.pth").string()));
  EXPECT_FALSE(fs::exists(dir("before")));
  EXPECT_TRUE(fs::exists(dir("after") / "epoch_2.pth"));
  // With last_checkpoint gone, the newest epoch_*.pth beside it is found.
  fs::remove(dir("after") / "last_checkpoint");
  const std::string again = train(faulty_config(data(), 3), o);
  EXPECT_TRUE(test::has_substr(again, "Resumed from " + (dir("after") / "epoch_2.pth").string()));
}

TEST_F(CrashSafetyTest, ResumingWithAnotherBatchSizeIsRefused) {
  core::TrainOptions o = options("w");
  train(faulty_config(data(), 1), o);
  Json cfg = faulty_config(data(), 2);
  cfg.find("train_dataloader")->set("batch_size", 32); // 2 iterations per epoch, not 4
  o.resume = "auto";
  EXPECT_TRUE(test::has_substr(
      test::message_of<ConfigError>([&] { train(cfg, o); }),
      "was written with 4 iterations per epoch (train_dataloader.batch_size 16); this config "
      "gives 2 (train_dataloader.batch_size 32)"));
  EXPECT_FALSE(fs::exists(dir("w") / "epoch_2.pth")); // never an epoch without training
}

TEST_F(CrashSafetyTest, AFreshRunMovesAPreviousRunAside) {
  core::TrainOptions o = options("w");
  train(faulty_config(data(), 2), o);
  test::write_file(dir("w") / "epoch_1.pth.tmp", "left by a kill");
  test::write_file(dir("w") / "notes.txt", "the user's");
  const std::string out = train(faulty_config(data(), 1), o);
  EXPECT_TRUE(test::has_substr(out, "Removed 1 temp file(s)"));
  EXPECT_TRUE(test::has_substr(out, "the previous run's"));
  EXPECT_FALSE(fs::exists(dir("w") / "epoch_1.pth.tmp"));
  EXPECT_FALSE(fs::exists(dir("w") / "epoch_2.pth")); // no stale checkpoint mixed in
  EXPECT_EQ(test::logged_iters(dir("w") / "scalars.jsonl"), one_to(4));
  EXPECT_EQ(test::read_text(dir("w") / "notes.txt"), "the user's");
  fs::path aside;
  for (const auto& e : fs::directory_iterator(dir("w")))
    if (e.path().filename().string().rfind("previous_run_", 0) == 0) aside = e.path();
  ASSERT_FALSE(aside.empty());
  EXPECT_TRUE(fs::exists(aside / "epoch_2.pth"));
  EXPECT_EQ(test::logged_iters(aside / "scalars.jsonl"), one_to(8));
}

TEST_F(CrashSafetyTest, SymbolicLinksInTheWorkDirAreNotWrittenThrough) {
  const fs::path target = root_.path() / "precious.txt";
  test::write_file(target, "keep me");
  fs::create_directories(dir("w"));
  fs::create_symlink(target, dir("w") / "scalars.jsonl");
  core::TrainOptions o = options("w");
  EXPECT_TRUE(
      test::has_substr(test::message_of<ValueError>([&] { train(faulty_config(data(), 1), o); }),
                       (dir("w") / "scalars.jsonl").string() +
                           ": is a symbolic link; refusing to write through it"));
  fs::remove(dir("w") / "scalars.jsonl");
  train(faulty_config(data(), 1), o);
  // In a resumed run: links at the merged config and at last_checkpoint.
  fs::remove(dir("w") / "config.json");
  fs::create_symlink(target, dir("w") / "config.json");
  o.resume = "auto";
  EXPECT_TRUE(
      test::has_substr(test::message_of<ValueError>([&] { train(faulty_config(data(), 2), o); }),
                       "config.json: is a symbolic link"));
  fs::remove(dir("w") / "config.json");
  fs::remove(dir("w") / "last_checkpoint");
  fs::create_symlink(target, dir("w") / "last_checkpoint");
  EXPECT_TRUE(
      test::has_substr(test::message_of<ValueError>([&] { train(faulty_config(data(), 2), o); }),
                       "last_checkpoint: is a symbolic link"));
  EXPECT_EQ(test::read_text(target), "keep me");
}

// ---- Point 7: numerical faults --------------------------------------------------------

TEST_F(CrashSafetyTest, ANaNLossStopsNamingIterationTermsAndLr) {
  core::TrainOptions o = options("w");
  g_nan_at = 5; // the 6th iteration, in epoch 2
  const std::string msg = test::message_of<ValueError>([&] { train(faulty_config(data(), 3), o); });
  EXPECT_TRUE(test::has_substr(msg, "iteration 6: the loss is not finite (loss nan, "
                                    "loss_aux 0.5; total nan; lr 0.01); stopping"));
  EXPECT_TRUE(test::has_substr(msg, "optim_wrapper.skip_nonfinite"));
  EXPECT_TRUE(
      test::has_substr(msg, "The last good checkpoint is " + (dir("w") / "epoch_1.pth").string()));
  EXPECT_EQ(test::read_text(dir("w") / "last_checkpoint"), "epoch_1.pth\n");
  EXPECT_FALSE(fs::exists(dir("w") / "epoch_2.pth"));
}

TEST_F(CrashSafetyTest, SkipNonfiniteSkipsAndCountsTheStep) {
  core::TrainOptions o = options("w");
  Json cfg = faulty_config(data(), 2);
  cfg.find("optim_wrapper")->set("skip_nonfinite", true);
  g_nan_at = 2;
  const std::string out = train(cfg, o);
  EXPECT_TRUE(test::has_substr(out, "iteration 3: the loss is not finite"));
  EXPECT_TRUE(test::has_substr(out, "step skipped (optim_wrapper.skip_nonfinite; 1 so far)"));
  std::ifstream in(dir("w") / "scalars.jsonl");
  std::vector<std::string> lines;
  for (std::string line; std::getline(in, line);) lines.push_back(line);
  ASSERT_EQ(lines.size(), 8u);
  EXPECT_EQ(Json::parse(lines[1], "s").find("nonfinite_skipped"), nullptr);
  EXPECT_EQ(Json::parse(lines[2], "s").find("nonfinite_skipped")->as_number(), 1.0);
  EXPECT_TRUE(Json::parse(lines[2], "s").find("loss")->is_null()); // NaN, as valid JSON
  EXPECT_EQ(Json::parse(lines[7], "s").find("nonfinite_skipped")->as_number(), 1.0);
  const core::Checkpoint last = core::load_checkpoint((dir("w") / "epoch_2.pth").string());
  EXPECT_EQ(last.meta.find("nonfinite_skipped")->as_number(), 1.0);
  EXPECT_TRUE(core::first_nonfinite(last.state_dict).empty());
}

TEST_F(CrashSafetyTest, ADivergedStepIsNeverCheckpointedWithOneIterationPerEpoch) {
  test::make_fake_fmnist(data(), 16, 8); // one iteration per epoch
  core::TrainOptions o = options("w");
  g_diverge_at = 1; // finite loss, weights Inf after the step of epoch 2
  const std::string msg =
      test::message_of<ValueError>([&] { train(faulty_config(data(), 3, 100.0), o); });
  EXPECT_TRUE(
      test::has_substr(msg, (dir("w") / "epoch_2.pth").string() + ": not written: weight "));
  EXPECT_TRUE(test::has_substr(msg, "is NaN or Inf after iteration 2 (lr 100;"));
  EXPECT_TRUE(
      test::has_substr(msg, "The last good checkpoint is " + (dir("w") / "epoch_1.pth").string()));
  EXPECT_FALSE(fs::exists(dir("w") / "epoch_2.pth"));
  EXPECT_EQ(test::read_text(dir("w") / "last_checkpoint"), "epoch_1.pth\n");
  // And resume=auto takes that last good one.
  o.resume = "auto";
  g_diverge_at = -1;
  const std::string out = train(faulty_config(data(), 3), o);
  EXPECT_TRUE(test::has_substr(out, "Resumed from " + (dir("w") / "epoch_1.pth").string()));
}
