// Crash-safe training end to end, with the selfsup executable (issue 7, points 6 and 9): a
// real training process SIGKILLed at random moments and during checkpoint writes, resumed
// each time with --resume auto, ends with the weights of an unbroken run; a full disk stops
// the run with a clear error and keeps the previous checkpoint; a work dir equal to the
// config's folder never overwrites the config.
#include <gtest/gtest.h>

#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <array>
#include <chrono>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <random>
#include <thread>

#include <torch/torch.h>

#include <selfsup/core/checkpoint.h>
#include <selfsup/json.h>

#include "test_support.h"

using namespace selfsup;
namespace fs = std::filesystem;

namespace {

// A tiny SimCLR run: 32 generated images, batch 16 (2 iterations per epoch), a checkpoint
// after every epoch, no kNN hook.
void write_config(const fs::path& path, const fs::path& data, int epochs) {
  test::write_file(path, R"({
    "model": {"type": "SimCLR",
      "data_preprocessor": {"mean": [128.0], "std": [64.0], "bgr_to_rgb": false},
      "backbone": {"type": "ResNet", "depth": 18, "in_channels": 1, "stem_channels": 4, "base_channels": 4,
                   "stem": "cifar", "zero_init_residual": true},
      "neck": {"type": "NonLinearNeck", "in_channels": 32, "hid_channels": 32, "out_channels": 16},
      "head": {"type": "ContrastiveHead", "loss": {"type": "CrossEntropyLoss"}, "temperature": 0.1}},
    "train_dataloader": {"batch_size": 16, "num_workers": 1, "drop_last": true,
      "dataset": {"type": "FashionMNIST", "split": "train", "data_root": ")" +
                             data.string() + R"(", "pipeline": [
        {"type": "MultiView", "num_views": [2], "transforms": [[
          {"type": "RandomResizedCrop", "size": 16, "scale": [0.2, 1.0]},
          {"type": "RandomFlip", "prob": 0.5}]]},
        {"type": "PackSelfSupInputs"}]}},
    "train_cfg": {"type": "EpochBasedTrainLoop", "max_epochs": )" +
                             std::to_string(epochs) + R"(},
    "optim_wrapper": {"type": "OptimWrapper",
      "optimizer": {"type": "LARS", "lr": 0.3, "momentum": 0.9, "weight_decay": 1e-6}},
    "default_hooks": {"logger": {"type": "LoggerHook", "interval": 1},
                      "checkpoint": {"type": "CheckpointHook", "interval": 1, "max_keep_ckpts": 3}},
    "randomness": {"seed": 5}
  })");
}

// Starts `selfsup <args>` with `env` ("NAME=value ..."), its output appended to `log`.
pid_t spawn(const std::string& args, const std::string& env, const fs::path& log) {
  const std::string cmd = "exec env " + env + " " + std::string(SELFSUP_TEST_BIN_DIR) +
                          "/selfsup " + args + " >> " + log.string() + " 2>&1";
  pid_t pid = fork();
  if (pid == 0) {
    execl("/bin/sh", "sh", "-c", cmd.c_str(), static_cast<char*>(nullptr));
    _exit(127);
  }
  return pid;
}

// Runs `selfsup <args>` to its end; the exit code (128 + signal when killed).
int run(const std::string& args, const std::string& env, const fs::path& log) {
  pid_t pid = spawn(args, env, log);
  int status = 0;
  waitpid(pid, &status, 0);
  return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
}

bool has_temp_file(const fs::path& dir) {
  std::error_code ec;
  for (const auto& e : fs::directory_iterator(dir, ec)) {
    const std::string name = e.path().filename().string();
    if (name.size() > 8 && name.compare(name.size() - 8, 8, ".pth.tmp") == 0) return true;
  }
  return false;
}

} // namespace

