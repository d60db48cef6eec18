// MMEngine's LR schedulers in closed form: each maps (progress, value so far) to a value.
#include <algorithm>
#include <cmath>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include <selfsup/interfaces/training.h>
#include <selfsup/options.h>
#include <selfsup/registry.h>

#include "builtins.h"

namespace selfsup::core {

namespace {

// Each scheduler's own keys, declared once; the keys every scheduler shares (begin, end,
// by_epoch, ...) are ParamScheduler's, read by its constructor.
template <class O> OptionTable<O> scheduler_table(std::string doc) {
  return OptionTable<O>(std::move(doc), O()).inherit(ParamScheduler::base_schema(""));
}

struct LinearLROptions {
  double start_factor = 1.0 / 3;
  double end_factor = 1.0;
  static OptionTable<LinearLROptions> table() {
    using O = LinearLROptions;
    return scheduler_table<O>("Scales the value by a factor moving linearly from start_factor "
                              "to end_factor over [begin, end).")
        .optional("start_factor", &O::start_factor, "factor at begin", check::in(0, 1))
        .optional("end_factor", &O::end_factor, "factor at end", check::in(0, 1));
  }
};

class LinearLR final : public ParamScheduler {
public:
  explicit LinearLR(const Config& cfg)
      : ParamScheduler(cfg), o_(LinearLROptions::table().parse(cfg)) {}
  // As MMEngine: the factor reaches end_factor at the last step of [begin, end).
  double compute(double t, double total, double v) const override {
    const double steps = std::max(1.0, total - 1);
    return v * (o_.start_factor + (o_.end_factor - o_.start_factor) * std::min(1.0, t / steps));
  }

private:
  LinearLROptions o_;
};

struct CosineAnnealingLROptions {
  std::optional<double> t_max; // default: end - begin
  double eta_min = 0.0;
  static OptionTable<CosineAnnealingLROptions> table() {
    using O = CosineAnnealingLROptions;
    return scheduler_table<O>("Cosine annealing from the value to eta_min over T_max.")
        .optional("T_max", &O::t_max, "period (default end - begin)", check::gt(0))
        .optional("eta_min", &O::eta_min, "final value");
  }
};

class CosineAnnealingLR final : public ParamScheduler {
public:
  explicit CosineAnnealingLR(const Config& cfg)
      : ParamScheduler(cfg), o_(CosineAnnealingLROptions::table().parse(cfg)) {}
  double compute(double t, double total, double v) const override {
    // Past T_max the curve goes on (rises again), as MMEngine's.
    double T = o_.t_max ? *o_.t_max * scale() : total;
    return o_.eta_min + (v - o_.eta_min) * (1 + std::cos(M_PI * t / T)) / 2;
  }

private:
  CosineAnnealingLROptions o_;
};

struct MultiStepLROptions {
  std::vector<double> milestones; // required
  double gamma = 0.1;
  static OptionTable<MultiStepLROptions> table() {
    using O = MultiStepLROptions;
    return scheduler_table<O>("Multiplies the value by gamma at each milestone.")
        .required("milestones", &O::milestones, "steps (epochs if by_epoch)",
                  check::each(check::ge(0)))
        .optional("gamma", &O::gamma, "factor per milestone");
  }
};

class MultiStepLR final : public ParamScheduler {
public:
  explicit MultiStepLR(const Config& cfg)
      : ParamScheduler(cfg), o_(MultiStepLROptions::table().parse(cfg)) {}
  // Milestones count from `begin`, as MMEngine's.
  double compute(double t, double, double v) const override {
    for (double m : o_.milestones)
      if (t >= m * scale()) v *= o_.gamma;
    return v;
  }

private:
  MultiStepLROptions o_;
};

template <class S> std::shared_ptr<ParamScheduler> make(const Config& cfg) {
  return std::make_shared<S>(cfg);
}

} // namespace

void register_schedulers(Registrar& r) {
  r.add<ParamScheduler>("LinearLR", &make<LinearLR>, LinearLROptions::table().schema());
  r.add<ParamScheduler>("CosineAnnealingLR", &make<CosineAnnealingLR>,
                        CosineAnnealingLROptions::table().schema());
  r.add<ParamScheduler>("MultiStepLR", &make<MultiStepLR>, MultiStepLROptions::table().schema());
}

} // namespace selfsup::core
