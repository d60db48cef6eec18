#pragma once
// The parts of setting up a run, one job each (MMEngine's Runner delegates the same way):
// the declared top-level keys, the work dir, what to resume, randomness, the environment
// (device, threads, memory format) and the hooks.
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include <torch/types.h>

#include <selfsup/config.h>
#include <selfsup/core/checkpoint.h>
#include <selfsup/core/runner.h>
#include <selfsup/dist.h>
#include <selfsup/interfaces/training.h>
#include <selfsup/json.h>
#include <selfsup/options.h>
#include <selfsup/schema.h>

namespace selfsup::core {

/// `randomness`.
struct RandomnessOptions {
  int64_t seed = 0;
  bool deterministic = false;  // accepted: CPU kernels here are deterministic
  bool diff_rank_seed = false; // accepted: per-sample seeds already differ by index
  static OptionTable<RandomnessOptions> table();
};

/// `env_cfg.mp_cfg` (MMEngine's multi-processing settings).
struct MpOptions {
  std::string mp_start_method = "fork"; // accepted: the loader's workers are threads
  int64_t opencv_num_threads = 0;       // 0 only: the loader turns OpenCV's threads off
  static OptionTable<MpOptions> table();
};

/// `env_cfg.dist_cfg`.
struct DistOptions {
  std::optional<std::string> backend; // absent: Gloo on CPU, NCCL on CUDA
  double timeout = 1800;              // seconds for the rendezvous and each collective
  static OptionTable<DistOptions> table();
};

/// `env_cfg`.
struct EnvOptions {
  bool channels_last = false;
  bool cudnn_benchmark = false;
  std::optional<MpOptions> mp_cfg;
  std::optional<DistOptions> dist_cfg;
  static OptionTable<EnvOptions> table();
};

/// `auto_scale_lr` (MMEngine: scales the optimizer's lr by the real batch size over
/// base_batch_size when `enable` is true, which only tools/train.py --auto-scale-lr sets).
struct AutoScaleLrOptions {
  int64_t base_batch_size = 0;
  bool enable = false;
  static OptionTable<AutoScaleLrOptions> table();
};

/// `default_hooks.logger`.
struct LoggerHookOptions {
  std::string type;
  int64_t interval = 50;
  static OptionTable<LoggerHookOptions> table();
};

/// A `default_hooks` entry whose behaviour the runner always has: only its type is checked.
struct AlwaysOnHookOptions {
  std::string type;
  static OptionTable<AlwaysOnHookOptions> table();
};

/// `default_hooks`.
struct DefaultHooksOptions {
  std::optional<LoggerHookOptions> logger;
  std::optional<Config> checkpoint;
  std::optional<AlwaysOnHookOptions> runtime_info, timer, param_scheduler, sampler_seed,
      visualization;
  static OptionTable<DefaultHooksOptions> table();
};

/// The runner's own top-level keys, declared once (MMEngine's Runner arguments): checked
/// (unknown, wrong type, out of range, missing) before anything is built.
struct RunnerKeys {
  Config model, train_dataloader, train_cfg, optim_wrapper;
  std::optional<Json> param_scheduler; // a dict or a list of dicts
  std::optional<DefaultHooksOptions> default_hooks;
  std::optional<Config> custom_hooks; // a list of hook dicts
  std::optional<RandomnessOptions> randomness;
  std::optional<std::string> work_dir;
  std::optional<Json> resume; // true/false, "auto" or a path
  std::optional<std::string> load_from;
  std::optional<std::vector<std::string>> plugins;
  std::optional<EnvOptions> env_cfg;
  // Keys MMSelfSup configs carry that change nothing here (docs/compatibility.md says why);
  // each is checked, so a value that would mean something else is refused.
  std::optional<std::string> default_scope, log_level, launcher;
  std::optional<Json> visualizer, vis_backends, log_processor;
  std::optional<AutoScaleLrOptions> auto_scale_lr;
  std::optional<bool> find_unused_parameters;
  static OptionTable<RunnerKeys> table();
};

/// The run's distributed context: for launcher 'pytorch' (--launcher, else cfg.launcher, else
/// 'pytorch' when the environment has WORLD_SIZE > 1) a c10d group joined from torchrun's
/// environment variables with env_cfg.dist_cfg's backend and timeout, installed as dist();
/// null for launcher 'none'. Without --threads, each of LOCAL_WORLD_SIZE local ranks gets
/// its share of the cores. Notes go to `notes`.
std::shared_ptr<Distributed> setup_distributed(const RunnerKeys& keys, const TrainOptions& options,
                                               torch::Device device,
                                               std::vector<std::string>& notes);

/// --work-dir, else cfg.work_dir, else work_dirs/<config name>.
std::string resolve_work_dir(const RunnerKeys& keys, const TrainOptions& options);

/// What a run resumes from.
struct ResumePoint {
  std::string path;                     // "" for a fresh run
  std::optional<Checkpoint> checkpoint; // loaded (and its checksum checked) when resuming
  std::vector<std::string> notes;       // for the log
};

/// The checkpoint to resume from: --resume, else cfg.resume (true means cfg.load_from when
/// given, as MMEngine's Runner, else "auto"). A path is
/// loaded as given (its errors thrown). "auto" takes the work dir's most recent checkpoint
/// that loads, passes its checksum and holds finite weights: the one last_checkpoint names
/// (a name relative to the work dir; an absolute path counts by its file name, so a moved
/// work dir resumes from itself), then epoch_*.pth and iter_*.pth, newest first. Each
/// checkpoint passed over is named in `notes`; none at all is a fresh run.
ResumePoint resolve_resume(const RunnerKeys& keys, const TrainOptions& options,
                           const std::string& work_dir);

/// The work dir's most recent checkpoint (its last_checkpoint file, resolved in the work
/// dir), or "" if it names no file.
std::string latest_checkpoint_in(const std::string& work_dir);

/// The file name of the merged config in the work dir: `<config name>.json`, or
/// `<config name>.merged.json` when that is the source config itself (a work dir equal to
/// the config's folder), so an input is never overwritten.
std::string merged_config_name(const std::string& work_dir, const TrainOptions& options);

/// Readies the work dir before anything is written to it (rank 0): creates it; removes the
/// temp files a killed write left (`*.pth.tmp`, `*.json.tmp`, `last_checkpoint.tmp`); for a
/// fresh run (`resumed_iter` empty) moves a previous run's files (checkpoints, scalars.jsonl,
/// last_checkpoint, knn*.json, `merged_config`) into `previous_run_<UTC time>/`, so the new
/// run neither appends to its log nor mixes with its checkpoints; for a resumed run cuts
/// scalars.jsonl back to the records of iterations up to `resumed_iter` (the iterations run
/// again are logged once). Refuses symbolic links in place of scalars.jsonl. Returns notes.
std::vector<std::string> prepare_work_dir(const std::string& work_dir,
                                          std::optional<int64_t> resumed_iter,
                                          const std::string& merged_config);

/// cfg.randomness.seed, overridden by --seed.
uint64_t resolve_seed(const RunnerKeys& keys, const TrainOptions& options);

struct Environment {
  torch::Device device{torch::kCPU};
  int threads = 1;
  bool channels_last = false;
};
/// Device (--device), compute threads (--threads) and env_cfg; sets torch's thread count and
/// cuDNN's benchmark mode (env_cfg.cudnn_benchmark).
Environment setup_environment(const RunnerKeys& keys, const TrainOptions& options);

struct HookSet {
  std::vector<std::shared_ptr<Hook>> hooks;            // sorted by priority (stable)
  int64_t log_interval = LoggerHookOptions().interval; // without a logger entry
};
/// default_hooks (checkpoint built) and custom_hooks, sorted by priority.
HookSet build_hooks(const RunnerKeys& keys);

} // namespace selfsup::core
