#pragma once
#include <memory>
#include <vector>

#include <selfsup/config.h>
#include <selfsup/interfaces/training.h>
#include <selfsup/schema.h>

namespace selfsup::plugins::simsiam {

/// MMSelfSup's SimSiamHook: the predictor keeps a fixed learning rate `lr` while the
/// schedule moves the others. MMSelfSup marks the predictor's param groups with
/// `paramwise_cfg.custom_keys: {predictor: {fix_lr: true}}`; here the groups are those whose
/// parameter name (RunnerContext::param_group_name) contains "predictor", and core accepts
/// fix_lr only under a key naming the predictor, so the two select the same parameters.
///
/// The schedules here are closed-form and re-applied before every iteration, so the hook sets
/// the lr before every iteration (after the schedule) in both modes: with adjust_by_epoch
/// (upstream's default, its configs' schedules change by epoch) that is the lr upstream holds
/// through each epoch; without it, upstream's per-iteration setting.
class SimSiamHook final : public Hook {
public:
  SimSiamHook(bool fix_pred_lr, double lr, int priority);
  static Schema schema();
  static std::shared_ptr<Hook> make(const Config& cfg);

  [[nodiscard]] int priority() const override { return priority_; }
  void before_run(RunnerContext& context) override;
  void before_train_epoch(RunnerContext& context) override;
  void before_train_iter(RunnerContext& context) override;

  /// The param groups it holds at `lr` (found in before_run).
  [[nodiscard]] const std::vector<size_t>& fixed_groups() const { return groups_; }

private:
  void fix(RunnerContext& context) const;

  bool fix_pred_lr_;
  double lr_;
  int priority_;
  std::vector<size_t> groups_;
};

} // namespace selfsup::plugins::simsiam
