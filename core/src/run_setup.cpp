#include "run_setup.h"

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <thread>

#include <torch/cuda.h>
#include <torch/torch.h>

#include <selfsup/errors.h>
#include <selfsup/registry.h>

namespace fs = std::filesystem;

namespace selfsup::core {

namespace {

// The default_hooks entries whose behaviour the runner always has: type-checked only.
const std::vector<std::pair<std::string, std::string>>& fixed_default_hooks() {
  static const std::vector<std::pair<std::string, std::string>> fixed{
      {"runtime_info", "RuntimeInfoHook"},
      {"timer", "IterTimerHook"},
      {"param_scheduler", "ParamSchedulerHook"},
      {"sampler_seed", "DistSamplerSeedHook"},
      {"visualization", "VisualizationHook"}};
  return fixed;
}

Config checked(const Schema& schema, const Config& cfg) {
  return cfg.derive(schema.apply(cfg), cfg.path());
}

void expect_type(const Config& cfg, const std::string& type) {
  const std::string t = cfg.get<std::string>("type");
  if (t != type) cfg.fail_key("type", "expected '" + type + "', got '" + t + "'");
}

} // namespace

const Schema& runner_schema() {
  static const Schema schema =
      Schema("The top-level keys of a training config (MMEngine's Runner arguments).")
          .required("model", ArgType::Dict, "the algorithm (a registered algorithm type)")
          .required("train_dataloader", ArgType::Dict, "the training dataloader")
          .required("train_cfg", ArgType::Dict,
                    "the train loop: {type: EpochBasedTrainLoop, max_epochs} or "
                    "{type: IterBasedTrainLoop, max_iters}")
          .required("optim_wrapper", ArgType::Dict, "the optimizer wrapper and its optimizer")
          .optional("param_scheduler", ArgType::Any, Json(), "a scheduler dict or a list of them")
          .optional("default_hooks", ArgType::Dict, Json(),
                    "MMEngine's default hooks: logger, checkpoint (built); runtime_info, timer, "
                    "param_scheduler, sampler_seed, visualization (always on: type-checked)")
          .optional("custom_hooks", ArgType::List, Json(), "further hooks, each a hook dict")
          .optional("randomness", ArgType::Dict, Json(), "{seed, deterministic, diff_rank_seed}")
          .optional("work_dir", ArgType::String, Json(),
                    "where logs and checkpoints go (default work_dirs/<config name>)")
          .optional("resume", ArgType::Any, Json(),
                    "true/'auto' for the work dir's last checkpoint, or a checkpoint path")
          .optional("load_from", ArgType::String, Json(), "initial weights (a checkpoint path)")
          .optional("plugins", ArgType::StringList, Json(),
                    "plugin names or .so paths the config needs")
          .optional("env_cfg", ArgType::Dict, Json(), "{channels_last}");
  return schema;
}

const std::vector<std::string>& runner_config_keys() {
  static const std::vector<std::string> keys = [] {
    std::vector<std::string> k;
    for (const auto& a : runner_schema().args()) k.push_back(a.name);
    return k;
  }();
  return keys;
}

std::string resolve_work_dir(const Config& cfg, const TrainOptions& options) {
  if (!options.work_dir.empty()) return options.work_dir;
  if (cfg.has("work_dir")) return cfg.get<std::string>("work_dir");
  return "work_dirs/" + options.config_name;
}

std::string latest_checkpoint_in(const std::string& work_dir) {
  std::ifstream in(fs::path(work_dir) / "last_checkpoint");
  std::string path;
  if (in && std::getline(in, path) && fs::is_regular_file(path)) return path;
  return "";
}

std::string resolve_resume(const Config& cfg, const TrainOptions& options,
                           const std::string& work_dir, std::string* note) {
  std::string resume = options.resume;
  if (resume.empty() && cfg.has("resume")) {
    const Config r = cfg["resume"];
    if (r.json().is_bool()) {
      if (r.as<bool>()) resume = "auto";
    } else if (r.json().is_string()) {
      resume = r.as<std::string>();
    } else {
      r.fail("expected true/false, 'auto' or a checkpoint path, got " + describe_value(r.json()));
    }
  }
  if (resume == "auto") {
    resume = latest_checkpoint_in(work_dir);
    if (resume.empty() && note)
      *note = "resume=auto: no checkpoint in " + work_dir + ", starting afresh";
  }
  return resume;
}

uint64_t resolve_seed(const Config& cfg, const TrainOptions& options) {
  static const Schema randomness =
      Schema("randomness")
          .optional("seed", ArgType::Int, 0, "the run's seed")
          .optional("deterministic", ArgType::Bool, false,
                    "accepted: CPU kernels here are deterministic")
          .optional("diff_rank_seed", ArgType::Bool, false,
                    "accepted: per-sample seeds already differ by sample index");
  uint64_t seed = 0;
  if (cfg.has("randomness"))
    seed = uint64_t(checked(randomness, cfg["randomness"]).get<int64_t>("seed"));
  if (options.seed) seed = *options.seed;
  return seed;
}

Environment setup_environment(const Config& cfg, const TrainOptions& options) {
  static const Schema env_cfg = Schema("env_cfg").optional(
      "channels_last", ArgType::Bool, false, "NHWC conv weights and inputs (faster with oneDNN)");
  Environment env;
  if (cfg.has("env_cfg"))
    env.channels_last = checked(env_cfg, cfg["env_cfg"]).get<bool>("channels_last");
  if (options.device == "cuda") {
    if (!torch::cuda::is_available())
      throw ConfigError("--device cuda: CUDA is not available in this LibTorch build or machine");
    env.device = torch::Device(torch::kCUDA);
  } else if (options.device != "cpu") {
    throw ConfigError("--device: expected cpu or cuda, got '" + options.device + "'");
  }
  env.threads =
      std::max(1, options.threads > 0 ? options.threads : int(std::thread::hardware_concurrency()));
  torch::set_num_threads(env.threads);
  return env;
}

HookSet build_hooks(const Config& cfg) {
  static const Schema default_hooks = [] {
    Schema s("default_hooks");
    s.optional("logger", ArgType::Dict, Json(), "{type: LoggerHook, interval}");
    s.optional("checkpoint", ArgType::Dict, Json(), "a CheckpointHook dict");
    for (const auto& [key, type] : fixed_default_hooks())
      s.optional(key, ArgType::Dict, Json(), "{type: " + type + "} (always on)");
    return s;
  }();
  static const Schema logger =
      Schema("LoggerHook")
          .required("type", ArgType::String, "LoggerHook")
          .optional("interval", ArgType::Int, 50, "iterations between log lines, > 0");
  static const Schema fixed = Schema("an always-on hook").required("type", ArgType::String, "");

  HookSet set;
  if (cfg.has("default_hooks")) {
    const Config dh = checked(default_hooks, cfg["default_hooks"]);
    for (const auto& [key, type] : fixed_default_hooks())
      if (dh.has(key)) expect_type(checked(fixed, dh[key]), type);
    if (dh.has("logger")) {
      const Config lg = checked(logger, dh["logger"]);
      expect_type(lg, "LoggerHook");
      set.log_interval = lg.get<int64_t>("interval");
      if (set.log_interval <= 0) lg.fail_key("interval", "expected > 0");
    }
    if (dh.has("checkpoint")) set.hooks.push_back(build<Hook>(dh["checkpoint"]));
  }
  if (cfg.has("custom_hooks")) {
    const Config ch = cfg["custom_hooks"];
    for (size_t i = 0; i < ch.size(); ++i) set.hooks.push_back(build<Hook>(ch.at(i)));
  }
  std::stable_sort(set.hooks.begin(), set.hooks.end(),
                   [](const auto& a, const auto& b) { return a->priority() < b->priority(); });
  return set;
}

} // namespace selfsup::core
