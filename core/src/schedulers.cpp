// MMEngine's LR schedulers (mmengine 0.8.4): each has MMEngine's chained per-step rule
// (chained(), run by ParamScheduleChain in the Runner) and the closed form of that rule for a
// scheduler on its own (compute(), ParamScheduler::apply). Both stop changing the value after
// the step `end - 1`, as MMEngine does.
#include <selfsup/core/schedulers.h>

#include <algorithm>
#include <cmath>
#include <memory>
#include <optional>
#include <sstream>
#include <string>
#include <vector>

#include <selfsup/errors.h>
#include <selfsup/interfaces/training.h>
#include <selfsup/options.h>
#include <selfsup/registry.h>

#include "builtins.h"

namespace selfsup::core {

// ---- ChainedParamScheduler ----------------------------------------------------------------

ChainedParamScheduler::ChainedParamScheduler(const Config& cfg)
    : ParamScheduler(cfg), where_(cfg.path()), begin_cfg_(cfg.get<double>("begin")),
      end_cfg_(cfg.get<double>("end")), by_epoch_(cfg.get<bool>("by_epoch")),
      convert_(cfg.get<bool>("convert_to_iter_based")) {
  // MMEngine's build_iter_from_epoch asserts by_epoch: only epochs can be converted.
  if (convert_ && !by_epoch_)
    cfg.fail_key("convert_to_iter_based",
                 "converts epochs to iterations, so it needs by_epoch: true (got false)");
}

void ChainedParamScheduler::bind_steps(int64_t iters_per_epoch, int64_t max_epochs,
                                       int64_t max_iters) {
  const auto ipe = std::max<int64_t>(1, iters_per_epoch);
  if (max_iters < 0) max_iters = max_epochs * ipe;
  // Runner._build_param_scheduler: an absent end is the end of training, set before any
  // conversion.
  const double end = end_cfg_ >= 1e17 ? double(by_epoch_ ? max_epochs : max_iters) : end_cfg_;
  per_iter_ = !by_epoch_ || convert_;
  if (by_epoch_ && convert_) {
    // build_iter_from_epoch: begin = int(begin * epoch_length), end likewise.
    step_scale_ = double(ipe);
    begin_ = std::trunc(begin_cfg_ * step_scale_);
    end_ = std::trunc(end * step_scale_);
  } else {
    step_scale_ = 1;
    begin_ = begin_cfg_;
    end_ = end;
  }
  if (!(end_ > begin_)) {
    const std::string unit = per_iter_ ? " iterations" : " epochs";
    auto num = [](double x) {
      std::ostringstream os;
      os << x;
      return os.str();
    };
    throw ConfigError(
        (where_.empty() ? std::string("param_scheduler") : where_) +
        ": end must be greater than begin, got begin " + num(begin_) + ", end " + num(end_) + unit +
        (by_epoch_ && convert_
             ? " (after convert_to_iter_based: int(epochs * " + std::to_string(ipe) + "))"
             : ""));
  }
}

double ChainedParamScheduler::step(int64_t step, double current, double base) const {
  const double s = double(step);
  if (!(begin_ <= s && s < end_)) return current;
  return chained(step - int64_t(std::ceil(begin_)), current, base);
}

namespace {

// Each scheduler's own keys, declared once; the keys every scheduler shares (begin, end,
// by_epoch, ...) are ParamScheduler's, read by its constructor.
template <class O> OptionTable<O> scheduler_table(std::string doc) {
  return OptionTable<O>(std::move(doc), O()).inherit(ParamScheduler::base_schema(""));
}

// Progress `t` of the closed forms (ParamScheduler::apply) stops at the last step, end - 1.
double last_t(double t, double total) {
  return std::min(t, std::max(0.0, total - 1));
}

struct LinearLROptions {
  double start_factor = 1.0 / 3;
  double end_factor = 1.0;
  static OptionTable<LinearLROptions> table() {
    using O = LinearLROptions;
    return scheduler_table<O>("Scales the value by a factor moving linearly from start_factor "
                              "(step begin) to end_factor (step end - 1), as MMEngine's.")
        .optional("start_factor", &O::start_factor, "factor at begin", check::in(0, 1))
        .optional("end_factor", &O::end_factor, "factor at end - 1", check::in(0, 1))
        .rule([](const O& o, const Config& cfg) {
          if (o.start_factor == 0)
            cfg.fail_key("start_factor",
                         "must be > 0: MMEngine's chained LinearLR divides by it at its second "
                         "step (ZeroDivisionError); use a small factor such as 1e-4");
        });
  }
};

class LinearLR final : public ChainedParamScheduler {
public:
  explicit LinearLR(const Config& cfg)
      : ChainedParamScheduler(cfg), o_(LinearLROptions::table().parse(cfg)) {}

protected:
  // LinearParamScheduler._get_value, total_iters = end - begin - 1.
  double chained(int64_t last_step, double v, double) const override {
    if (last_step == 0) return v * o_.start_factor;
    const double total_iters = span() - 1, d = o_.end_factor - o_.start_factor;
    return v * (1. + d / (total_iters * o_.start_factor + double(last_step - 1) * d));
  }
  double compute(double t, double total, double v) const override {
    const double total_iters = total - 1;
    if (total_iters <= 0) return v * o_.start_factor; // one step: the factor stays
    return v *
           (o_.start_factor + (o_.end_factor - o_.start_factor) * last_t(t, total) / total_iters);
  }

private:
  LinearLROptions o_;
};

struct CosineAnnealingLROptions {
  std::optional<double> t_max;         // default: end - begin
  std::optional<double> eta_min;       // default 0 (without eta_min_ratio)
  std::optional<double> eta_min_ratio; // eta_min = ratio * the group's initial value
  static OptionTable<CosineAnnealingLROptions> table() {
    using O = CosineAnnealingLROptions;
    return scheduler_table<O>("Cosine annealing from the value to eta_min over T_max.")
        .optional("T_max", &O::t_max, "period (default end - begin)", check::gt(0))
        .optional("eta_min", &O::eta_min, "final value (default 0)")
        .optional("eta_min_ratio", &O::eta_min_ratio,
                  "final value as a ratio of the initial value (instead of eta_min)")
        .rule([](const O& o, const Config& cfg) {
          if (o.eta_min && o.eta_min_ratio)
            cfg.fail_key("eta_min_ratio", "give either eta_min or eta_min_ratio, not both");
        });
  }
};

class CosineAnnealingLR final : public ChainedParamScheduler {
public:
  explicit CosineAnnealingLR(const Config& cfg)
      : ChainedParamScheduler(cfg), o_(CosineAnnealingLROptions::table().parse(cfg)) {}

protected:
  // CosineAnnealingParamScheduler._get_value (the recursive form, with its (2k+1)T_max case).
  double chained(int64_t last_step, double v, double base) const override {
    if (last_step == 0) return v;
    const double eta = eta_min(base);
    const double T = o_.t_max ? *o_.t_max * step_scale() : span();
    const double s = double(last_step);
    double r = std::fmod(s - 1 - T, 2 * T);
    if (r < 0) r += 2 * T; // Python's % takes the divisor's sign
    if (r == 0) return v + (base - eta) * (1 - std::cos(M_PI / T)) / 2;
    return (1 + std::cos(M_PI * s / T)) / (1 + std::cos(M_PI * (s - 1) / T)) * (v - eta) + eta;
  }
  double compute(double t, double total, double v) const override {
    const double T = o_.t_max ? *o_.t_max * scale() : total;
    const double eta = eta_min(v);
    return eta + (v - eta) * (1 + std::cos(M_PI * last_t(t, total) / T)) / 2;
  }

private:
  double eta_min(double base) const {
    return o_.eta_min_ratio ? base * *o_.eta_min_ratio : o_.eta_min.value_or(0.0);
  }
  CosineAnnealingLROptions o_;
};

struct MultiStepLROptions {
  std::vector<double> milestones; // required
  double gamma = 0.1;
  static OptionTable<MultiStepLROptions> table() {
    using O = MultiStepLROptions;
    return scheduler_table<O>("Multiplies the value by gamma at each milestone (counted from "
                              "begin; a milestone given twice applies gamma twice).")
        .required("milestones", &O::milestones, "steps (epochs if by_epoch)",
                  check::each(check::ge(0)))
        .optional("gamma", &O::gamma, "factor per milestone");
  }
};

class MultiStepLR final : public ChainedParamScheduler {
public:
  explicit MultiStepLR(const Config& cfg)
      : ChainedParamScheduler(cfg), o_(MultiStepLROptions::table().parse(cfg)) {}

protected:
  // MultiStepParamScheduler._get_value: gamma ** Counter(milestones)[last_step].
  double chained(int64_t last_step, double v, double) const override {
    for (double m : o_.milestones)
      if (m * step_scale() == double(last_step)) v *= o_.gamma;
    return v;
  }
  double compute(double t, double total, double v) const override {
    t = last_t(t, total);
    for (double m : o_.milestones) {
      const double at = m * scale();
      if (at <= t && at == std::floor(at)) v *= o_.gamma; // only whole steps are ever reached
    }
    return v;
  }

private:
  MultiStepLROptions o_;
};

struct StepLROptions {
  double step_size = 1; // required
  double gamma = 0.1;
  static OptionTable<StepLROptions> table() {
    using O = StepLROptions;
    return scheduler_table<O>("Multiplies the value by gamma every step_size steps.")
        .required("step_size", &O::step_size, "period (epochs if by_epoch)", check::gt(0))
        .optional("gamma", &O::gamma, "factor per period");
  }
};

class StepLR final : public ChainedParamScheduler {
public:
  explicit StepLR(const Config& cfg)
      : ChainedParamScheduler(cfg), o_(StepLROptions::table().parse(cfg)) {}

protected:
  double chained(int64_t last_step, double v, double) const override {
    if (last_step == 0 || std::fmod(double(last_step), o_.step_size * step_scale()) != 0) return v;
    return v * o_.gamma;
  }
  double compute(double t, double total, double v) const override {
    return v * std::pow(o_.gamma, std::floor(last_t(t, total) / (o_.step_size * scale())));
  }

private:
  StepLROptions o_;
};

struct ExponentialLROptions {
  double gamma = 1; // required
  static OptionTable<ExponentialLROptions> table() {
    using O = ExponentialLROptions;
    return scheduler_table<O>("Multiplies the value by gamma at every step.")
        .required("gamma", &O::gamma, "factor per step");
  }
};

class ExponentialLR final : public ChainedParamScheduler {
public:
  explicit ExponentialLR(const Config& cfg)
      : ChainedParamScheduler(cfg), o_(ExponentialLROptions::table().parse(cfg)) {}

protected:
  double chained(int64_t last_step, double v, double) const override {
    return last_step == 0 ? v : v * o_.gamma;
  }
  double compute(double t, double total, double v) const override {
    return v * std::pow(o_.gamma, last_t(t, total));
  }

private:
  ExponentialLROptions o_;
};

struct PolyLROptions {
  double eta_min = 0;
  double power = 1;
  static OptionTable<PolyLROptions> table() {
    using O = PolyLROptions;
    return scheduler_table<O>("Polynomial decay to eta_min at step end - 1.")
        .optional("eta_min", &O::eta_min, "final value")
        .optional("power", &O::power, "power of the polynomial");
  }
};

class PolyLR final : public ChainedParamScheduler {
public:
  explicit PolyLR(const Config& cfg)
      : ChainedParamScheduler(cfg), o_(PolyLROptions::table().parse(cfg)) {}

protected:
  // PolyParamScheduler._get_value, total_iters = end - begin - 1.
  double chained(int64_t last_step, double v, double) const override {
    if (last_step == 0) return v;
    const double total_iters = span() - 1;
    return (v - o_.eta_min) * std::pow(1 - 1 / (total_iters - double(last_step) + 1), o_.power) +
           o_.eta_min;
  }
  double compute(double t, double total, double v) const override {
    const double total_iters = total - 1;
    if (total_iters <= 0) return v;
    return o_.eta_min + (v - o_.eta_min) * std::pow(1 - last_t(t, total) / total_iters, o_.power);
  }

private:
  PolyLROptions o_;
};

struct ConstantLROptions {
  double factor = 1.0 / 3;
  static OptionTable<ConstantLROptions> table() {
    using O = ConstantLROptions;
    return scheduler_table<O>("Scales the value by factor from begin until step end - 1, "
                              "where it is divided back.")
        .optional("factor", &O::factor, "factor", check::in(0, 1))
        .rule([](const O& o, const Config& cfg) {
          if (o.factor == 0)
            cfg.fail_key("factor", "must be > 0: MMEngine's ConstantLR divides by it at step "
                                   "end - 1 (ZeroDivisionError)");
        });
  }
};

class ConstantLR final : public ChainedParamScheduler {
public:
  explicit ConstantLR(const Config& cfg)
      : ChainedParamScheduler(cfg), o_(ConstantLROptions::table().parse(cfg)) {}

protected:
  double chained(int64_t last_step, double v, double) const override {
    if (last_step == 0) return v * o_.factor;
    return double(last_step) == span() - 1 ? v / o_.factor : v;
  }
  double compute(double t, double total, double v) const override {
    const double total_iters = total - 1;
    return last_t(t, total) < total_iters || total_iters <= 0 ? v * o_.factor : v;
  }

private:
  ConstantLROptions o_;
};

template <class S> std::shared_ptr<ParamScheduler> make(const Config& cfg) {
  return std::make_shared<S>(cfg);
}

} // namespace

// ---- ParamScheduleChain -------------------------------------------------------------------

ParamScheduleChain::ParamScheduleChain(std::vector<std::shared_ptr<ParamScheduler>> schedulers,
                                       int64_t iters_per_epoch, int64_t max_epochs,
                                       int64_t max_iters)
    : schedulers_(std::move(schedulers)), iters_per_epoch_(std::max<int64_t>(1, iters_per_epoch)) {
  for (auto& s : schedulers_) {
    s->bind(iters_per_epoch_, max_epochs, max_iters);
    auto* c = dynamic_cast<ChainedParamScheduler*>(s.get());
    if (c) c->bind_steps(iters_per_epoch_, max_epochs, max_iters);
    chained_.push_back(c);
  }
}

namespace {
// A plugin's scheduler (closed form only) moves the value by the ratio of its closed form.
double by_ratio(const ParamScheduler& s, int64_t from, int64_t to, double v, double base) {
  const double a = from < 0 ? base : s.apply(from, base);
  const double b = s.apply(to, base);
  return a != 0 ? v * (b / a) : b;
}
} // namespace

void ParamScheduleChain::restart(const std::vector<double>& bases) {
  bases_ = bases;
  values_ = bases;
  for (size_t i = 0; i < schedulers_.size(); ++i)
    for (size_t g = 0; g < values_.size(); ++g)
      values_[g] = chained_[i] ? chained_[i]->step(0, values_[g], bases_[g])
                               : by_ratio(*schedulers_[i], -1, 0, values_[g], bases_[g]);
  iter_ = 0;
}

void ParamScheduleChain::advance() {
  const int64_t next = iter_ + 1;
  // ParamSchedulerHook.after_train_iter: the per-iteration schedulers, in list order.
  for (size_t i = 0; i < schedulers_.size(); ++i) {
    if (chained_[i] && !chained_[i]->steps_per_iteration()) continue;
    for (size_t g = 0; g < values_.size(); ++g)
      values_[g] = chained_[i] ? chained_[i]->step(next, values_[g], bases_[g])
                               : by_ratio(*schedulers_[i], iter_, next, values_[g], bases_[g]);
  }
  // Then after_train_epoch at the end of an epoch: the per-epoch ones.
  if (next % iters_per_epoch_ == 0)
    for (size_t i = 0; i < schedulers_.size(); ++i)
      if (chained_[i] && !chained_[i]->steps_per_iteration())
        for (size_t g = 0; g < values_.size(); ++g)
          values_[g] = chained_[i]->step(next / iters_per_epoch_, values_[g], bases_[g]);
  iter_ = next;
}

std::vector<double> ParamScheduleChain::values(int64_t iter, const std::vector<double>& bases) {
  iter = std::max<int64_t>(0, iter);
  if (iter_ < 0 || iter < iter_ || bases != bases_) restart(bases);
  while (iter_ < iter) advance();
  return values_;
}

void register_schedulers(Registrar& r) {
  r.add<ParamScheduler>("LinearLR", &make<LinearLR>, LinearLROptions::table().schema());
  r.add<ParamScheduler>("CosineAnnealingLR", &make<CosineAnnealingLR>,
                        CosineAnnealingLROptions::table().schema());
  r.add<ParamScheduler>("MultiStepLR", &make<MultiStepLR>, MultiStepLROptions::table().schema());
  r.add<ParamScheduler>("StepLR", &make<StepLR>, StepLROptions::table().schema());
  r.add<ParamScheduler>("ExponentialLR", &make<ExponentialLR>,
                        ExponentialLROptions::table().schema());
  r.add<ParamScheduler>("PolyLR", &make<PolyLR>, PolyLROptions::table().schema());
  r.add<ParamScheduler>("ConstantLR", &make<ConstantLR>, ConstantLROptions::table().schema());
}

} // namespace selfsup::core
