#pragma once
// The Runner: sets up a run from a merged config and drives it through its train loop
// (MMEngine's Runner). The parts live in their own units: run_setup (keys, work dir, resume,
// seed, environment, hooks), OptimWrapper (optimizer, AMP, accumulation, clipping,
// gradient sync), train loops, samplers, checkpoints and logging.
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include <torch/types.h>

#include <selfsup/core/export.h>
#include <selfsup/core/schedulers.h>
#include <selfsup/dist.h>
#include <selfsup/interfaces/training.h>
#include <selfsup/json.h>

namespace selfsup::core {

class DataLoader;
class OptimWrapper;
class ProgressLogger;
struct Batch;
struct Checkpoint;

struct TrainOptions {
  std::string work_dir;         // overrides cfg.work_dir
  std::optional<uint64_t> seed; // overrides cfg.randomness.seed
  int threads = 0;              // 0: all cores
  std::string device = "cpu";
  std::string resume;                 // a checkpoint path, "auto", or empty
  std::string config_name = "config"; // for the default work dir and the saved config
  std::string config_path;            // the source config file, never overwritten ("": none)
  std::string launcher; // overrides cfg.launcher: 'none' or 'pytorch' ("": the config's)
  const Registry* registry = nullptr; // builds types from this one; null: Registry::global()
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

/// The top-level config keys the runner accepts (from its declared schema).
SELFSUP_CORE_API const std::vector<std::string>& runner_config_keys();

class SELFSUP_CORE_API Runner final : public RunnerContext, private TrainLoop::Driver {
public:
  /// Validates and builds everything (model, data, optimizer, schedulers, hooks, loop);
  /// config errors are ConfigErrors naming the JSON path.
  Runner(Json cfg, TrainOptions options);
  ~Runner() override;

  /// Runs (or resumes) training to the loop's end.
  void train();

  // RunnerContext
  int64_t epoch() const override { return epoch_; }
  int64_t iter() const override { return iter_; }
  int64_t inner_iter() const override { return inner_iter_; }
  int64_t max_epochs() const override { return max_epochs_; }
  int64_t max_iters() const override { return max_iters_; }
  int64_t iters_per_epoch() const override;
  Algorithm& model() override { return *model_; }
  torch::optim::Optimizer& optimizer() override;
  const std::string& param_group_name(size_t group) const override;
  const Dataset& train_dataset() const override;
  Sampler& train_sampler() override;
  int64_t train_batch_size() const override;
  const std::string& work_dir() const override { return work_dir_; }
  int rank() const override;
  int world_size() const override;
  uint64_t seed() const override { return seed_; }
  std::string save_checkpoint(const std::string& filename) override;
  void log_scalar(const std::string& name, double value) override;
  void log(const std::string& message) override;
  torch::Tensor extract_features(const Config& dataloader) override;

  [[nodiscard]] torch::Device device() const { return device_; }
  /// The most recent checkpoint in the work dir, or "" if none.
  [[nodiscard]] std::string latest_checkpoint() const;

private:
  // TrainLoop::Driver
  RunnerContext& context() override { return *this; }
  void begin_epoch() override;
  bool run_iteration() override;
  void end_epoch() override;

  void emit(RunEvent event, void (Hook::*method)(RunnerContext&));
  void resume_from(const std::string& path);
  void apply_schedules();
  void train_step(Batch& batch);
  /// Throws ConfigError when `c` was written with another number of iterations per epoch.
  void check_resumable(const Checkpoint& c) const;
  /// Puts mmengine's param_schedulers into `c` and the next iteration's lr into its optimizer
  /// groups, as mmengine's Runner saves them.
  void add_scheduler_states(Checkpoint& c);
  /// "The last good checkpoint is <path>." or that there is none (for error messages).
  [[nodiscard]] std::string last_good() const;
  /// The learning rate now: one value, or the range over the param groups.
  [[nodiscard]] std::string lr_text() const;

  Json cfg_;
  TrainOptions options_;
  std::string work_dir_;
  std::string resume_path_;
  uint64_t seed_ = 0;
  torch::Device device_{torch::kCPU};
  bool channels_last_ = false;
  std::shared_ptr<Distributed> dist_; // the c10d group of a distributed run (else null)
  std::shared_ptr<Algorithm> model_;
  std::unique_ptr<DataLoader> loader_;
  std::unique_ptr<OptimWrapper> optim_wrapper_;
  std::vector<std::shared_ptr<ParamScheduler>> schedulers_;
  ParamScheduleChain schedule_; // MMEngine's chained stepping of schedulers_
  std::vector<std::shared_ptr<Hook>> hooks_;
  std::shared_ptr<TrainLoop> loop_;
  std::unique_ptr<ProgressLogger> logger_;
  int64_t max_epochs_ = 1;
  int64_t max_iters_ = 1;
  int64_t epoch_ = 0;
  int64_t iter_ = 0;
  int64_t inner_iter_ = 0;
  int64_t skip_batches_ = 0;      // resumed mid-epoch
  int64_t nonfinite_skipped_ = 0; // steps skipped for a non-finite loss (skip_nonfinite)
  std::vector<std::pair<std::string, double>> pending_scalars_;
  bool in_iteration_ = false; // scalars logged now join the iteration's record
};

} // namespace selfsup::core
