#include "simsiam_hook.h"

#include <map>
#include <string>

#include <torch/optim/optimizer.h>

#include <selfsup/errors.h>

namespace selfsup::plugins::simsiam {

namespace {

/// MMEngine's priority names.
const std::map<std::string, int>& priorities() {
  static const std::map<std::string, int> names{
      {"HIGHEST", 0},       {"VERY_HIGH", 10}, {"HIGH", 30},
      {"ABOVE_NORMAL", 40}, {"NORMAL", 50},    {"BELOW_NORMAL", 60},
      {"LOW", 70},          {"VERY_LOW", 90},  {"LOWEST", 100}};
  return names;
}

int parse_priority(const Config& cfg) {
  if (!cfg.has("priority")) return priorities().at("NORMAL");
  const Json& v = cfg["priority"].json();
  if (v.is_number() && v.as_number() >= 0 && v.as_number() <= 100 &&
      v.as_number() == double(int64_t(v.as_number())))
    return int(v.as_number());
  if (v.is_string()) {
    const auto it = priorities().find(v.as_string());
    if (it != priorities().end()) return it->second;
  }
  std::string names;
  for (const auto& [name, value] : priorities()) names += (names.empty() ? "" : ", ") + name;
  cfg.fail_key("priority", "expected an int in [0, 100] or one of " + names + ", got " + v.dump());
}

} // namespace

SimSiamHook::SimSiamHook(bool fix_pred_lr, double lr, int priority)
    : fix_pred_lr_(fix_pred_lr), lr_(lr), priority_(priority) {}

Schema SimSiamHook::schema() {
  return Schema("Holds the lr of the predictor's param groups (parameters named "
                "'*predictor*') at `lr`, as MMSelfSup's SimSiamHook")
      .required("fix_pred_lr", ArgType::Bool, "whether to fix the predictor's lr")
      .required("lr", ArgType::Float, "the predictor's fixed lr", {check::ge(0)})
      .optional("adjust_by_epoch", ArgType::Bool, true,
                "upstream sets the lr per epoch (true) or per iteration (false); here both "
                "hold it at every iteration, the schedules being re-applied per iteration")
      .optional("priority", ArgType::Any, "NORMAL",
                "MMEngine's hook priority: a name (HIGHEST ... LOWEST) or an int in [0, 100]");
}

std::shared_ptr<Hook> SimSiamHook::make(const Config& cfg) {
  (void)cfg.get<bool>("adjust_by_epoch", true); // checked; both modes act alike here
  return std::make_shared<SimSiamHook>(cfg.get<bool>("fix_pred_lr"), cfg.get<double>("lr"),
                                       parse_priority(cfg));
}

void SimSiamHook::before_run(RunnerContext& context) {
  groups_.clear();
  if (!fix_pred_lr_) return;
  const size_t n = context.optimizer().param_groups().size();
  for (size_t g = 0; g < n; ++g)
    if (context.param_group_name(g).find("predictor") != std::string::npos) groups_.push_back(g);
  if (groups_.empty())
    throw ValueError("SimSiamHook: fix_pred_lr is set but no parameter of the model is named "
                     "'*predictor*' (expected a LatentPredictHead's head.predictor)");
}

void SimSiamHook::fix(RunnerContext& context) const {
  auto& param_groups = context.optimizer().param_groups();
  for (size_t g : groups_) param_groups.at(g).options().set_lr(lr_);
}

void SimSiamHook::before_train_epoch(RunnerContext& context) {
  fix(context);
}

void SimSiamHook::before_train_iter(RunnerContext& context) {
  // In both modes (see the class comment): the schedule was re-applied before this call.
  fix(context);
}

} // namespace selfsup::plugins::simsiam
