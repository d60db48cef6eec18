// selfsup launch: torchrun's variables for each local rank, signals forwarded to the ranks,
// a failed rank stopping the others.
#include <gtest/gtest.h>

#include <fcntl.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <fstream>
#include <string>
#include <thread>
#include <vector>

#include "dist/dist_run.h"
#include "test_support.h"
#include "tiny_run.h"

namespace fs = std::filesystem;
using namespace selfsup::test;

namespace {

// A tiny SimCLR (ResNet-18 of width 4, batch 4 per rank) that runs for minutes unless stopped.
std::string long_config(const fs::path& data) {
  return R"({
  "model": {"type": "SimCLR",
    "data_preprocessor": {"type": "SelfSupDataPreprocessor", "mean": [72.94], "std": [90.0],
                          "bgr_to_rgb": false},
    "backbone": {"type": "ResNet", "depth": 18, "in_channels": 1, "stem": "cifar",
                 "stem_channels": 4, "base_channels": 4, "out_indices": [4]},
    "neck": {"type": "LinearNeck", "in_channels": 32, "out_channels": 16},
    "head": {"type": "ContrastiveHead", "loss": {"type": "mmcls.CrossEntropyLoss"},
             "temperature": 0.1}},
  "train_dataloader": {"batch_size": 4, "num_workers": 0, "drop_last": true,
    "dataset": {"type": "FashionMNIST", "data_root": ")" +
         data.string() + R"(", "split": "train",
      "pipeline": [{"type": "MultiView", "num_views": [2], "transforms": [[
          {"type": "RandomFlip", "prob": 0.5}]]},
        {"type": "PackSelfSupInputs", "meta_keys": []}]}},
  "optim_wrapper": {"type": "OptimWrapper", "optimizer": {"type": "SGD", "lr": 0.01}},
  "train_cfg": {"type": "EpochBasedTrainLoop", "max_epochs": 100000},
  "env_cfg": {"dist_cfg": {"timeout": 30}}
})";
}

struct Launched {
  pid_t pid = -1;
  fs::path log;
};

