// Speed of selfsup beside MMSelfSup 1.0 measured on this 2-core machine, in one run:
// start-up, augmentation throughput, and SimCLR training steps (fp32, channels-last, bf16).
//
//   ./build/bin/selfsup_bench [--steps N]
#include <fcntl.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

#include <torch/torch.h>

#include <selfsup/core/builtins.h>
#include <selfsup/core/config_file.h>
#include <selfsup/core/data.h>
#include <selfsup/core/plugin_loader.h>
#include <selfsup/core/runner.h>

namespace fs = std::filesystem;
using namespace selfsup;

namespace {

double now() {
  return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch()).count();
}

// Median wall time of `selfsup list` (process start, LibTorch, every plugin loaded).
double startup_seconds(const fs::path& exe) {
  std::vector<double> t;
  for (int i = 0; i < 5; ++i) {
    std::fflush(stdout); // else each child flushes the parent's buffered lines again
    double s = now();
    pid_t pid = fork();
    if (pid == 0) {
      freopen("/dev/null", "w", stdout);
      execl(exe.c_str(), exe.c_str(), "list", static_cast<char*>(nullptr));
      _exit(127);
    }
    int status = 0;
    waitpid(pid, &status, 0);
    t.push_back(now() - s);
  }
  std::sort(t.begin(), t.end());
  return t[t.size() / 2];
}

// The SimCLR view pipeline of MMSelfSup's CIFAR/ImageNet recipe at 32x32 on a colour image:
// each sample gives two views.
Json simclr_pipeline(int size, bool colour) {
  std::string p = R"([)";
  if (colour) p += R"({"type": "ColorConvert", "channels": 3},)";
  p += R"({"type": "MultiView", "num_views": 2, "transforms": [[
      {"type": "RandomResizedCrop", "size": )" +
       std::to_string(size) + R"(, "scale": [0.08, 1.0]},
      {"type": "RandomFlip", "prob": 0.5},
      {"type": "RandomApply", "prob": 0.8, "transforms": [
        {"type": "ColorJitter", "brightness": 0.8, "contrast": 0.8, "saturation": 0.8, "hue": 0.2}]},
      {"type": "RandomGrayscale", "prob": 0.2, "keep_channels": true,
       "channel_weights": [0.114, 0.587, 0.2989]},
      {"type": "RandomGaussianBlur", "sigma_min": 0.1, "sigma_max": 2.0, "prob": 0.5}]]},
    {"type": "PackSelfSupInputs"}])";
  return Json::parse(p, "bench pipeline");
}

double augment_images_per_second() {
  core::Pipeline pipeline(Config(simclr_pipeline(32, false), "pipeline"));
  Image img(32, 32, 3);
  Rng fill(1);
  for (auto& v : img.data) v = uint8_t(fill.next());
  int n = 0;
  double start = now(), elapsed = 0;
  do {
    for (int i = 0; i < 200; ++i, ++n) {
      Sample s;
      s.img = img;
      Rng rng(core::sample_seed(0, 0, n));
      pipeline.apply(s, rng);
    }
    elapsed = now() - start;
  } while (elapsed < 2.0);
  return n / elapsed;
}

// One epoch of `steps` iterations of the shipped SimCLR config at full width, 3 channels,
// 32x32, batch 256; returns samples/s over all but the first iteration.
double train_samples_per_second(int steps, bool channels_last, bool bf16, const fs::path& dir) {
  Json cfg = core::load_config_file(SELFSUP_BENCH_CONFIG);
  core::apply_overrides(
      cfg,
      {"model.backbone.in_channels=3", "model.data_preprocessor.mean=[125.3,123.0,113.9]",
       "model.data_preprocessor.std=[63.0,62.1,66.7]", "train_dataloader.batch_size=256",
       "custom_hooks=[]", "default_hooks.logger.interval=1000",
       "train_dataloader.dataset.indices=" + std::to_string(256 * steps), "train_cfg.max_epochs=1",
       std::string("env_cfg.channels_last=") + (channels_last ? "true" : "false")});
  cfg.find("train_dataloader")->find("dataset")->set("pipeline", simclr_pipeline(32, true));
  if (bf16) {
    core::apply_overrides(cfg,
                          {"optim_wrapper.type=AmpOptimWrapper", "optim_wrapper.dtype=bfloat16"});
  }
  fs::remove_all(dir);
  core::TrainOptions o;
  o.work_dir = dir.string();
  o.threads = 2;
  // The runner's own log lines would interleave with the table.
  std::fflush(stdout);
  int saved = dup(STDOUT_FILENO), null = open("/dev/null", O_WRONLY);
  dup2(null, STDOUT_FILENO);
  try {
    core::Runner(cfg, o).train();
  } catch (...) {
    dup2(saved, STDOUT_FILENO);
    throw;
  }
  std::fflush(stdout);
  dup2(saved, STDOUT_FILENO);
  close(null);
  close(saved);
  std::ifstream jl(dir / "scalars.jsonl");
  std::string line;
  std::vector<double> times;
  while (std::getline(jl, line))
    times.push_back(Json::parse(line, "scalars").find("time")->as_number());
  double total = 0;
  for (size_t i = 1; i < times.size(); ++i) total += times[i];
  return 256.0 * double(times.size() - 1) / total;
}

} // namespace

int main(int argc, char** argv) {
  int steps = 6;
  for (int i = 1; i + 1 < argc; ++i)
    if (std::strcmp(argv[i], "--steps") == 0) steps = std::max(2, std::atoi(argv[i + 1]));
  const fs::path exe = fs::canonical("/proc/self/exe").parent_path() / "selfsup";

  // Ratios to MMSelfSup are only meaningful from the same run on the same machine (its speed
  // moves from day to day); until the bench runs MMSelfSup beside itself (issue 14) it prints
  // selfsup's own figures only, and says so.
  std::printf("selfsup bench: 2 compute threads; selfsup's figures only (no same-run "
              "MMSelfSup reference, so no ratios)\n\n");
  std::printf("%-44s %14s\n", "what", "selfsup");
  double startup = startup_seconds(exe);
  std::printf("%-44s %12.3f s\n", "start-up (`selfsup list`, median of 5)", startup);

  core::register_builtins();
  core::PluginLoader loader;
  loader.load_default_locations({});
  torch::set_num_threads(1);
  double aug = augment_images_per_second();
  std::printf("%-44s %8.0f img/s\n", "augment: SimCLR pipeline 32x32, 2 views, 1 core", aug);

  const fs::path tmp = fs::temp_directory_path() / ("selfsup_bench_" + std::to_string(getpid()));
  struct Mode {
    const char* name;
    bool cl, bf16;
  } modes[] = {{"train: SimCLR R18 b256 32x32 fp32", false, false},
               {"train: ... fp32, channels-last", true, false},
               {"train: ... bf16 autocast, channels-last", true, true}};
  std::fflush(stdout);
  int index = 0;
  for (const auto& m : modes) {
    double sps = train_samples_per_second(steps, m.cl, m.bf16, tmp / std::to_string(index++));
    std::printf("%-44s %6.1f samples/s\n", m.name, sps);
    std::fflush(stdout);
  }
  fs::remove_all(tmp);
  return 0;
}
