// Speed of selfsup beside MMSelfSup 1.0 and a plain-PyTorch reference, measured in one run on
// this machine (ratios only ever come from the same invocation: the machine's speed moves from
// day to day): start-up, augmentation throughput (32x32 arrays and 224-px crops of JPEG files),
// training steps of SimCLR, MoCo v2, BYOL and SwAV multi-crop (ResNet-18 CIFAR stem, batch 256,
// 32x32; SwAV 2 crops of 32x32 + 6 of 14x14: fp32, fp32 channels-last, bf16 autocast +
// channels-last) and the peak resident memory of each run;
// feature extraction (--extract-images N 1x32x32 images through ResNet-18, fp32 and selfsup's
// default bf16-where-native, beside MMSelfSup's Extractor-style loop, bench/mmselfsup_extract.py).
//
//   selfsup_bench [--iters N] [--warmup N] [--algos simclr,mocov2,byol,swav] [--quiet-wait S]
//                 [--mmselfsup PYTHONPATH] [--anchors DIR] [--python EXE] [--no-python]
//                 [--jpeg-images N] [--profile FILE] [--extract-images N]
//   selfsup_bench --scaling [--iters N] [--warmup N]
//     selfsup alone: SimCLR step time against batch size (64-512, ResNet-18 CIFAR stem, 32 px)
//     and image side (32, 64, 96, 224, ResNet-50, batch 32), fp32 and bf16 + channels-last;
//     DataLoader throughput on 224-px JPEG views with 1 and 2 worker threads.
//
// --mmselfsup (or SELFSUP_BENCH_MMSELFSUP) is the PYTHONPATH under which MMSelfSup 1.0 imports;
// --anchors (or SELFSUP_BENCH_ANCHORS) the folder of upstream's bench_train.py / bench_data.py.
// Without them the MMSelfSup columns are left out; without a Python that imports torch the
// plain-PyTorch reference is left out too, and the bench says so.
//
// Every training measurement runs in its own fresh process (this executable with --child-train,
// MMSelfSup's bench_train.py or bench/mmselfsup_swav.py, bench/plain_reference.py), one after
// the other, so each has the machine to itself, its peak resident memory is its own (wait4's
// ru_maxrss), and nothing the children print reaches the table. Each timed step waits (bounded,
// --quiet-wait) for a quiet machine first and records the CPU that other processes used during
// it; a step during which others used >= 0.25 core is "dirty" and the figure is the median of
// the clean steps (of all steps when none is clean), as upstream's bench_train.py does.
#include <fcntl.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <map>
#include <optional>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

// jpeglib.h needs <cstdio> and <cstddef> first.
#include <jpeglib.h>

#include <torch/csrc/autograd/profiler_legacy.h>
#include <torch/torch.h>

#include <selfsup/core/builtins.h>
#include <selfsup/core/data.h>
#include <selfsup/core/knn_eval.h>
#include <selfsup/core/optim_wrapper.h>
#include <selfsup/core/plugin_loader.h>
#include <selfsup/interfaces/algorithm.h>
#include <selfsup/registry.h>

extern char** environ;

namespace fs = std::filesystem;
using namespace selfsup;

namespace {

constexpr int kBatch = 256;
constexpr int kSwAVSmall = 14;  // SwAV's small crops: 224/96 of the 32-pixel large ones
constexpr double kDirty = 0.25; // foreign cores during a step that make it dirty

double now() {
  return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch()).count();
}

// ---------------------------------------------------------------------------------------
// Foreign load: CPU time used by other processes during a window, in cores.

int64_t busy_jiffies() {
  std::ifstream f("/proc/stat");
  std::string cpu;
  int64_t v[8] = {0, 0, 0, 0, 0, 0, 0, 0};
  f >> cpu;
  for (auto& x : v) f >> x;
  // user nice system (idle iowait) irq softirq steal
  return v[0] + v[1] + v[2] + v[5] + v[6] + v[7];
}

double self_cpu_seconds() {
  rusage self{}, children{};
  getrusage(RUSAGE_SELF, &self);
  getrusage(RUSAGE_CHILDREN, &children);
  auto s = [](const timeval& t) { return double(t.tv_sec) + 1e-6 * double(t.tv_usec); };
  return s(self.ru_utime) + s(self.ru_stime) + s(children.ru_utime) + s(children.ru_stime);
}

class LoadMon {
public:
  LoadMon() : t0_(now()), busy0_(busy_jiffies()), self0_(self_cpu_seconds()) {}
  [[nodiscard]] double foreign_cores() const {
    const double wall = std::max(1e-6, now() - t0_);
    const double busy = double(busy_jiffies() - busy0_) / double(sysconf(_SC_CLK_TCK));
    return std::max(0.0, (busy - (self_cpu_seconds() - self0_)) / wall);
  }

private:
  double t0_;
  int64_t busy0_;
  double self0_;
};

// Waits (at most max_wait seconds) until others use < 0.15 core over 1 s.
void wait_quiet(double max_wait) {
  const double end = now() + max_wait;
  while (now() < end) {
    LoadMon m;
    std::this_thread::sleep_for(std::chrono::seconds(1));
    if (m.foreign_cores() < 0.15) return;
  }
}

double median(std::vector<double> v) {
  if (v.empty()) return std::nan("");
  std::sort(v.begin(), v.end());
  const size_t n = v.size();
  return n % 2 ? v[n / 2] : 0.5 * (v[n / 2 - 1] + v[n / 2]);
}

// Step times with the foreign load of each step -> the figure and how it was obtained.
struct Steps {
  std::vector<double> seconds, foreign;
  [[nodiscard]] std::vector<double> clean() const {
    std::vector<double> c;
    for (size_t i = 0; i < seconds.size(); ++i)
      if (foreign[i] < kDirty) c.push_back(seconds[i]);
    return c;
  }
  [[nodiscard]] double step_s() const {
    const auto c = clean();
    return c.empty() ? median(seconds) : median(c);
  }
  [[nodiscard]] double max_foreign() const {
    return foreign.empty() ? 0 : *std::max_element(foreign.begin(), foreign.end());
  }
};

// ---------------------------------------------------------------------------------------
// Child processes.

struct ChildResult {
  int status = -1;
  std::string out; // stdout
  std::string err; // stderr (its tail is shown on failure)
  long maxrss_kb = 0;
  [[nodiscard]] bool ok() const { return WIFEXITED(status) && WEXITSTATUS(status) == 0; }
};

std::string read_all(int fd) {
  std::string s;
  char buf[4096];
  for (ssize_t n; (n = read(fd, buf, sizeof buf)) != 0;) {
    if (n < 0) {
      if (errno == EINTR) continue;
      break;
    }
    s.append(buf, size_t(n));
  }
  return s;
}

