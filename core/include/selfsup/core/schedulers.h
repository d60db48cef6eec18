#pragma once
// MMEngine's parameter schedulers (mmengine 0.8.4, optim/scheduler/param_scheduler.py) in
// their chained form, and the order in which its ParamSchedulerHook steps them.
//
// Each scheduler keeps a step counter: 0 when it is built (MMEngine's constructor steps once),
// then +1 after every iteration (by_epoch false, or convert_to_iter_based) or after every
// epoch. A step inside [begin, end) rewrites the value from the value as every earlier update
// left it (the "chained" rule: overlapping schedulers compose step by step); a step outside
// leaves it alone, so after `end` the value of step `end - 1` stays.
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include <selfsup/config.h>
#include <selfsup/core/export.h>
#include <selfsup/interfaces/training.h>

namespace selfsup::core {

/// Base of the engine's own schedulers: ParamScheduler's closed form (apply, one scheduler on
/// its own) plus MMEngine's per-step rule, which ParamScheduleChain runs.
class SELFSUP_CORE_API ChainedParamScheduler : public ParamScheduler {
public:
  explicit ChainedParamScheduler(const Config& cfg);

  /// MMEngine's Runner: an absent `end` is max_epochs (by_epoch) or max_iters; with
  /// convert_to_iter_based, begin and end become int(x * iters_per_epoch) iterations (and
  /// T_max, milestones, step_size are multiplied by iters_per_epoch).
  void bind_steps(int64_t iters_per_epoch, int64_t max_epochs, int64_t max_iters);
  /// Whether it steps after every iteration (else after every epoch).
  [[nodiscard]] bool steps_per_iteration() const { return per_iter_; }
  [[nodiscard]] double begin_step() const { return begin_; }
  [[nodiscard]] double end_step() const { return end_; }
  /// The value after its step number `step` (0 = when built): inside [begin, end) the rule
  /// of chained(); outside, `current` unchanged. `base` is the group's initial value.
  [[nodiscard]] double step(int64_t step, double current, double base) const;

protected:
  /// Steps per configured unit: iterations per epoch when converted, else 1.
  [[nodiscard]] double step_scale() const { return step_scale_; }
  /// MMEngine's `end - begin` (in steps, after conversion).
  [[nodiscard]] double span() const { return end_ - begin_; }
  /// MMEngine's _get_value: `last_step` counts the steps since begin (0 at begin).
  [[nodiscard]] virtual double chained(int64_t last_step, double current, double base) const = 0;

private:
  std::string where_;
  double begin_cfg_, end_cfg_;
  bool by_epoch_, convert_;
  bool per_iter_ = true;
  double begin_ = 0, end_ = 0, step_scale_ = 1;
};

/// The list of schedulers of a run, stepped as MMEngine's ParamSchedulerHook steps them: all
/// are built (step 0) in list order; after each iteration the per-iteration ones step in list
/// order, then, at the end of an epoch, the per-epoch ones. A scheduler that is not a
/// ChainedParamScheduler (a plugin's) moves the value by the ratio of its closed form from one
/// iteration to the next.
class SELFSUP_CORE_API ParamScheduleChain {
public:
  ParamScheduleChain() = default;
  /// Binds every scheduler to the run (ParamScheduler::bind and bind_steps).
  ParamScheduleChain(std::vector<std::shared_ptr<ParamScheduler>> schedulers,
                     int64_t iters_per_epoch, int64_t max_epochs, int64_t max_iters);

  /// The value of each group during global iteration `iter` (0-based), from the groups'
  /// initial values. Goes on from the last call; an earlier `iter` (a resume) or other bases
  /// replay from the start.
  [[nodiscard]] std::vector<double> values(int64_t iter, const std::vector<double>& bases);
  [[nodiscard]] bool empty() const { return schedulers_.empty(); }

private:
  void restart(const std::vector<double>& bases);
  void advance(); // from iteration iter_ to iter_ + 1

  std::vector<std::shared_ptr<ParamScheduler>> schedulers_;
  std::vector<const ChainedParamScheduler*> chained_; // null for a plugin's scheduler
  int64_t iters_per_epoch_ = 1;
  int64_t iter_ = -1; // the iteration `values_` belong to; -1: not started
  std::vector<double> bases_, values_;
};

} // namespace selfsup::core
