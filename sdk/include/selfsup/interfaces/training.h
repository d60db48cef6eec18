#pragma once
// Training-side interfaces: Optimizer, ParamScheduler, Hook, and the RunnerContext hooks see.
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

namespace selfsup {

class Algorithm;

/// A group of parameters with its own hyper-parameters (as torch.optim's param_groups).
struct ParamGroup {
  std::vector<torch::Tensor> params;
  std::vector<std::string> names;
  double lr = 0.0;
  double initial_lr = 0.0; // the lr schedulers scale
  double weight_decay = 0.0;
  double momentum = 0.0;
  bool lars_exclude = false;
};

/// An optimizer over param groups. Built from its config (lr, momentum, ...), then given
/// its groups by the optim wrapper. State is a flat name -> tensor map for checkpoints.
class SELFSUP_SDK_API Optimizer {
public:
  static constexpr const char* kKind = "optimizer";
  virtual ~Optimizer();

  /// The optimizer-level defaults a new group takes.
  [[nodiscard]] virtual ParamGroup defaults() const = 0;
  virtual void add_param_group(ParamGroup group);
  /// Updates every parameter that has a gradient.
  virtual void step() = 0;
  /// Drops the gradients (they become undefined, as torch's set_to_none).
  void zero_grad();
  [[nodiscard]] std::vector<ParamGroup>& param_groups() { return groups_; }
  [[nodiscard]] const std::vector<ParamGroup>& param_groups() const { return groups_; }

  [[nodiscard]] virtual std::map<std::string, torch::Tensor> state_dict() const;
  /// Restores state; throws ValueError naming the first missing or mismatched entry.
  virtual void load_state_dict(const std::map<std::string, torch::Tensor>& state);

protected:
  std::vector<ParamGroup> groups_;
  /// Per group, per parameter: named state tensors (e.g. "momentum_buffer").
  std::vector<std::vector<std::map<std::string, torch::Tensor>>> state_;
};

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
  void bind(int64_t iters_per_epoch, int64_t max_epochs);
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

class SELFSUP_SDK_API RunnerContext {
public:
  virtual ~RunnerContext();
  [[nodiscard]] virtual int64_t epoch() const = 0; // 0-based current epoch
  [[nodiscard]] virtual int64_t iter() const = 0;  // global iterations done
  [[nodiscard]] virtual int64_t max_epochs() const = 0;
  [[nodiscard]] virtual int64_t iters_per_epoch() const = 0;
  [[nodiscard]] virtual Algorithm& model() = 0;
  [[nodiscard]] virtual Optimizer& optimizer() = 0;
  [[nodiscard]] virtual const std::string& work_dir() const = 0;
  /// Adds a scalar to this iteration's log line and to scalars.jsonl.
  virtual void log_scalar(const std::string& name, double value) = 0;
  /// Prints a message through the runner's logger.
  virtual void log(const std::string& message) = 0;
};

/// Runs at points of the training loop (MMEngine's hook points).
class SELFSUP_SDK_API Hook {
public:
  static constexpr const char* kKind = "hook";
  virtual ~Hook();
  /// Lower runs first (MMEngine: VERY_HIGH 10, NORMAL 50, VERY_LOW 90).
  [[nodiscard]] virtual int priority() const { return 50; }
  virtual void before_run(RunnerContext&) {}
  virtual void before_train_epoch(RunnerContext&) {}
  virtual void before_train_iter(RunnerContext&) {}
  virtual void after_train_iter(RunnerContext&) {}
  virtual void after_train_epoch(RunnerContext&) {}
  virtual void after_run(RunnerContext&) {}
};

} // namespace selfsup
