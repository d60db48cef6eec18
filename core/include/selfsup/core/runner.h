#pragma once
// The Runner: MMEngine's epoch-based training loop over a merged config.
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include <torch/types.h>

#include <selfsup/core/export.h>
#include <selfsup/interfaces/training.h>
#include <selfsup/json.h>

namespace selfsup::core {

class DataLoader;
class ProgressLogger;

struct TrainOptions {
  std::string work_dir;         // overrides cfg.work_dir
  std::optional<uint64_t> seed; // overrides cfg.randomness.seed
  int threads = 0;              // 0: all cores
  std::string device = "cpu";
  std::string resume;                 // a checkpoint path, "auto", or empty
  std::string config_name = "config"; // for the default work dir and the saved config
};

/// Asks a running Runner to stop after the current iteration (async-signal-safe).
SELFSUP_CORE_API void request_stop();
[[nodiscard]] SELFSUP_CORE_API bool stop_requested();
/// Clears a stop request (for embedding and tests).
SELFSUP_CORE_API void clear_stop_request();

/// Thrown by Runner::train when a stop was requested; a checkpoint was saved first.
class SELFSUP_CORE_API Interrupted : public Error {
public:
  explicit Interrupted(const std::string& what);
  ~Interrupted() override;
};

/// The top-level config keys the runner accepts.
SELFSUP_CORE_API const std::vector<std::string>& runner_config_keys();

class SELFSUP_CORE_API Runner final : public RunnerContext {
public:
  /// Validates and builds everything (model, data, optimizer, schedulers, hooks); config
  /// errors are ConfigErrors naming the JSON path.
  Runner(Json cfg, TrainOptions options);
  ~Runner() override;

  /// Runs (or resumes) training to max_epochs.
  void train();

  // RunnerContext
  int64_t epoch() const override { return epoch_; }
  int64_t iter() const override { return iter_; }
  int64_t max_epochs() const override { return max_epochs_; }
  int64_t iters_per_epoch() const override;
  Algorithm& model() override { return *model_; }
  Optimizer& optimizer() override { return *optimizer_; }
  const std::string& work_dir() const override { return work_dir_; }
  void log_scalar(const std::string& name, double value) override;
  void log(const std::string& message) override;

  [[nodiscard]] torch::Device device() const { return device_; }
  [[nodiscard]] uint64_t seed() const { return seed_; }
  /// Saves a checkpoint of the current state to work_dir/<name>; returns its path.
  std::string save_checkpoint_as(const std::string& name);
  /// The most recent checkpoint in the work dir, or "" if none.
  [[nodiscard]] std::string latest_checkpoint() const;

private:
  void build_optimizer(const Config& cfg);
  void resume_from(const std::string& path);
  void run_iteration(struct Batch& batch);
  void apply_schedules();

  Json cfg_;
  TrainOptions options_;
  std::string work_dir_;
  uint64_t seed_ = 0;
  torch::Device device_{torch::kCPU};
  std::shared_ptr<Algorithm> model_;
  std::unique_ptr<DataLoader> loader_;
  std::shared_ptr<Optimizer> optimizer_;
  std::vector<std::shared_ptr<ParamScheduler>> schedulers_;
  std::vector<std::shared_ptr<Hook>> hooks_;
  std::unique_ptr<ProgressLogger> logger_;
  int64_t max_epochs_ = 1;
  int64_t epoch_ = 0;
  int64_t iter_ = 0;
  int64_t skip_batches_ = 0; // resumed mid-epoch
  int64_t accumulate_ = 1;
  double clip_max_norm_ = 0;
  bool amp_bf16_ = false;
  bool channels_last_ = false;
  int64_t keep_ckpts_ = -1;
  int64_t ckpt_interval_ = 1;
  std::vector<std::pair<std::string, double>> pending_scalars_;
  bool in_iteration_ = false; // scalars logged now join the iteration's record
};

} // namespace selfsup::core