// Runs argv with `env` added to this process's environment; stdout is captured, stderr goes to
// a file under `tmp` (read back after the child ends).
ChildResult run_child(const std::vector<std::string>& argv,
                      const std::map<std::string, std::string>& env, const fs::path& tmp) {
  std::vector<std::string> env_strings;
  for (char** e = environ; *e; ++e) {
    const std::string kv = *e;
    if (!env.count(kv.substr(0, kv.find('=')))) env_strings.push_back(kv);
  }
  for (const auto& [k, v] : env) env_strings.push_back(k + "=" + v);
  std::vector<char*> args, envp;
  for (const auto& a : argv) args.push_back(const_cast<char*>(a.c_str()));
  args.push_back(nullptr);
  for (const auto& e : env_strings) envp.push_back(const_cast<char*>(e.c_str()));
  envp.push_back(nullptr);
  const std::string err_path = (tmp / "child_stderr.txt").string();
  const int err_fd = open(err_path.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0600);
  int fds[2];
  ChildResult r;
  if (err_fd < 0 || pipe(fds) != 0) {
    r.err = "cannot create the child's pipe or " + err_path;
    return r;
  }
  std::fflush(stdout); // a forked child must not inherit unwritten lines of the table
  std::fflush(stderr);
  const pid_t pid = fork();
  if (pid == 0) {
    dup2(fds[1], STDOUT_FILENO);
    dup2(err_fd, STDERR_FILENO);
    close(fds[0]);
    close(fds[1]);
    close(err_fd);
    execve(args[0], args.data(), envp.data());
    _exit(127);
  }
  close(fds[1]);
  close(err_fd);
  r.out = read_all(fds[0]);
  close(fds[0]);
  rusage ru{};
  while (wait4(pid, &r.status, 0, &ru) < 0 && errno == EINTR) {
  }
  r.maxrss_kb = ru.ru_maxrss;
  std::ifstream ef(err_path);
  std::stringstream ss;
  ss << ef.rdbuf();
  r.err = ss.str();
  return r;
}

std::string tail(const std::string& s, size_t n = 600) {
  return s.size() <= n ? s : "..." + s.substr(s.size() - n);
}

std::optional<Json> read_json_file(const fs::path& p) {
  std::ifstream f(p);
  if (!f) return std::nullopt;
  std::stringstream ss;
  ss << f.rdbuf();
  // Python's json writes NaN and Infinity (bench_train.py's clean median when no step was
  // clean), which are not JSON: read them as null.
  std::string text = ss.str();
  for (const std::string bad : {"-Infinity", "Infinity", "NaN"})
    for (size_t at; (at = text.find(bad)) != std::string::npos;)
      text.replace(at, bad.size(), "null");
  try {
    return Json::parse(text, p.string());
  } catch (const std::exception&) {
    return std::nullopt;
  }
}

std::vector<double> numbers(const Json* a) {
  std::vector<double> v;
  if (a && a->is_array())
    for (const auto& x : a->items()) v.push_back(x.as_number());
  return v;
}

// ---------------------------------------------------------------------------------------
// selfsup's side of the training steps (run in a child: --child-train ALGO MODE ...).

// The same models as upstream's bench_train.py builds from MMSelfSup's base configs: ResNet-18
// with the CIFAR stem, neck in_channels 512, BN everywhere (one process).
// `depth` 50 (the --scaling table only): ResNet-50 with the ImageNet stem, neck in_channels 2048.
Json model_config(const std::string& algo, int depth = 18) {
  const std::string pre = R"("data_preprocessor": {"mean": [123.675, 116.28, 103.53],
      "std": [58.395, 57.12, 57.375], "bgr_to_rgb": true},)";
  auto backbone = [depth](bool zero_init) {
    return std::string(R"("backbone": {"type": "ResNet", "depth": )") + std::to_string(depth) +
           R"(, "in_channels": 3, "stem": ")" + (depth == 18 ? "cifar" : "imagenet") +
           R"(", "out_indices": [4], "norm_cfg": {"type": "BN"}, "zero_init_residual": )" +
           (zero_init ? "true" : "false") + "},";
  };
  std::string m;
  if (algo == "simclr") {
    m = R"({"type": "SimCLR", )" + pre + backbone(true) +
        R"("neck": {"type": "NonLinearNeck", "in_channels": )" +
        std::to_string(depth == 18 ? 512 : 2048) + R"(, "hid_channels": 2048,
          "out_channels": 128, "num_layers": 2, "with_avg_pool": true,
          "norm_cfg": {"type": "BN"}},
        "head": {"type": "ContrastiveHead", "loss": {"type": "mmcls.CrossEntropyLoss"},
          "temperature": 0.1}})";
  } else if (algo == "mocov2") {
    m = R"({"type": "MoCo", "queue_len": 65536, "feat_dim": 128, "momentum": 0.999, )" + pre +
        backbone(false) +
        R"("neck": {"type": "MoCoV2Neck", "in_channels": 512, "hid_channels": 2048,
          "out_channels": 128, "with_avg_pool": true},
        "head": {"type": "ContrastiveHead", "loss": {"type": "mmcls.CrossEntropyLoss"},
          "temperature": 0.2}})";
  } else if (algo == "byol") {
    m = R"({"type": "BYOL", "base_momentum": 0.99, )" + pre + backbone(false) +
        R"("neck": {"type": "NonLinearNeck", "in_channels": 512, "hid_channels": 4096,
          "out_channels": 256, "num_layers": 2, "with_bias": true, "with_last_bn": false,
          "with_avg_pool": true, "norm_cfg": {"type": "BN"}},
        "head": {"type": "LatentPredictHead", "loss": {"type": "CosineSimilarityLoss"},
          "predictor": {"type": "NonLinearNeck", "in_channels": 256, "hid_channels": 4096,
            "out_channels": 256, "num_layers": 2, "with_bias": true, "with_last_bn": false,
            "with_avg_pool": false, "norm_cfg": {"type": "BN"}}}})";
  } else if (algo == "swav") {
    // MMSelfSup's swav.py: SwAVNeck 2048 -> 2048 -> 128 (in_channels 512 here), SwAVLoss with
    // 3000 prototypes, epsilon 0.05, temperature 0.1, 3 Sinkhorn iterations, num_crops [2, 6].
    m = R"({"type": "SwAV", )" + pre + backbone(true) +
        R"("neck": {"type": "SwAVNeck", "in_channels": 512, "hid_channels": 2048,
          "out_channels": 128, "with_avg_pool": true, "norm_cfg": {"type": "BN"}},
        "head": {"type": "SwAVHead", "loss": {"type": "SwAVLoss", "feat_dim": 128,
          "epsilon": 0.05, "temperature": 0.1, "num_crops": [2, 6]}}})";
  } else {
    throw ValueError("--algos: unknown algorithm '" + algo + "' (simclr, mocov2, byol, swav)");
  }
  return Json::parse(m, "bench model " + algo);
}