// Starts `selfsup launch ARGS...` with its output in `log`.
Launched start_launch(const std::vector<std::string>& args, const fs::path& log) {
  Launched l;
  l.log = log;
  std::vector<std::string> argv{std::string(SELFSUP_TEST_BIN_DIR) + "/selfsup", "launch"};
  argv.insert(argv.end(), args.begin(), args.end());
  l.pid = fork();
  if (l.pid == 0) {
    const int fd = open(log.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
    dup2(fd, 1);
    dup2(fd, 2);
    std::vector<char*> cargv;
    for (auto& a : argv) cargv.push_back(a.data());
    cargv.push_back(nullptr);
    execv(cargv[0], cargv.data());
    _exit(127);
  }
  return l;
}

// The exit code (128 + signal when killed), or -1 if it did not end within `seconds`.
int wait_for(pid_t pid, double seconds) {
  const auto end = std::chrono::steady_clock::now() + std::chrono::duration<double>(seconds);
  while (std::chrono::steady_clock::now() < end) {
    int status = 0;
    if (waitpid(pid, &status, WNOHANG) == pid)
      return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
  kill(pid, SIGKILL);
  waitpid(pid, nullptr, 0);
  return -1;
}

bool wait_until(const std::function<bool()>& ready, double seconds) {
  const auto end = std::chrono::steady_clock::now() + std::chrono::duration<double>(seconds);
  while (std::chrono::steady_clock::now() < end) {
    if (ready()) return true;
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
  }
  return false;
}

std::vector<pid_t> children_of(pid_t pid) {
  std::ifstream in("/proc/" + std::to_string(pid) + "/task/" + std::to_string(pid) + "/children");
  std::vector<pid_t> out;
  pid_t c;
  while (in >> c) out.push_back(c);
  return out;
}

bool alive(pid_t pid) {
  return kill(pid, 0) == 0;
}

} // namespace

// SIGTERM to the launcher reaches both ranks (in their own process group, so only through
// the launcher): they stop after the same iteration, rank 0 saves a checkpoint, and launch
// exits with the ranks' code 1.
TEST(Launch, ForwardsSigtermToItsRanks) {
  TempDir dir;
  make_fake_fmnist(dir.path() / "data", 16, 4);
  write_file(dir.path() / "long.json", long_config(dir.path() / "data"));
  const fs::path work = dir.path() / "work";
  Launched l =
      start_launch({"--nproc-per-node", "2", "--master-port", std::to_string(free_port()), "--",
                    "train", (dir.path() / "long.json").string(), "--work-dir", work.string()},
                   dir.path() / "launch.log");
  ASSERT_GT(l.pid, 0);
  const bool training = wait_until(
      [&] { return read_text(work / "scalars.jsonl").find("\"iter\":3") != std::string::npos; },
      60);
  const std::vector<pid_t> ranks = children_of(l.pid);
  ASSERT_TRUE(training) << read_text(l.log);
  ASSERT_EQ(ranks.size(), 2u);
  ASSERT_EQ(kill(l.pid, SIGTERM), 0);
  const int code = wait_for(l.pid, 60);
  const std::string out = read_text(l.log);
  EXPECT_EQ(code, 1) << out;
  EXPECT_TRUE(has_substr(out, "stopped by a signal at iteration"));
  EXPECT_TRUE(has_substr(out, "rank 0 saves the checkpoint")); // rank 1's message
  EXPECT_TRUE(has_substr(out, "(continue with --resume auto)"));
  bool saved = false;
  for (const auto& e : fs::directory_iterator(work))
    saved = saved || e.path().filename().string().rfind("iter_", 0) == 0;
  EXPECT_TRUE(saved) << out;
  for (pid_t r : ranks) EXPECT_FALSE(alive(r)) << "rank pid " << r << " outlived the launcher";
}

// A rank killed from outside: the launcher names it, terminates the other rank and exits
// with 128 + 9.
TEST(Launch, AFailedRankStopsTheOthers) {
  TempDir dir;
  make_fake_fmnist(dir.path() / "data", 16, 4);
  write_file(dir.path() / "long.json", long_config(dir.path() / "data"));
  const fs::path work = dir.path() / "work";
  Launched l =
      start_launch({"--nproc-per-node=2", "--master-port=" + std::to_string(free_port()), "--",
                    "train", (dir.path() / "long.json").string(), "--work-dir", work.string()},
                   dir.path() / "launch.log");
  ASSERT_GT(l.pid, 0);
  const bool training = wait_until(
      [&] { return read_text(work / "scalars.jsonl").find("\"iter\":2") != std::string::npos; },
      60);
  const std::vector<pid_t> ranks = children_of(l.pid);
  ASSERT_TRUE(training) << read_text(l.log);
  ASSERT_EQ(ranks.size(), 2u);
  kill(ranks[1], SIGKILL);
  const int code = wait_for(l.pid, 60);
  const std::string out = read_text(l.log);
  EXPECT_EQ(code, 128 + 9) << out;
  EXPECT_TRUE(has_substr(out, "selfsup launch: rank 1 (pid " + std::to_string(ranks[1]) +
                                  ") was killed by signal 9; stopping the other ranks"));
  EXPECT_FALSE(alive(ranks[0]));
}

TEST(Launch, UsageErrors) {
  EXPECT_EQ(run_selfsup("launch -- train x.json").code, 2);
  EXPECT_TRUE(
      has_substr(run_selfsup("launch -- train x.json").output, "--nproc-per-node is required"));
  EXPECT_TRUE(has_substr(run_selfsup("launch --nproc-per-node 2 -- eval x").output,
                         "expected '-- train CONFIG ...'"));
  const CliResult bad = run_selfsup("launch --nproc-per-node 0 -- train x.json");
  EXPECT_EQ(bad.code, 2);
  EXPECT_TRUE(has_substr(bad.output, "--nproc-per-node: expected an integer in [1, 256]"));
  EXPECT_TRUE(has_substr(run_selfsup("launch --nproc-per-node 1 --nnodes 2 --node-rank 2 -- "
                                     "train x.json")
                             .output,
                         "--node-rank: 2 is not below --nnodes 2"));
}
