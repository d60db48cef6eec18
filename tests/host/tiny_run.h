#pragma once
// What the tests of `selfsup eval`, `extract` and `report` share: running the executable, and
// one tiny SimCLR run of the shipped Fashion-MNIST config on generated data (a 4-channel
// ResNet-18, 64 training and 30 test images, 2 epochs).
#include <sys/wait.h>

#include <array>
#include <cstdio>
#include <filesystem>
#include <string>

#include "test_support.h"

namespace selfsup::test {

struct CliResult {
  int code = -1;
  std::string output; // stdout and stderr
};

/// Runs the build tree's selfsup with `args` (a shell command line); `env` is prepended
/// ("NAME=value ").
inline CliResult run_selfsup(const std::string& args, const std::string& env = "") {
  const std::string cmd = env + std::string(SELFSUP_TEST_BIN_DIR) + "/selfsup " + args + " 2>&1";
  CliResult r;
  FILE* p = popen(cmd.c_str(), "r");
  if (!p) return r;
  std::array<char, 4096> buf;
  size_t n;
  while ((n = fread(buf.data(), 1, buf.size(), p)) > 0) r.output.append(buf.data(), n);
  const int status = pclose(p);
  r.code = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
  return r;
}

/// The --cfg-options of the tiny run, its data under `data`.
inline std::string tiny_run_overrides(const std::filesystem::path& data) {
  const std::string root = data.string();
  return " --cfg-options train_dataloader.dataset.data_root=" + root +
         " custom_hooks.0.bank_dataloader.dataset.data_root=" + root +
         " custom_hooks.0.query_dataloader.dataset.data_root=" + root +
         " train_dataloader.batch_size=16 train_cfg.max_epochs=2"
         " model.backbone.stem_channels=4 model.backbone.base_channels=4"
         " model.neck.in_channels=32 model.neck.hid_channels=32"
         " param_scheduler.0.end=1 param_scheduler.1.begin=1 param_scheduler.1.end=2"
         " param_scheduler.1.T_max=1 custom_hooks.0.k=5 default_hooks.checkpoint.interval=1";
}

/// Trains the tiny run into `dir`/work (data in `dir`/data); its merged config is
/// `dir`/work/simclr_resnet18_fmnist.json, its last checkpoint epoch_2.pth.
inline CliResult train_tiny_run(const std::filesystem::path& dir) {
  make_fake_fmnist(dir / "data", 64, 30);
  const std::string cfg =
      std::string(SELFSUP_SOURCE_DIR) + "/configs/simclr/simclr_resnet18_fmnist.json";
  return run_selfsup("train " + cfg + " --work-dir " + (dir / "work").string() + " --threads 2" +
                     tiny_run_overrides(dir / "data"));
}

} // namespace selfsup::test