// The side of each view of one sample: two `side` x `side` views (32 in the main table);
// SwAV's multi-crop 2 x 32 + 6 x 14.
std::vector<int64_t> view_sizes(const std::string& algo, int64_t side = 32) {
  if (algo == "swav")
    return {32, 32, kSwAVSmall, kSwAVSmall, kSwAVSmall, kSwAVSmall, kSwAVSmall, kSwAVSmall};
  return {side, side};
}

// What one training child runs: batch, view side and ResNet depth (the main table: 256, 32, 18).
struct Work {
  int batch = kBatch;
  int side = 32;
  int depth = 18;
};

// Upstream's train_step on pre-made uint8 views (data loading excluded, as in bench_train.py):
// preprocess, forward (loss), backward, SGD step, zero_grad; modes fp32 / fp32_cl / bf16_cl.
int train_child(const std::string& algo, const std::string& mode, int iters, int warmup,
                double quiet_wait, const std::string& profile, const Work& work = {}) {
  if (mode != "fp32" && mode != "fp32_cl" && mode != "bf16_cl")
    throw ValueError("--child-train: mode must be fp32, fp32_cl or bf16_cl, got " + mode);
  core::register_builtins();
  core::PluginLoader loader;
  loader.load_default_locations({});
  torch::set_num_threads(2);
  torch::manual_seed(0);
  const bool cl = mode != "fp32", bf16 = mode == "bf16_cl";
  auto model = build<Algorithm>(Config(model_config(algo, work.depth), "model"));
  model->train();
  if (cl) { // as the Runner does with env_cfg.channels_last
    torch::NoGradGuard no_grad;
    for (auto& p : model->parameters())
      if (p.dim() == 4) p.set_data(p.contiguous(torch::MemoryFormat::ChannelsLast));
  }
  Json ow = Json::parse(R"({"type": "OptimWrapper",
      "optimizer": {"type": "SGD", "lr": 0.03, "momentum": 0.9, "weight_decay": 1e-4}})",
                        "bench optim_wrapper");
  if (bf16) {
    ow.set("type", "AmpOptimWrapper");
    ow.set("dtype", "bfloat16");
  }
  core::OptimWrapper wrapper(Config(ow, "optim_wrapper"), *model);
  std::vector<torch::Tensor> raw;
  for (int64_t side : view_sizes(algo, work.side))
    raw.push_back(torch::randint(0, 256, {work.batch, 3, side, side}, torch::kUInt8));
  DataSamples samples;
  samples.gt_label = torch::full({work.batch}, -1, torch::kLong);
  samples.sample_idx = torch::arange(work.batch, torch::kLong);
  const int64_t total_iters = warmup + iters;
  int64_t iter = 0;
  double last_loss = 0;
  auto step = [&] {
    std::vector<torch::Tensor> views;
    for (const auto& r : raw) views.push_back(r.clone());
    DataSamples s = samples;
    torch::Tensor loss;
    {
      auto inputs = model->preprocess(views, s);
      auto autocast = wrapper.autocast(torch::kCPU);
      if (cl)
        for (auto& x : inputs)
          if (x.dim() == 4) x = x.contiguous(torch::MemoryFormat::ChannelsLast);
      for (const auto& [name, value] : model->forward(inputs, s, ForwardMode::Loss).losses)
        if (name.find("loss") != std::string::npos) {
          torch::Tensor v = value.to(torch::kFloat32).mean();
          loss = loss.defined() ? loss + v : v;
        }
    }
    last_loss = loss.item<double>();
    std::vector<std::pair<std::string, double>> scalars;
    (void)wrapper.update_params(loss, iter++, total_iters, scalars);
  };
  for (int i = 0; i < warmup; ++i) step();
  Steps st;
  for (int i = 0; i < iters; ++i) {
    wait_quiet(quiet_wait);
    LoadMon m;
    const double t0 = now();
    if (!profile.empty() && i == iters - 1) {
      // The last step under LibTorch's profiler, as a Chrome trace (chrome://tracing).
      torch::autograd::profiler::RecordProfile guard(profile);
      step();
    } else {
      step();
    }
    st.seconds.push_back(now() - t0);
    st.foreign.push_back(m.foreign_cores());
  }
  Json out = Json::object({{"loss", Json(last_loss)}});
  Json secs = Json::array(), foreign = Json::array();
  for (double s : st.seconds) secs.push_back(Json(s));
  for (double f : st.foreign) foreign.push_back(Json(f));
  out.set("step_times", secs);
  out.set("step_foreign", foreign);
  std::printf("%s\n", out.dump().c_str());
  return 0;
}

// ---------------------------------------------------------------------------------------
// Augmentation.

// MMSelfSup's SimCLR view pipeline (imagenet_simclr.py) at `size`: each sample gives two views.
// `img_path` is packed for files only (the arrays have no path).
Json simclr_pipeline(int size, bool files) {
  return Json::parse(
      R"([{"type": "MultiView", "num_views": 2, "transforms": [[
      {"type": "RandomResizedCrop", "size": )" +
          std::to_string(size) + R"(, "backend": "pillow"},
      {"type": "RandomFlip", "prob": 0.5},
      {"type": "RandomApply", "prob": 0.8, "transforms": [
        {"type": "ColorJitter", "brightness": 0.8, "contrast": 0.8, "saturation": 0.8,
         "hue": 0.2}]},
      {"type": "RandomGrayscale", "prob": 0.2, "keep_channels": true,
       "channel_weights": [0.114, 0.587, 0.2989]},
      {"type": "RandomGaussianBlur", "sigma_min": 0.1, "sigma_max": 2.0, "prob": 0.5}]]},
    {"type": "PackSelfSupInputs", "meta_keys": )" +
          std::string(files ? R"(["img_path"])" : "[]") + "}]",
      "bench pipeline");
}