TEST(CrashKillTest, SigkilledRunsResumeToTheWeightsOfAnUnbrokenRun) {
  test::TempDir tmp;
  test::make_fake_fmnist(tmp.path() / "data", 32, 8);
  constexpr int kEpochs = 30;
  const fs::path cfg = tmp.path() / "tiny.json";
  write_config(cfg, tmp.path() / "data", kEpochs);
  const fs::path straight = tmp.path() / "straight", broken = tmp.path() / "broken";
  const fs::path log = tmp.path() / "out.log";
  const std::string args = "train " + cfg.string() + " --threads 1 --work-dir ";

  const auto start = std::chrono::steady_clock::now();
  ASSERT_EQ(run(args + straight.string(), "", log), 0) << test::read_text(log);
  const double unbroken_s =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();

  // The broken run writes its checkpoints slowly (16 KiB pieces, 2 ms apart), so that kills
  // land inside writes too. Odd kills wait for a temp file to appear, the others strike at a
  // random moment.
  std::mt19937 rng(20261128);
  std::uniform_int_distribution<int> delay_ms(100, 100 + int(250 * unbroken_s));
  const std::string env = "SELFSUP_TEST_SLOW_WRITE_US=2000";
  int kills = 0, during_write = 0;
  for (int round = 0; round < 10; ++round) {
    pid_t pid = spawn(args + broken.string() + " --resume auto", env, log);
    bool waited_for_write = round % 2 == 1, hit_write = false;
    const auto t0 = std::chrono::steady_clock::now();
    const int wait = delay_ms(rng);
    int status = 0;
    bool exited = false;
    for (;;) {
      if (waitpid(pid, &status, WNOHANG) == pid) {
        exited = true;
        break;
      }
      const double ms =
          std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count();
      if (waited_for_write ? (has_temp_file(broken) || ms > 20000) : ms >= wait) break;
      std::this_thread::sleep_for(std::chrono::microseconds(waited_for_write ? 200 : 2000));
    }
    if (exited) break; // the run finished before this kill
    kill(pid, SIGKILL);
    waitpid(pid, &status, 0);
    ++kills;
    hit_write = has_temp_file(broken);
    if (hit_write) ++during_write;
    // Whatever the moment, the latest checkpoint loads (its checksum included), and so does
    // every checkpoint under its final name.
    if (fs::exists(broken / "last_checkpoint")) {
      std::string name = test::read_text(broken / "last_checkpoint");
      name = name.substr(0, name.find('\n'));
      EXPECT_NO_THROW((void)core::load_checkpoint((broken / name).string()))
          << "after kill " << kills;
    }
    // A kill before the run made its work dir (start-up, pre-flight) leaves nothing to check.
    if (!fs::exists(broken)) continue;
    for (const auto& e : fs::directory_iterator(broken)) {
      if (e.path().extension() == ".pth") {
        EXPECT_NO_THROW((void)core::load_checkpoint(e.path().string())) << e.path();
      }
    }
  }
  ASSERT_EQ(run(args + broken.string() + " --resume auto", env, log), 0) << test::read_text(log);
  std::cout << "[ kill test ] unbroken run " << unbroken_s << " s; survived " << kills
            << " SIGKILLs (" << during_write
            << " during a checkpoint write); the resumed run ends with the unbroken run's "
               "weights\n";
  ::testing::Test::RecordProperty("kills", kills);
  ::testing::Test::RecordProperty("kills_during_write", during_write);
  EXPECT_GE(kills, 6);
  EXPECT_GE(during_write, 2);

  const std::string last = "epoch_" + std::to_string(kEpochs) + ".pth";
  const auto a = core::load_checkpoint((straight / last).string()).state_dict;
  const auto b = core::load_checkpoint((broken / last).string()).state_dict;
  ASSERT_EQ(a.size(), b.size());
  for (const auto& [name, t] : a) {
    ASSERT_TRUE(b.count(name)) << name;
    EXPECT_TRUE(torch::equal(t, b.at(name))) << name;
  }
  EXPECT_FALSE(has_temp_file(broken));
  // Each iteration logged once, whatever was run again.
  std::vector<int64_t> want;
  for (int64_t i = 1; i <= 2 * kEpochs; ++i) want.push_back(i);
  EXPECT_EQ(test::logged_iters(broken / "scalars.jsonl"), want);
}

