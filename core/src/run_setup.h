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
#include <selfsup/core/runner.h>
#include <selfsup/interfaces/training.h>
#include <selfsup/schema.h>

namespace selfsup::core {

/// The runner's own top-level keys, declared once: checked (unknown, wrong type, missing)
/// before anything is built.
const Schema& runner_schema();

/// --work-dir, else cfg.work_dir, else work_dirs/<config name>.
std::string resolve_work_dir(const Config& cfg, const TrainOptions& options);

/// The checkpoint to resume from ("" for a fresh run): --resume, else cfg.resume (true means
/// "auto"); "auto" is the work dir's last_checkpoint, if any. `note` gets messages.
std::string resolve_resume(const Config& cfg, const TrainOptions& options,
                           const std::string& work_dir, std::string* note);

/// The work dir's most recent checkpoint (its last_checkpoint file), or "".
std::string latest_checkpoint_in(const std::string& work_dir);

/// cfg.randomness.seed, overridden by --seed.
uint64_t resolve_seed(const Config& cfg, const TrainOptions& options);

struct Environment {
  torch::Device device{torch::kCPU};
  int threads = 1;
  bool channels_last = false;
};
/// Device (--device), compute threads (--threads) and env_cfg; sets torch's thread count.
Environment setup_environment(const Config& cfg, const TrainOptions& options);

struct HookSet {
  std::vector<std::shared_ptr<Hook>> hooks; // sorted by priority (stable)
  int64_t log_interval = 50;
};
/// default_hooks (checked; checkpoint built) and custom_hooks, sorted by priority.
HookSet build_hooks(const Config& cfg);

} // namespace selfsup::core