// Source images per second through the 32x32 pipeline on one core (in-memory uint8 arrays, as
// upstream's bench_data.py).
double augment_32_per_second() {
  core::Pipeline pipeline(Config(simclr_pipeline(32, false), "pipeline"));
  std::vector<Image> imgs;
  Rng fill(1);
  for (int i = 0; i < 64; ++i) {
    Image img(32, 32, 3);
    for (auto& v : img.data) v = uint8_t(fill.next());
    imgs.push_back(std::move(img));
  }
  int n = 0;
  double start = now(), elapsed = 0;
  do {
    for (int i = 0; i < 200; ++i, ++n) {
      Sample s;
      s.img = imgs[size_t(n) % imgs.size()];
      Rng rng(core::sample_seed(0, 0, n));
      pipeline.apply(s, rng);
    }
    elapsed = now() - start;
  } while (elapsed < 3.0);
  return n / elapsed;
}

// ImageNet-like JPEG files (500x375, smooth content with some texture, quality 90) in
// dir/class0, written with libjpeg.
void write_jpegs(const fs::path& dir, int count) {
  fs::create_directories(dir / "class0");
  const int w = 500, h = 375;
  std::vector<uint8_t> rgb(size_t(w) * h * 3);
  Rng rng(7);
  for (int k = 0; k < count; ++k) {
    const double a = rng.uniform(5, 40), b = rng.uniform(5, 40), c = rng.uniform(0, 6.3);
    for (int y = 0; y < h; ++y)
      for (int x = 0; x < w; ++x) {
        uint8_t* p = &rgb[(size_t(y) * w + x) * 3];
        const double noise = double(rng.next() % 24);
        p[0] = uint8_t(std::clamp(120 + 90 * std::sin(x / a + c) + noise, 0.0, 255.0));
        p[1] = uint8_t(std::clamp(120 + 90 * std::cos(y / b - c) + noise, 0.0, 255.0));
        p[2] = uint8_t(std::clamp(120 + 60 * std::sin((x + y) / (a + b)) + noise, 0.0, 255.0));
      }
    const std::string path = (dir / "class0" / ("img" + std::to_string(k) + ".jpg")).string();
    FILE* f = std::fopen(path.c_str(), "wb");
    if (!f) throw ValueError("cannot write " + path);
    jpeg_compress_struct cinfo{};
    jpeg_error_mgr jerr{};
    cinfo.err = jpeg_std_error(&jerr);
    jpeg_create_compress(&cinfo);
    jpeg_stdio_dest(&cinfo, f);
    cinfo.image_width = w;
    cinfo.image_height = h;
    cinfo.input_components = 3;
    cinfo.in_color_space = JCS_RGB;
    jpeg_set_defaults(&cinfo);
    jpeg_set_quality(&cinfo, 90, TRUE);
    jpeg_start_compress(&cinfo, TRUE);
    while (cinfo.next_scanline < cinfo.image_height) {
      JSAMPROW row = &rgb[size_t(cinfo.next_scanline) * w * 3];
      jpeg_write_scanlines(&cinfo, &row, 1);
    }
    jpeg_finish_compress(&cinfo);
    jpeg_destroy_compress(&cinfo);
    std::fclose(f);
  }
}

// Source images per second: read + decode (the ImageFolder dataset) + the 224-px SimCLR
// pipeline, one core.
double augment_jpeg_per_second(const fs::path& dir) {
  Json ds = Json::object({{"type", Json("ImageFolder")}, {"data_root", Json(dir.string())}});
  auto dataset = build<Dataset>(Config(ds, "bench dataset"));
  core::Pipeline pipeline(Config(simclr_pipeline(224, true), "pipeline"));
  const int64_t size = dataset->size();
  int n = 0;
  double start = now(), elapsed = 0;
  do {
    for (int i = 0; i < 16; ++i, ++n) {
      Sample s = dataset->get(n % size);
      Rng rng(core::sample_seed(0, 0, n));
      pipeline.apply(s, rng);
    }
    elapsed = now() - start;
  } while (elapsed < 4.0);
  return n / elapsed;
}

// Median wall time of `selfsup list` (process start, LibTorch, every plugin loaded).
double startup_seconds(const fs::path& exe, const fs::path& tmp) {
  std::vector<double> t;
  for (int i = 0; i < 5; ++i) {
    const double s = now();
    (void)run_child({exe.string(), "list"}, {}, tmp);
    t.push_back(now() - s);
  }
  return median(t);
}

// ---------------------------------------------------------------------------------------
// The table.

struct Options {
  int iters = 5, warmup = 2;
  std::vector<std::string> algos = {"simclr", "mocov2", "byol", "swav"};
  double quiet_wait = 5;
  std::string mmselfsup, anchors, python = "/usr/bin/python3", profile;
  bool no_python = false;
  int jpeg_images = 48;
  int extract_images = 5120; // feature-extraction rows (0: none)
};

struct Figure {
  double per_s = std::nan(""); // samples/s or images/s
  long maxrss_kb = 0;
  double foreign = 0; // the largest foreign load of a step (cores)
  int clean = 0, steps = 0;
  double loss = std::nan("");
  std::string error;
  [[nodiscard]] bool ok() const { return error.empty() && std::isfinite(per_s); }
};

Figure figure_of(const Steps& st, long maxrss_kb, double loss) {
  Figure f;
  f.per_s = kBatch / st.step_s();
  f.maxrss_kb = maxrss_kb;
  f.foreign = st.max_foreign();
  f.clean = int(st.clean().size());
  f.steps = int(st.seconds.size());
  f.loss = loss;
  return f;
}

Figure failed(const std::string& what, const ChildResult& r) {
  Figure f;
  f.error = what + " failed (status " + std::to_string(r.status) + "): " + tail(r.err);
  return f;
}

std::string ratio(const Figure& a, const Figure& b) {
  if (!a.ok() || !b.ok()) return "-";
  char buf[32];
  std::snprintf(buf, sizeof buf, "%.2fx", a.per_s / b.per_s);
  return buf;
}

void print_row(const std::string& what, const Figure& f, const std::string& r1,
               const std::string& r2) {
  if (!f.ok()) {
    std::printf("%-40s  %s\n", what.c_str(), f.error.c_str());
    return;
  }
  std::printf("%-40s %9.1f %8.0f MB %5d/%-2d %6.2f %10s %10s\n", what.c_str(), f.per_s,
              double(f.maxrss_kb) / 1024.0, f.clean, f.steps, f.foreign, r1.c_str(), r2.c_str());
  std::fflush(stdout);
}

// ---------------------------------------------------------------------------------------
// Feature extraction (kNN / linear probe / `selfsup extract`): selfsup's extract_features in
// fp32 and in its default precision (auto: bf16 on a CPU with native bf16) beside MMSelfSup's
// Extractor-style loop (bench/mmselfsup_extract.py), on the same IDX files: 1x32x32 images,
// ResNet-18 with the CIFAR stem as the Fashion-MNIST configs, the loader's batch 512 with one
// worker, 2 compute threads. Each batch is timed with the foreign load during it; the first
// batch (loader start-up, the model's conversion) is left out of the median.