TEST(CrashKillTest, AFullDiskStopsTheRunAndKeepsThePreviousCheckpoint) {
  test::TempDir tmp;
  test::make_fake_fmnist(tmp.path() / "data", 32, 8);
  const fs::path cfg = tmp.path() / "tiny.json", work = tmp.path() / "w";
  const fs::path log = tmp.path() / "out.log";
  write_config(cfg, tmp.path() / "data", 1);
  const std::string args = "train " + cfg.string() + " --threads 1 --work-dir " + work.string();
  ASSERT_EQ(run(args, "", log), 0) << test::read_text(log);
  write_config(cfg, tmp.path() / "data", 2);
  // The disk fills up 100 kB into the next checkpoint (the merged config is smaller).
  const int code = run(args + " --resume auto", "SELFSUP_TEST_FAIL_WRITE_AFTER=100000", log);
  const std::string out = test::read_text(log);
  EXPECT_EQ(code, 1) << out;
  EXPECT_TRUE(test::has_substr(out, (work / "epoch_2.pth").string() +
                                        ": cannot write: No space left on device; nothing was "
                                        "replaced (the previous epoch_2.pth, if any, is kept)"));
  EXPECT_FALSE(fs::exists(work / "epoch_2.pth"));
  EXPECT_FALSE(fs::exists(work / "epoch_2.pth.tmp"));
  EXPECT_EQ(test::read_text(work / "last_checkpoint"), "epoch_1.pth\n");
  EXPECT_EQ(core::load_checkpoint((work / "epoch_1.pth").string()).meta.find("iter")->as_int(), 2);
}

TEST(CrashKillTest, AWorkDirEqualToTheConfigFolderKeepsTheConfig) {
  test::TempDir tmp;
  test::make_fake_fmnist(tmp.path() / "data", 32, 8);
  const fs::path folder = tmp.path() / "configs", cfg = folder / "tiny.json";
  write_config(cfg, tmp.path() / "data", 1);
  const std::string before = test::read_text(cfg);
  const fs::path log = tmp.path() / "out.log";
  ASSERT_EQ(run("train " + cfg.string() + " --threads 1 --work-dir " + folder.string(), "", log), 0)
      << test::read_text(log);
  EXPECT_EQ(test::read_text(cfg), before);
  ASSERT_TRUE(fs::exists(folder / "tiny.merged.json"));
  EXPECT_EQ(Json::parse(test::read_text(folder / "tiny.merged.json"), "merged")
                .find("randomness")
                ->find("seed")
                ->as_int(),
            5);
  EXPECT_TRUE(fs::exists(folder / "epoch_1.pth"));
}

TEST(CrashKillTest, ResumingWithAnotherBatchSizeExitsTwo) {
  test::TempDir tmp;
  test::make_fake_fmnist(tmp.path() / "data", 32, 8);
  const fs::path cfg = tmp.path() / "tiny.json", work = tmp.path() / "w";
  const fs::path log = tmp.path() / "out.log";
  write_config(cfg, tmp.path() / "data", 1);
  const std::string args = "train " + cfg.string() + " --threads 1 --work-dir " + work.string();
  ASSERT_EQ(run(args, "", log), 0) << test::read_text(log);
  write_config(cfg, tmp.path() / "data", 2);
  const int code =
      run(args + " --resume auto --cfg-options train_dataloader.batch_size=32", "", log);
  const std::string out = test::read_text(log);
  EXPECT_EQ(code, 2) << out;
  EXPECT_TRUE(test::has_substr(out, "was written with 2 iterations per epoch "
                                    "(train_dataloader.batch_size 16); this config gives 1"));
  EXPECT_FALSE(fs::exists(work / "epoch_2.pth"));
}
