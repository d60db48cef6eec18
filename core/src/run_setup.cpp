#include "run_setup.h"

#include <cstdlib>

#include <algorithm>
#include <ctime>
#include <filesystem>
#include <fstream>
#include <functional>
#include <regex>
#include <thread>

#include <torch/cuda.h>
#include <torch/torch.h>

#include <selfsup/core/data.h>
#include <selfsup/core/optim_wrapper.h>
#include <selfsup/dist.h>
#include <selfsup/errors.h>
#include <selfsup/registry.h>

#include "dist_c10d.h"

namespace fs = std::filesystem;

namespace selfsup::core {

namespace {

using namespace selfsup::check;

// Rejects an always-on hook entry of another type.
void expect_type(const std::optional<AlwaysOnHookOptions>& hook, const char* key,
                 const std::string& type, const Config& cfg) {
  if (hook && hook->type != type)
    cfg[key].fail_key("type", "expected '" + type + "', got '" + hook->type + "'");
}

} // namespace

OptionTable<RandomnessOptions> RandomnessOptions::table() {
  using O = RandomnessOptions;
  return OptionTable<O>("randomness", O())
      .optional("seed", &O::seed, "the run's seed", ge(0))
      .optional("deterministic", &O::deterministic, "accepted: CPU kernels here are deterministic")
      .optional("diff_rank_seed", &O::diff_rank_seed,
                "accepted: per-sample seeds already differ by sample index");
}

OptionTable<MpOptions> MpOptions::table() {
  using O = MpOptions;
  return OptionTable<O>("env_cfg.mp_cfg (MMEngine's multi-processing settings)", O())
      .optional("mp_start_method", &O::mp_start_method,
                "accepted, no effect: the loader's workers are threads, not processes",
                one_of({"fork", "spawn", "forkserver"}))
      .optional("opencv_num_threads", &O::opencv_num_threads,
                "OpenCV's own threads: 0 only (the loader turns them off, as MMSelfSup's "
                "configs ask)",
                one_of({0}));
}

OptionTable<DistOptions> DistOptions::table() {
  using O = DistOptions;
  return OptionTable<O>("env_cfg.dist_cfg (MMEngine's distributed settings)", O())
      .optional("backend", &O::backend,
                "the c10d backend of a distributed run (default: gloo on CPU, nccl on CUDA)",
                one_of({"nccl", "gloo"}))
      .optional("timeout", &O::timeout,
                "seconds the rendezvous and each collective wait for the other ranks before "
                "failing (default 1800)",
                gt(0.0));
}

OptionTable<EnvOptions> EnvOptions::table() {
  using O = EnvOptions;
  return OptionTable<O>("env_cfg", O())
      .optional("channels_last", &O::channels_last,
                "NHWC conv weights and inputs (1.2-1.3x faster ResNet steps with oneDNN)")
      .optional("cudnn_benchmark", &O::cudnn_benchmark,
                "cuDNN picks the fastest convolution algorithms (torch.backends.cudnn.benchmark)")
      .optional("mp_cfg", &O::mp_cfg, "{mp_start_method, opencv_num_threads}")
      .optional("dist_cfg", &O::dist_cfg, "{backend, timeout}");
}

OptionTable<AutoScaleLrOptions> AutoScaleLrOptions::table() {
  using O = AutoScaleLrOptions;
  return OptionTable<O>("auto_scale_lr (MMEngine)", O())
      .required("base_batch_size", &O::base_batch_size,
                "the total batch size the config's lr was tuned for", gt(0))
      .optional("enable", &O::enable,
                "false only: the lr is the config's (scale optimizer.lr by batch size / "
                "base_batch_size yourself)",
                one_of({false}));
}

OptionTable<LoggerHookOptions> LoggerHookOptions::table() {
  using O = LoggerHookOptions;
  return OptionTable<O>("LoggerHook: progress on a terminal, plain lines otherwise", O())
      .required("type", &O::type, "LoggerHook", one_of({"LoggerHook"}))
      .optional("interval", &O::interval, "iterations between log lines", gt(0));
}

OptionTable<AlwaysOnHookOptions> AlwaysOnHookOptions::table() {
  using O = AlwaysOnHookOptions;
  return OptionTable<O>("a behaviour the runner always has", O())
      .required("type", &O::type, "the MMEngine hook type of this entry");
}

OptionTable<DefaultHooksOptions> DefaultHooksOptions::table() {
  using O = DefaultHooksOptions;
  return OptionTable<O>("MMEngine's default hooks", O())
      .optional("logger", &O::logger, "{type: LoggerHook, interval}")
      .optional("checkpoint", &O::checkpoint, "a CheckpointHook dict (built)")
      .component("hook")
      .optional("runtime_info", &O::runtime_info, "{type: RuntimeInfoHook} (always on)")
      .optional("timer", &O::timer, "{type: IterTimerHook} (always on)")
      .optional("param_scheduler", &O::param_scheduler, "{type: ParamSchedulerHook} (always on)")
      .optional("sampler_seed", &O::sampler_seed, "{type: DistSamplerSeedHook} (always on)")
      .optional("visualization", &O::visualization, "{type: VisualizationHook} (always on)")
      .rule([](const O& o, const Config& cfg) {
        expect_type(o.runtime_info, "runtime_info", "RuntimeInfoHook", cfg);
        expect_type(o.timer, "timer", "IterTimerHook", cfg);
        expect_type(o.param_scheduler, "param_scheduler", "ParamSchedulerHook", cfg);
        expect_type(o.sampler_seed, "sampler_seed", "DistSamplerSeedHook", cfg);
        expect_type(o.visualization, "visualization", "VisualizationHook", cfg);
      });
}

OptionTable<RunnerKeys> RunnerKeys::table() {
  using O = RunnerKeys;
  return OptionTable<O>("The top-level keys of a training config (MMEngine's Runner arguments).",
                        O())
      .required("model", &O::model, "the algorithm (a registered algorithm type)")
      .component("algorithm")
      .required("train_dataloader", &O::train_dataloader, "the training dataloader")
      .nested(DataLoader::schema())
      .required("train_cfg", &O::train_cfg,
                "the train loop: {type: EpochBasedTrainLoop, max_epochs} or "
                "{type: IterBasedTrainLoop, max_iters}")
      .component("train_loop")
      .required("optim_wrapper", &O::optim_wrapper, "the optimizer wrapper and its optimizer")
      .nested(OptimWrapperOptions::table().schema())
      .optional("param_scheduler", &O::param_scheduler, "a scheduler dict or a list of them")
      .component("param_scheduler")
      .optional("default_hooks", &O::default_hooks,
                "logger and checkpoint (built); runtime_info, timer, param_scheduler, "
                "sampler_seed, visualization (always on: type-checked)")
      .optional("custom_hooks", &O::custom_hooks, "further hooks, a list of hook dicts")
      .as(ArgType::List)
      .component("hook")
      .optional("randomness", &O::randomness, "{seed, deterministic, diff_rank_seed}")
      .optional("work_dir", &O::work_dir,
                "where logs and checkpoints go (default work_dirs/<config name>)")
      .optional("resume", &O::resume,
                "true or 'auto' for the work dir's last checkpoint, or a checkpoint path",
                existing_file({"auto"}))
      .optional("load_from", &O::load_from, "initial weights (a checkpoint path)", existing_file())
      .optional("plugins", &O::plugins, "plugin names or .so paths the config needs")
      .optional("env_cfg", &O::env_cfg, "{channels_last, cudnn_benchmark, mp_cfg, dist_cfg}")
      .optional("default_scope", &O::default_scope,
                "accepted, no effect: bare type names follow MMSelfSup; another scope's type is "
                "written with its scope ('mmcls.ResNet')",
                one_of({"mmselfsup"}))
      .optional("log_level", &O::log_level,
                "accepted, no effect: the log shows progress, notes and warnings",
                one_of({"DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"}))
      .optional("launcher", &O::launcher,
                "'none': one process; 'pytorch': join the ranks torchrun's environment "
                "variables describe (selfsup launch sets them); default: 'pytorch' when "
                "WORLD_SIZE > 1 is set, else 'none'",
                one_of({"none", "pytorch"}))
      .optional("visualizer", &O::visualizer,
                "accepted, no effect: scalars go to <work_dir>/scalars.jsonl")
      .optional("vis_backends", &O::vis_backends,
                "accepted, no effect: scalars go to <work_dir>/scalars.jsonl")
      .optional(
          "log_processor", &O::log_processor,
          "accepted, no effect: the log has its own format (a progress bar on a terminal, "
          "plain lines every default_hooks.logger.interval, every iteration in scalars.jsonl)")
      .optional("auto_scale_lr", &O::auto_scale_lr, "{base_batch_size, enable: false}")
      .optional("find_unused_parameters", &O::find_unused_parameters,
                "accepted, no effect: gradients are averaged over the ranks by the optimizer "
                "wrapper, a parameter without a gradient on a rank counting as zero there")
      .rule([](const O& o, const Config& cfg) {
        if (o.param_scheduler && !o.param_scheduler->is_object() && !o.param_scheduler->is_array())
          cfg.fail_key("param_scheduler", "expected a scheduler dict or a list of them, got " +
                                              describe_value(*o.param_scheduler));
        if (o.resume && !o.resume->is_bool() && !o.resume->is_string())
          cfg.fail_key("resume", "expected true/false, 'auto' or a checkpoint path, got " +
                                     describe_value(*o.resume));
        for (const auto* v : {&o.visualizer, &o.log_processor})
          if (*v && !(*v)->is_object() && !(*v)->is_null())
            cfg.fail_key(v == &o.visualizer ? "visualizer" : "log_processor",
                         "expected a dict, got " + describe_value(**v));
        if (o.vis_backends && !o.vis_backends->is_array() && !o.vis_backends->is_null())
          cfg.fail_key("vis_backends",
                       "expected a list of dicts, got " + describe_value(*o.vis_backends));
      });
}

const std::vector<std::string>& runner_config_keys() {
  static const std::vector<std::string> keys = [] {
    std::vector<std::string> k;
    const Schema schema = RunnerKeys::table().schema(); // kept alive while iterating
    for (const auto& a : schema.args()) k.push_back(a.name);
    return k;
  }();
  return keys;
}

std::string resolve_work_dir(const RunnerKeys& keys, const TrainOptions& options) {
  if (!options.work_dir.empty()) return options.work_dir;
  if (keys.work_dir) return *keys.work_dir;
  return "work_dirs/" + options.config_name;
}

namespace {

// The checkpoint last_checkpoint names, resolved in the work dir ("" if it names none).
std::string named_checkpoint(const std::string& work_dir) {
  std::ifstream in(fs::path(work_dir) / "last_checkpoint");
  std::string line;
  if (!in || !std::getline(in, line) || line.empty()) return "";
  fs::path p(line);
  // Checkpoints live in the work dir: an absolute path (older runs wrote those) counts by its
  // file name, so a moved or copied work dir resumes from itself, not from the old folder.
  if (p.is_absolute()) p = p.filename();
  return (fs::path(work_dir) / p).string();
}

bool is_run_checkpoint(const std::string& name) {
  static const std::regex re(R"((epoch|iter)_\d+\.pth)");
  return std::regex_match(name, re);
}

// Why a checkpoint cannot be resumed from, or "" when it can.
std::string unusable(const std::string& path, std::optional<Checkpoint>& out) {
  try {
    Checkpoint c = load_checkpoint(path);
    for (const char* key : {"epoch", "iter"})
      if (!c.meta.find(key) || !c.meta.find(key)->is_int())
        return std::string("meta has no integer '") + key + "'";
    if (const std::string bad = first_nonfinite(c.state_dict); !bad.empty())
      return "weight " + bad + " is not finite";
    out = std::move(c);
    return "";
  } catch (const std::exception& e) {
    return e.what();
  }
}

} // namespace

std::string latest_checkpoint_in(const std::string& work_dir) {
  const std::string path = named_checkpoint(work_dir);
  std::error_code ec;
  return !path.empty() && fs::is_regular_file(path, ec) ? path : "";
}

ResumePoint resolve_resume(const RunnerKeys& keys, const TrainOptions& options,
                           const std::string& work_dir) {
  std::string resume = options.resume;
  // MMEngine: resume=True with a load_from resumes from load_from, without one from the work
  // dir's latest checkpoint.
  if (resume.empty() && keys.resume)
    resume = keys.resume->is_bool()
                 ? (keys.resume->as_bool() ? keys.load_from.value_or("auto") : "")
                 : keys.resume->as_string();
  ResumePoint point;
  if (resume.empty()) return point;
  if (resume != "auto") {
    point.path = resume;
    point.checkpoint = load_checkpoint(resume);
    return point;
  }
  // Candidates, most recent first: the one last_checkpoint names, then the others by time.
  std::vector<std::string> candidates;
  if (const std::string named = latest_checkpoint_in(work_dir); !named.empty())
    candidates.push_back(named);
  std::vector<std::pair<fs::file_time_type, std::string>> others;
  std::error_code ec;
  for (const auto& e : fs::directory_iterator(work_dir, ec)) {
    if (!e.is_regular_file(ec) || e.is_symlink(ec) ||
        !is_run_checkpoint(e.path().filename().string()))
      continue;
    const std::string path = e.path().string();
    if (!candidates.empty() && fs::equivalent(path, candidates.front(), ec)) continue;
    others.emplace_back(e.last_write_time(ec), path);
  }
  std::sort(others.begin(), others.end(), std::greater<>());
  for (auto& o : others) candidates.push_back(o.second);

  std::vector<std::string> passed;
  for (const auto& path : candidates) {
    const std::string why = unusable(path, point.checkpoint);
    if (why.empty()) {
      point.path = path;
      if (!passed.empty())
        point.notes.push_back("resume=auto: falling back to " + path +
                              ", the most recent usable "
                              "checkpoint (" +
                              std::to_string(passed.size()) + " newer one(s) passed over)");
      return point;
    }
    point.notes.push_back("resume=auto: cannot resume from " + path + ": " + why);
    passed.push_back(path);
  }
  point.notes.push_back("resume=auto: no usable checkpoint in " + work_dir + ", starting afresh");
  return point;
}

std::string merged_config_name(const std::string& work_dir, const TrainOptions& options) {
  const std::string name = options.config_name + ".json";
  std::error_code ec;
  if (!options.config_path.empty() &&
      fs::equivalent(fs::path(work_dir) / name, options.config_path, ec))
    return options.config_name + ".merged.json";
  return name;
}

std::vector<std::string> prepare_work_dir(const std::string& work_dir,
                                          std::optional<int64_t> resumed_iter,
                                          const std::string& merged_config) {
  std::vector<std::string> notes;
  fs::create_directories(work_dir);
  const fs::path dir(work_dir);
  static const std::regex orphan_re(R"((.+\.pth|.+\.json|scalars\.jsonl|last_checkpoint)\.tmp)");
  std::vector<fs::path> previous; // a previous run's files
  std::error_code ec;
  size_t orphans = 0;
  for (const auto& e : fs::directory_iterator(dir)) {
    const std::string name = e.path().filename().string();
    if (std::regex_match(name, orphan_re)) {
      if (fs::remove(e.path(), ec)) ++orphans; // a link is removed, never followed
    } else if (name == "scalars.jsonl" || name == "last_checkpoint" || name == "knn.json" ||
               name == "knn_random_init.json" || name == merged_config || is_run_checkpoint(name)) {
      previous.push_back(e.path());
    }
  }
  if (orphans > 0)
    notes.push_back("Removed " + std::to_string(orphans) +
                    " temp file(s) an interrupted write left in " + work_dir);

  const fs::path scalars = dir / "scalars.jsonl";
  refuse_symlink(scalars.string());
  if (!resumed_iter) {
    if (previous.empty()) return notes;
    char stamp[32];
    const std::time_t now = std::time(nullptr);
    std::tm tm{};
    gmtime_r(&now, &tm);
    std::strftime(stamp, sizeof stamp, "%Y%m%d_%H%M%S", &tm);
    fs::path aside = dir / (std::string("previous_run_") + stamp);
    for (int i = 2; fs::exists(fs::symlink_status(aside)); ++i)
      aside = dir / ("previous_run_" + std::string(stamp) + "_" + std::to_string(i));
    fs::create_directory(aside);
    for (const auto& p : previous) fs::rename(p, aside / p.filename());
    notes.push_back("A fresh run in a used work dir: the previous run's " +
                    std::to_string(previous.size()) + " file(s) moved to " + aside.string());
    return notes;
  }
  // Resumed: keep the records of the iterations the checkpoint holds, drop the rest (and a
  // line a kill cut short).
  if (!fs::exists(fs::symlink_status(scalars))) return notes;
  std::ifstream in(scalars);
  std::string kept, line;
  size_t dropped = 0;
  while (std::getline(in, line)) {
    bool keep = false;
    try {
      const Json rec = Json::parse(line, scalars.string());
      const Json* it = rec.find("iter");
      keep = it && it->is_int() && it->as_int() <= *resumed_iter;
    } catch (const std::exception&) {
    }
    if (keep) {
      kept += line + "\n";
    } else {
      ++dropped;
    }
  }
  in.close();
  if (dropped > 0) {
    write_file_atomic(scalars.string(), kept);
    notes.push_back("scalars.jsonl: dropped " + std::to_string(dropped) +
                    " record(s) after iteration " + std::to_string(*resumed_iter) +
                    " (run again from the checkpoint)");
  }
  return notes;
}

uint64_t resolve_seed(const RunnerKeys& keys, const TrainOptions& options) {
  if (options.seed) return *options.seed;
  return keys.randomness ? uint64_t(keys.randomness->seed) : 0;
}

Environment setup_environment(const RunnerKeys& keys, const TrainOptions& options) {
  Environment env;
  env.channels_last = keys.env_cfg && keys.env_cfg->channels_last;
  at::globalContext().setBenchmarkCuDNN(keys.env_cfg && keys.env_cfg->cudnn_benchmark);
  if (options.device == "cuda") {
    if (!torch::cuda::is_available())
      throw ConfigError("--device cuda: CUDA is not available in this LibTorch build or machine");
    env.device = torch::Device(torch::kCUDA);
  } else if (options.device != "cpu") {
    throw ConfigError("--device: expected cpu or cuda, got '" + options.device + "'");
  }
  // Bounded by the machine (some oversubscription allowed): a typo such as 100000 would
  // otherwise spend minutes creating threads.
  const int cores = std::max(1, int(std::thread::hardware_concurrency()));
  const int most = 4 * cores;
  if (options.threads > most)
    throw ConfigError("--threads: expected at most " + std::to_string(most) + " (4 per core; " +
                      std::to_string(cores) + " cores here), got " +
                      std::to_string(options.threads));
  env.threads = options.threads > 0 ? options.threads : cores;
  torch::set_num_threads(env.threads);
  return env;
}

std::shared_ptr<Distributed> setup_distributed(const RunnerKeys& keys, const TrainOptions& options,
                                               torch::Device device,
                                               std::vector<std::string>& notes) {
  std::string launcher = options.launcher;
  if (launcher.empty() && keys.launcher) launcher = *keys.launcher;
  if (launcher.empty()) {
    const char* ws = std::getenv("WORLD_SIZE");
    launcher = ws && std::atoi(ws) > 1 ? "pytorch" : "none";
    if (launcher == "pytorch")
      notes.push_back("WORLD_SIZE=" + std::string(ws) +
                      " in the environment: launcher 'pytorch' (set launcher='none' to train "
                      "in one process)");
  }
  if (launcher != "none" && launcher != "pytorch")
    throw ConfigError("--launcher: expected 'none' or 'pytorch', got '" + launcher + "'");
  if (launcher == "none") return nullptr;

  const DistEnv env = dist_env_from_environment();
  DistOptions o;
  if (keys.env_cfg && keys.env_cfg->dist_cfg) o = *keys.env_cfg->dist_cfg;
  if (o.backend && *o.backend == "nccl" && !c10d_has_nccl()) {
    // MMSelfSup's configs all say nccl: on a build without it they run on Gloo, said so.
    notes.push_back("env_cfg.dist_cfg.backend 'nccl': this LibTorch has no NCCL (a CPU build); "
                    "using gloo");
    o.backend = "gloo";
  }
  const auto timeout = std::chrono::milliseconds(int64_t(o.timeout * 1000.0));
  std::shared_ptr<Distributed> d =
      make_c10d(env, o.backend.value_or(""), timeout, device.is_cuda());
  if (options.threads == 0 && env.local_world_size > 1) {
    // As torchrun's OMP_NUM_THREADS: the local ranks share the cores instead of each taking all.
    const int cores = std::max(1, int(std::thread::hardware_concurrency()));
    torch::set_num_threads(std::max(1, cores / env.local_world_size));
  }
  set_dist(d);
  return d;
}

HookSet build_hooks(const RunnerKeys& keys) {
  HookSet set;
  if (keys.default_hooks) {
    if (keys.default_hooks->logger) set.log_interval = keys.default_hooks->logger->interval;
    if (keys.default_hooks->checkpoint)
      set.hooks.push_back(build<Hook>(*keys.default_hooks->checkpoint));
  }
  if (keys.custom_hooks)
    for (size_t i = 0; i < keys.custom_hooks->size(); ++i)
      set.hooks.push_back(build<Hook>(keys.custom_hooks->at(i)));
  std::stable_sort(set.hooks.begin(), set.hooks.end(),
                   [](const auto& a, const auto& b) { return a->priority() < b->priority(); });
  return set;
}

} // namespace selfsup::core