constexpr int kExtractBatch = 512;

// N pseudo-random 32x32 images and labels as the FashionMNIST dataset's train IDX files.
void write_extract_idx(const fs::path& dir, int n) {
  fs::create_directories(dir);
  auto header = [](std::ofstream& f, std::vector<int32_t> dims) {
    const char magic[4] = {0, 0, 8, char(dims.size())};
    f.write(magic, 4);
    for (int32_t d : dims) {
      const char be[4] = {char(d >> 24), char(d >> 16), char(d >> 8), char(d)};
      f.write(be, 4);
    }
  };
  Rng rng(11);
  std::ofstream img(dir / "train-images-idx3-ubyte", std::ios::binary);
  header(img, {n, 32, 32});
  std::vector<char> pixels(size_t(n) * 32 * 32);
  for (auto& v : pixels) v = char(rng.next() & 0xff);
  img.write(pixels.data(), std::streamsize(pixels.size()));
  std::ofstream lab(dir / "train-labels-idx1-ubyte", std::ios::binary);
  header(lab, {n});
  for (int i = 0; i < n; ++i) lab.put(char(i % 10));
  if (!img || !lab) throw ValueError("cannot write the extraction images under " + dir.string());
}

// selfsup's side (a child: --child-extract PRECISION ROOT): the shipped SimCLR Fashion-MNIST
// model and the KNNEvalHook's dataloader shape; prints the batch times as JSON.
int extract_child(const std::string& precision, const std::string& root) {
  core::register_builtins();
  core::PluginLoader loader;
  loader.load_default_locations({});
  torch::set_num_threads(2);
  torch::manual_seed(0);
  const Json model_cfg = Json::parse(R"({"type": "SimCLR",
      "data_preprocessor": {"mean": [72.94], "std": [90.0], "bgr_to_rgb": false},
      "backbone": {"type": "ResNet", "depth": 18, "in_channels": 1, "stem": "cifar",
                   "out_indices": [4], "norm_cfg": {"type": "BN"}},
      "neck": {"type": "NonLinearNeck", "in_channels": 512, "hid_channels": 512,
               "out_channels": 128, "num_layers": 2, "with_avg_pool": true},
      "head": {"type": "ContrastiveHead", "loss": {"type": "mmcls.CrossEntropyLoss"},
               "temperature": 0.1}})",
                                     "bench extract model");
  auto model = build<Algorithm>(Config(model_cfg, "model"));
  Json dl = Json::parse(R"({"num_workers": 1,
      "sampler": {"type": "DefaultSampler", "shuffle": false},
      "dataset": {"type": "FashionMNIST", "split": "train",
                  "pipeline": [{"type": "PackSelfSupInputs", "algorithm_keys": ["gt_label"]}]}})",
                        "bench extract dataloader");
  dl.set("batch_size", Json(kExtractBatch));
  dl.find("dataset")->set("data_root", Json(root));
  auto data = core::DataLoader::from_config(Config(dl, "dataloader"), 0);
  core::ExtractOptions o;
  o.precision = core::parse_extract_precision(precision, "--child-extract");
  o.log_interval = 1; // a callback after every batch: its time stamps time the batches
  Json times = Json::array(), foreign = Json::array();
  std::optional<LoadMon> mon;
  double last = now();
  mon.emplace();
  o.log = [&](const std::string&) {
    const double t = now();
    times.push_back(Json(t - last));
    foreign.push_back(Json(mon->foreign_cores()));
    last = t;
    mon.emplace();
  };
  torch::Tensor labels;
  const double start = now();
  const auto feats = core::extract_features(*model, *data, labels, torch::kCPU, o);
  const double total = now() - start;
  Json out = Json::object({{"images", Json(feats.size(0))}, {"seconds", Json(total)}});
  out.set("batch_times", times);
  out.set("batch_foreign", foreign);
  out.set("dtype", Json(core::to_string(o.precision) == "auto"
                            ? std::string(core::resolve_extract_dtype(o.precision, torch::kCPU) ==
                                                  torch::kBFloat16
                                              ? "bf16"
                                              : "fp32")
                            : core::to_string(o.precision)));
  std::printf("%s\n", out.dump().c_str());
  return 0;
}

// images/s of one extraction from its JSON (batch_times, batch_foreign, images, seconds).
Figure extract_figure(const Json& j, long maxrss_kb) {
  std::vector<double> t = numbers(j.find("batch_times")), f = numbers(j.find("batch_foreign"));
  Figure fig;
  // All but the first and the last (possibly partial) batch.
  if (t.size() < 3) {
    fig.error = "too few batches to time (need 3 or more)";
    return fig;
  }
  Steps st{{t.begin() + 1, t.end() - 1}, {f.begin() + 1, f.end() - 1}};
  fig.per_s = kExtractBatch / st.step_s();
  fig.maxrss_kb = maxrss_kb;
  fig.foreign = st.max_foreign();
  fig.clean = int(st.clean().size());
  fig.steps = int(st.seconds.size());
  fig.loss = j.find("images")->as_number() / j.find("seconds")->as_number(); // end to end
  return fig;
}

void print_extract_row(const std::string& what, const Figure& f, const std::string& r) {
  if (!f.ok()) {
    std::printf("%-40s  %s\n", what.c_str(), f.error.c_str());
    return;
  }
  std::printf("%-40s %9.1f %9.1f %8.0f MB %5d/%-2d %6.2f %10s\n", what.c_str(), f.per_s, f.loss,
              double(f.maxrss_kb) / 1024.0, f.clean, f.steps, f.foreign, r.c_str());
  std::fflush(stdout);
}

