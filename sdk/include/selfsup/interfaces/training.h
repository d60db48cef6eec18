#pragma once
// Training-side interfaces: ParamScheduler, Hook, and the RunnerContext hooks see (the
// optimizer kind is in <selfsup/interfaces/optimizer.h>).
#include <cstdint>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include <torch/types.h>

#include <selfsup/config.h>
#include <selfsup/export.h>
#include <selfsup/schema.h>

namespace torch::optim {
class Optimizer;
} // namespace torch::optim

namespace selfsup {

class Algorithm;

/// Sets a hyper-parameter of every group as a function of training progress, like
/// MMEngine's param schedulers. Progress is counted in iterations when `by_epoch` is false
/// or `convert_to_iter_based` is true, else in whole epochs.
class SELFSUP_SDK_API ParamScheduler {
public:
  static constexpr const char* kKind = "param_scheduler";
  virtual ~ParamScheduler();

  /// Keys every scheduler accepts: begin, end, by_epoch, convert_to_iter_based, param_name.
  static Schema base_schema(std::string doc);
  explicit ParamScheduler(const Config& cfg);

  /// Binds to a run: converts begin/end to progress units.
  /// `max_iters` (-1: max_epochs * iters_per_epoch) ends a schedule without an explicit end.
  void bind(int64_t iters_per_epoch, int64_t max_epochs, int64_t max_iters = -1);
  /// Applies the schedule at global iteration `iter` to `value` (the value so far).
  [[nodiscard]] double apply(int64_t iter, double value) const;
  [[nodiscard]] const std::string& param_name() const { return param_name_; }

protected:
  /// Progress units per configured unit: iterations per epoch when begin/end count epochs
  /// but progress counts iterations (convert_to_iter_based), else 1.
  [[nodiscard]] double scale() const { return scale_; }
  /// `t` in [0, total] progress units since `begin`; returns the new value.
  [[nodiscard]] virtual double compute(double t, double total, double value) const = 0;

private:
  double begin_cfg_, end_cfg_;
  bool by_epoch_, convert_;
  std::string param_name_;
  int64_t iters_per_epoch_ = 1;
  double begin_ = 0, end_ = 0, scale_ = 1;
  bool iter_units_ = true;
};

class Dataset;
class Sampler;

/// What hooks and algorithms see of the run (MMEngine's runner attributes): progress, the
/// model and data, the work dir, the process's place in a distributed run, and requests back
/// to the runner. Core implements it; nothing needs to know the Runner's type.
class SELFSUP_SDK_API RunnerContext {
public:
  virtual ~RunnerContext();
  [[nodiscard]] virtual int64_t epoch() const = 0;      // 0-based current epoch
  [[nodiscard]] virtual int64_t iter() const = 0;       // global iterations done
  [[nodiscard]] virtual int64_t inner_iter() const = 0; // iterations done in this epoch
  [[nodiscard]] virtual int64_t max_epochs() const = 0;
  [[nodiscard]] virtual int64_t max_iters() const = 0;
  [[nodiscard]] virtual int64_t iters_per_epoch() const = 0;
  [[nodiscard]] virtual Algorithm& model() = 0;
  /// The optimizer (LibTorch's); its param groups carry the current lr.
  [[nodiscard]] virtual torch::optim::Optimizer& optimizer() = 0;
  /// The dotted name of the parameter of the optimizer's param group `group` (one group per
  /// parameter, as MMEngine's paramwise constructor), e.g. "head.predictor.0.weight".
  [[nodiscard]] virtual const std::string& param_group_name(size_t group) const = 0;
  /// The training dataset (before its pipeline) and the sampler that orders it.
  [[nodiscard]] virtual const Dataset& train_dataset() const = 0;
  [[nodiscard]] virtual Sampler& train_sampler() = 0;
  /// Samples per batch of this process's training loader.
  [[nodiscard]] virtual int64_t train_batch_size() const = 0;
  [[nodiscard]] virtual const std::string& work_dir() const = 0;
  [[nodiscard]] virtual int rank() const = 0;
  [[nodiscard]] virtual int world_size() const = 0;
  [[nodiscard]] virtual uint64_t seed() const = 0;
  /// Saves a checkpoint of the whole run state now, as work_dir/<filename> (atomically;
  /// only rank 0 writes). Returns its path ("" on other ranks).
  virtual std::string save_checkpoint(const std::string& filename) = 0;
  /// Adds a scalar to this iteration's log line and to scalars.jsonl.
  virtual void log_scalar(const std::string& name, double value) = 0;
  /// Prints a message through the runner's logger.
  virtual void log(const std::string& message) = 0;
  /// Features of every sample of a loader built from `dataloader` (a dict with
  /// train_dataloader's keys; with an unshuffled sampler rows follow the dataset order), by
  /// core's feature extraction: the model in eval mode without gradients, the last output of
  /// its extract_feat, global-average-pooled when it is a map, L2-normalised rows, on CPU.
  /// Every rank extracts every sample. The default throws ValueError (a context without data).
  [[nodiscard]] virtual torch::Tensor extract_features(const Config& dataloader);
};

/// Runs at points of the training loop (MMEngine's hook points, plus the optimizer step).
class SELFSUP_SDK_API Hook {
public:
  static constexpr const char* kKind = "hook";
  virtual ~Hook();
  /// Lower runs first (MMEngine: VERY_HIGH 10, NORMAL 50, VERY_LOW 90).
  [[nodiscard]] virtual int priority() const { return 50; }
  virtual void before_run(RunnerContext&) {}
  virtual void before_train_epoch(RunnerContext&) {}
  virtual void before_train_iter(RunnerContext&) {}
  /// After the optimizer updated the parameters (with accumulation: once per window).
  virtual void after_optimizer_step(RunnerContext&) {}
  virtual void after_train_iter(RunnerContext&) {}
  virtual void after_train_epoch(RunnerContext&) {}
  virtual void after_run(RunnerContext&) {}
};

/// The events of a run, for algorithms (Algorithm::on_run_event).
enum class RunEvent {
  BeforeRun,
  BeforeTrainEpoch,
  BeforeTrainIter,
  AfterOptimizerStep,
  AfterTrainIter,
  AfterTrainEpoch,
  AfterRun
};

/// The loop that drives training (MMEngine's train loops): it decides when epochs start and
/// end and when the run is over; the runner does the iterations. Kind "train_loop", chosen by
/// `train_cfg.type`.
class SELFSUP_SDK_API TrainLoop {
public:
  static constexpr const char* kKind = "train_loop";
  /// What a loop drives.
  class Driver {
  public:
    virtual ~Driver();
    [[nodiscard]] virtual RunnerContext& context() = 0;
    /// Starts the context's current epoch (hooks, sampler order, logging).
    virtual void begin_epoch() = 0;
    /// Runs the next iteration of the epoch; false at the epoch's end (nothing run).
    virtual bool run_iteration() = 0;
    /// Ends the current epoch (counter, hooks).
    virtual void end_epoch() = 0;
  };
  virtual ~TrainLoop();
  /// Total epochs and iterations, given the loader's iterations per epoch.
  [[nodiscard]] virtual int64_t max_epochs(int64_t iters_per_epoch) const = 0;
  [[nodiscard]] virtual int64_t max_iters(int64_t iters_per_epoch) const = 0;
  /// Runs (or continues, from the context's epoch/iter) to the end.
  virtual void run(Driver& driver) = 0;
};

} // namespace selfsup