// The extraction rows: MMSelfSup (when its PYTHONPATH is given), selfsup fp32, selfsup auto.
void extraction_section(const fs::path& exe, const fs::path& tmp, int images,
                        const std::string& python, bool have_torch, const std::string& mmselfsup,
                        const std::map<std::string, std::string>& py_env) {
  const fs::path root = tmp / "extract";
  write_extract_idx(root, images);
  std::printf("\n%-40s %9s %9s %11s %8s %6s %10s\n", "feature extraction (R18 CIFAR, 1x32x32)",
              "img/s", "end2end", "peak RSS", "clean", "load", "vs mm");
  std::fflush(stdout);
  Figure mm;
  if (have_torch && !mmselfsup.empty()) {
    const fs::path jf = tmp / "extract_mm.json";
    const ChildResult r = run_child(
        {python, (fs::path(SELFSUP_BENCH_DIR) / "mmselfsup_extract.py").string(), "--root",
         root.string(), "--batch", std::to_string(kExtractBatch), "--json", jf.string()},
        py_env, tmp);
    const auto j = read_json_file(jf);
    mm = r.ok() && j ? extract_figure(*j, r.maxrss_kb) : failed("mmselfsup_extract.py", r);
    print_extract_row("MMSelfSup 1.0 fp32 (eval, no_grad)", mm, "1.00x");
  }
  for (const char* precision : {"fp32", "auto"}) {
    const ChildResult r =
        run_child({exe.string(), "--child-extract", precision, root.string()}, {}, tmp);
    Figure f;
    std::string name = std::string("selfsup ") + precision;
    try {
      const Json j = Json::parse(r.out, "child");
      f = r.ok() ? extract_figure(j, r.maxrss_kb) : failed("selfsup extraction", r);
      if (std::string(precision) == "auto") name += " (" + j.find("dtype")->as_string() + ")";
    } catch (const std::exception&) {
      f = failed("selfsup extraction " + std::string(precision), r);
    }
    print_extract_row(name, f, have_torch && !mmselfsup.empty() ? ratio(f, mm) : "-");
  }
  std::printf("\nimg/s: batch %d / median batch time over the clean batches (the first left "
              "out); end2end: all %d images / wall time, loader start-up included\n",
              kExtractBatch, images);
}

// ---------------------------------------------------------------------------------------
// --scaling: how the step time grows with the work, and the loader with its threads (issue
// 14, point 5), so that a user can predict a run. selfsup alone, every figure its own child.

// Source images/s of the SimCLR 224-px view pipeline through the DataLoader with `workers`
// threads, over `dir`'s JPEG files (batch 32; the first batch, start-up, left out).
double loader_images_per_second(const fs::path& dir, int workers) {
  Json ds = Json::object({{"type", Json("ImageFolder")},
                          {"data_root", Json(dir.string())},
                          {"pipeline", simclr_pipeline(224, true)}});
  Json cfg = Json::object(
      {{"batch_size", Json(32)},
       {"num_workers", Json(workers)},
       {"sampler", Json::parse(R"({"type": "DefaultSampler", "shuffle": true})", "bench sampler")},
       {"dataset", ds}});
  auto loader = core::DataLoader::from_config(Config(cfg, "bench dataloader"), 0);
  int64_t images = 0;
  double start = 0;
  for (int64_t epoch = 0; images < 32 * 24; ++epoch) {
    loader->start_epoch(epoch);
    while (auto batch = loader->next()) {
      if (start == 0) {
        start = now();
        continue;
      }
      images += batch->views[0].size(0);
    }
  }
  return double(images) / (now() - start);
}

int scaling_table(const std::vector<std::string>& args) {
  int iters = 2, warmup = 1;
  for (size_t i = 1; i < args.size(); ++i) {
    if (args[i] == "--iters" && i + 1 < args.size())
      iters = std::max(1, std::stoi(args[++i]));
    else if (args[i] == "--warmup" && i + 1 < args.size())
      warmup = std::max(1, std::stoi(args[++i]));
    else
      throw ValueError("--scaling [--iters N] [--warmup N], got " + args[i]);
  }
  const fs::path exe = fs::canonical("/proc/self/exe");
  const fs::path tmp = fs::temp_directory_path() / ("selfsup_scaling_" + std::to_string(getpid()));
  fs::create_directories(tmp);
  std::printf("selfsup_bench --scaling: SimCLR training steps, %d timed after %d warm-up, 2 "
              "threads, each row its own process\n\n",
              iters, warmup);
  std::printf("%-12s %6s %5s %-8s %9s %11s %10s %9s\n", "backbone", "batch", "side", "mode",
              "step s", "samples/s", "peak RSS", "load");
  auto row = [&](int depth, int batch, int side, const char* mode) {
    const ChildResult r =
        run_child({exe.string(), "--child-train", "simclr", mode, std::to_string(iters),
                   std::to_string(warmup), "5", "-", std::to_string(batch), std::to_string(side),
                   std::to_string(depth)},
                  {}, tmp);
    const std::string name = depth == 18 ? "ResNet-18 c" : "ResNet-50";
    try {
      const Json j = Json::parse(r.out, "child");
      const Steps st{numbers(j.find("step_times")), numbers(j.find("step_foreign"))};
      if (!r.ok()) throw ValueError("failed");
      std::printf("%-12s %6d %5d %-8s %9.2f %11.1f %7ld MB %9.2f\n", name.c_str(), batch, side,
                  mode, st.step_s(), batch / st.step_s(), r.maxrss_kb / 1024, st.max_foreign());
    } catch (const std::exception&) {
      std::printf("%-12s %6d %5d %-8s failed (status %d): %s\n", name.c_str(), batch, side, mode,
                  r.status, tail(r.err, 300).c_str());
    }
    std::fflush(stdout);
  };
  for (const char* mode : {"fp32", "bf16_cl"})
    for (int batch : {64, 128, 256, 512}) row(18, batch, 32, mode);
  for (const char* mode : {"fp32", "bf16_cl"})
    for (int side : {32, 64, 96, 224}) row(50, 32, side, mode);
  std::printf("\nResNet-18 c: the CIFAR stem (3x3 conv, no max-pool), as the main table; "
              "ResNet-50: the ImageNet stem; a sample is two views of side x side; load: the "
              "largest CPU other processes used during a timed step (cores)\n\n");

  // The loader: JPEG files (500x375) -> the SimCLR pipeline's two 224-px views.
  core::register_builtins();
  torch::set_num_threads(1);
  const fs::path dir = tmp / "jpeg";
  write_jpegs(dir, 64);
  std::printf("%-40s %10s\n", "DataLoader, SimCLR 224-px views of JPEGs", "images/s");
  for (int workers : {1, 2})
    std::printf("%-40s %10.1f\n", ("num_workers " + std::to_string(workers)).c_str(),
                loader_images_per_second(dir, workers));
  std::error_code ec;
  fs::remove_all(tmp, ec);
  return 0;
}

} // namespace

int main(int argc, char** argv) try {
  const fs::path exe = fs::canonical("/proc/self/exe");
  std::vector<std::string> args(argv + 1, argv + argc);
  auto value = [&](size_t& i) -> std::string {
    if (i + 1 >= args.size()) throw ValueError(args[i] + ": expected a value after it");
    return args[++i];
  };
  if (!args.empty() && args[0] == "--child-train") {
    if (args.size() != 7 && args.size() != 10)
      throw ValueError(
          "--child-train ALGO MODE ITERS WARMUP QUIET_WAIT PROFILE|- [BATCH SIDE DEPTH]");
    Work work;
    if (args.size() == 10) work = {std::stoi(args[7]), std::stoi(args[8]), std::stoi(args[9])};
    return train_child(args[1], args[2], std::stoi(args[3]), std::stoi(args[4]), std::stod(args[5]),
                       args[6] == "-" ? "" : args[6], work);
  }
  if (!args.empty() && args[0] == "--scaling") return scaling_table(args);
  if (!args.empty() && args[0] == "--child-augment") {
    // One augmentation figure alone (for profiling): `32` (in-memory arrays) or `jpeg DIR` (N
    // files written there first, then read back through ImageFolder).
    if (args.size() < 2 || (args[1] != "32" && args[1] != "jpeg") ||
        (args[1] == "jpeg" && args.size() != 4) || (args[1] == "32" && args.size() != 2))
      throw ValueError("--child-augment 32 | --child-augment jpeg DIR N_FILES");
    core::register_builtins();
    torch::set_num_threads(1);
    double per_s = 0;
    if (args[1] == "32") {
      per_s = augment_32_per_second();
    } else {
      write_jpegs(args[2], std::stoi(args[3]));
      per_s = augment_jpeg_per_second(args[2]);
    }
    std::printf("%.1f img/s\n", per_s);
    return 0;
  }
  if (!args.empty() && args[0] == "--child-extract") {
    if (args.size() != 3) throw ValueError("--child-extract PRECISION ROOT");
    return extract_child(args[1], args[2]);
  }
  Options o;
  if (const char* e = std::getenv("SELFSUP_BENCH_MMSELFSUP")) o.mmselfsup = e;
  if (const char* e = std::getenv("SELFSUP_BENCH_ANCHORS")) o.anchors = e;
  for (size_t i = 0; i < args.size(); ++i) {
    const std::string& a = args[i];
    if (a == "--iters") {
      o.iters = std::max(1, std::stoi(value(i)));
    } else if (a == "--warmup") {
      o.warmup = std::max(1, std::stoi(value(i)));
    } else if (a == "--algos") {
      o.algos.clear();
      std::stringstream ss(value(i));
      for (std::string s; std::getline(ss, s, ',');) o.algos.push_back(s);
    } else if (a == "--quiet-wait") {
      o.quiet_wait = std::stod(value(i));
    } else if (a == "--mmselfsup") {
      o.mmselfsup = value(i);
    } else if (a == "--anchors") {
      o.anchors = value(i);
    } else if (a == "--python") {
      o.python = value(i);
    } else if (a == "--no-python") {
      o.no_python = true;
    } else if (a == "--jpeg-images") {
      o.jpeg_images = std::max(1, std::stoi(value(i)));
    } else if (a == "--profile") {
      o.profile = value(i);
    } else if (a == "--extract-images") {
      o.extract_images = std::max(0, std::stoi(value(i)));
    } else {
      throw ValueError("unknown option " + a +
                       " (--iters, --warmup, --algos, --quiet-wait, --mmselfsup, --anchors, "
                       "--python, --no-python, --jpeg-images, --profile, --extract-images)");
    }
  }
  for (const auto& a : o.algos) (void)model_config(a); // an unknown name fails now

  const fs::path tmp = fs::temp_directory_path() / ("selfsup_bench_" + std::to_string(getpid()));
  fs::create_directories(tmp);
  const fs::path scripts = SELFSUP_BENCH_DIR;
  const std::map<std::string, std::string> py_env = {
      {"PYTHONPATH", o.mmselfsup + (o.anchors.empty() ? "" : ":" + o.anchors)},
      {"MMCV_WITH_OPS", "0"},
      {"QUIET_WAIT", std::to_string(o.quiet_wait)},
      {"PYTHONDONTWRITEBYTECODE", "1"}};

  // Which references can run here.
  bool have_torch = false, have_mm = false;
  std::string why_no_mm;
  if (!o.no_python) {
    const ChildResult t = run_child({o.python, "-c", "import torch"}, py_env, tmp);
    have_torch = t.ok();
    if (have_torch && !o.mmselfsup.empty() && !o.anchors.empty()) {
      const ChildResult m = run_child({o.python, "-c", "import mmselfsup, mmengine"}, py_env, tmp);
      have_mm = m.ok() && fs::exists(fs::path(o.anchors) / "bench_train.py") &&
                fs::exists(fs::path(o.anchors) / "bench_data.py");
      if (!have_mm) why_no_mm = "MMSelfSup does not import or the anchors lack bench_*.py";
    } else if (have_torch) {
      why_no_mm = "no --mmselfsup PYTHONPATH and --anchors DIR (or SELFSUP_BENCH_MMSELFSUP, "
                  "SELFSUP_BENCH_ANCHORS)";
    }
  }

  std::printf("selfsup bench: 2 compute threads, batch %d, %d timed steps after %d warm-up "
              "steps per row; every ratio is from this run\n",
              kBatch, o.iters, o.warmup);
  if (o.no_python || !have_torch)
    std::printf("no Python with torch (%s): selfsup's own figures only, no ratios\n",
                o.no_python ? "--no-python" : (o.python + " cannot import torch").c_str());
  else if (!have_mm)
    std::printf("no MMSelfSup (%s): ratios against the plain-PyTorch reference only\n",
                why_no_mm.c_str());
  std::printf("machine: %s",
              [] {
                std::ifstream f("/proc/loadavg");
                std::string a, b, c;
                f >> a >> b >> c;
                return "load average " + a + " " + b + " " + c + "\n";
              }()
                  .c_str());
  std::printf("\n");
  std::fflush(stdout);

  std::printf("%-40s %12s\n", "start-up (`selfsup list`, median of 5)", "");
  const double startup = startup_seconds(exe.parent_path() / "selfsup", tmp);
  std::printf("%-40s %9.3f s\n\n", "  selfsup", startup);

  core::register_builtins();
  core::PluginLoader loader;
  loader.load_default_locations({});
  torch::set_num_threads(1);

  // Augmentation, one core: selfsup, MMSelfSup, selfsup again (the mean of the two).
  std::printf("%-40s %12s %10s\n", "augmentation, 1 process (img/s)", "img/s", "selfsup/mm");
  const double aug_a = augment_32_per_second();
  std::optional<double> mm_aug;
  if (have_mm) {
    const ChildResult r =
        run_child({o.python, (fs::path(o.anchors) / "bench_data.py").string(), "--n", "1024",
                   "--workers", "0", "--json", (tmp / "data.json").string()},
                  py_env, tmp);
    const auto j = read_json_file(tmp / "data.json");
    if (r.ok() && j && j->find("single_process_img_per_s"))
      mm_aug = j->find("single_process_img_per_s")->as_number();
    else
      std::printf("  MMSelfSup bench_data.py failed: %s\n", tail(r.err).c_str());
  }
  const double aug = 0.5 * (aug_a + augment_32_per_second());
  auto aug_row = [](const char* what, double v, std::optional<double> ref) {
    char r[32] = "-";
    if (ref) std::snprintf(r, sizeof r, "%.2fx", v / *ref);
    std::printf("%-40s %12.0f %10s\n", what, v, r);
  };
  aug_row("  selfsup: SimCLR 32x32 arrays", aug, mm_aug);
  if (mm_aug) aug_row("  MMSelfSup 1.0: same pipeline", *mm_aug, std::nullopt);
  std::fflush(stdout);

  write_jpegs(tmp / "jpeg", o.jpeg_images);
  const double jpeg_a = augment_jpeg_per_second(tmp / "jpeg");
  std::optional<double> mm_jpeg;
  if (have_mm) {
    const ChildResult r =
        run_child({o.python, (scripts / "mmselfsup_jpeg.py").string(), "--root",
                   (tmp / "jpeg").string(), "--json", (tmp / "jpeg.json").string()},
                  py_env, tmp);
    const auto j = read_json_file(tmp / "jpeg.json");
    if (r.ok() && j && j->find("img_per_s"))
      mm_jpeg = j->find("img_per_s")->as_number();
    else
      std::printf("  MMSelfSup JPEG pipeline failed: %s\n", tail(r.err).c_str());
  }
  const double jpeg = 0.5 * (jpeg_a + augment_jpeg_per_second(tmp / "jpeg"));
  aug_row("  selfsup: JPEG 500x375 -> 224 views", jpeg, mm_jpeg);
  if (mm_jpeg) aug_row("  MMSelfSup 1.0: same files, its pipeline", *mm_jpeg, std::nullopt);
  std::printf("\n");

  // Training steps: per algorithm MMSelfSup (fp32), then selfsup's three modes, then (SimCLR)
  // the plain-PyTorch reference's two; each in its own process.
  std::printf("%-40s %9s %11s %8s %6s %10s %10s\n", "training step (ResNet-18 CIFAR, b256)",
              "samples/s", "peak RSS", "clean", "load", "vs mm fp32", "vs plain");
  std::fflush(stdout);
  for (const auto& algo : o.algos) {
    Figure mm;
    if (have_mm) {
      // SwAV multi-crop through bench/mmselfsup_swav.py (bench_train.py times 2 crops only).
      const fs::path jf = tmp / ("train_" + algo + ".json");
      std::vector<std::string> argv = {o.python, (fs::path(o.anchors) / "bench_train.py").string(),
                                       "--algos", algo};
      if (algo == "swav")
        argv = {o.python, (scripts / "mmselfsup_swav.py").string(), "--small",
                std::to_string(kSwAVSmall)};
      for (const std::string& a :
           {std::string("--iters"), std::to_string(o.iters), std::string("--warmup"),
            std::to_string(o.warmup), std::string("--json"), jf.string()})
        argv.push_back(a);
      const ChildResult r = run_child(argv, py_env, tmp);
      const auto j = read_json_file(jf);
      if (r.ok() && j && j->find("rows") && j->find("rows")->size() == 1) {
        const Json& row = j->find("rows")->at(0);
        Steps st{numbers(row.find("step_times")), numbers(row.find("step_foreign"))};
        mm = figure_of(st, r.maxrss_kb, row.find("last_loss")->as_number());
      } else {
        mm = failed("MMSelfSup bench_train.py", r);
      }
      print_row("MMSelfSup 1.0 " + algo + " fp32", mm, "1.00x", "");
    }
    std::map<std::string, Figure> plain;
    if (have_torch && algo == "simclr") {
      for (const char* mode : {"fp32", "bf16_cl"}) {
        const fs::path jf = tmp / (std::string("plain_") + mode + ".json");
        const ChildResult r =
            run_child({o.python, (scripts / "plain_reference.py").string(), "--mode", mode,
                       "--iters", std::to_string(o.iters), "--warmup", std::to_string(o.warmup),
                       "--quiet-wait", std::to_string(o.quiet_wait), "--json", jf.string()},
                      py_env, tmp);
        const auto j = read_json_file(jf);
        if (r.ok() && j) {
          Steps st{numbers(j->find("step_times")), numbers(j->find("step_foreign"))};
          plain[mode] = figure_of(st, r.maxrss_kb, j->find("loss")->as_number());
        } else {
          plain[mode] = failed("plain_reference.py", r);
        }
        print_row(std::string("plain PyTorch simclr ") + mode, plain[mode], ratio(plain[mode], mm),
                  "1.00x");
      }
    }
    for (const char* mode : {"fp32", "fp32_cl", "bf16_cl"}) {
      const std::string prof = o.profile.empty() || std::string(mode) != "bf16_cl"
                                   ? "-"
                                   : o.profile + "." + algo + ".json";
      const ChildResult r =
          run_child({exe.string(), "--child-train", algo, mode, std::to_string(o.iters),
                     std::to_string(o.warmup), std::to_string(o.quiet_wait), prof},
                    {}, tmp);
      Figure f;
      try {
        const Json j = Json::parse(r.out, "child");
        Steps st{numbers(j.find("step_times")), numbers(j.find("step_foreign"))};
        f = r.ok() ? figure_of(st, r.maxrss_kb, j.find("loss")->as_number()) : failed("selfsup", r);
      } catch (const std::exception&) {
        f = failed("selfsup " + algo + " " + mode, r);
      }
      const auto p = plain.find(mode); // fp32 against fp32, bf16_cl against bf16_cl
      print_row("selfsup " + algo + " " + mode, f, ratio(f, mm),
                p == plain.end() ? "" : ratio(f, p->second));
    }
  }
  std::printf("\nsamples/s: batch / median step time over the clean steps (others used < %.2f "
              "core; 'clean' counts them, 'load' is the largest foreign load of a step in cores);"
              "\npeak RSS: the process's ru_maxrss; fp32_cl: channels-last; bf16_cl: "
              "AmpOptimWrapper bf16 autocast + channels-last; a swav sample is 2 crops of 32x32 "
              "+ 6 of %dx%d\n",
              kDirty, kSwAVSmall, kSwAVSmall);
  if (o.extract_images > 0)
    extraction_section(exe, tmp, o.extract_images, o.python, have_torch && !o.no_python,
                       o.mmselfsup, py_env);
  std::error_code ec;
  fs::remove_all(tmp, ec);
  return 0;
} catch (const std::exception& e) {
  std::fprintf(stderr, "selfsup_bench: %s\n", e.what());
  return 1;
}
