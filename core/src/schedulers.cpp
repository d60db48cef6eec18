// MMEngine's LR schedulers in closed form: each maps (progress, value so far) to a value.
#include <cmath>

#include <selfsup/interfaces/training.h>
#include <selfsup/registry.h>

#include "builtins.h"

namespace selfsup::core {

namespace {

class LinearLR final : public ParamScheduler {
public:
  explicit LinearLR(const Config& cfg)
      : ParamScheduler(cfg), start_(cfg.get<double>("start_factor")),
        end_(cfg.get<double>("end_factor")) {
    if (!(start_ >= 0 && start_ <= 1)) cfg.fail_key("start_factor", "expected in [0, 1]");
    if (!(end_ >= 0 && end_ <= 1)) cfg.fail_key("end_factor", "expected in [0, 1]");
  }
  // As MMEngine: the factor reaches end_factor at the last step of [begin, end).
  double compute(double t, double total, double v) const override {
    const double steps = std::max(1.0, total - 1);
    return v * (start_ + (end_ - start_) * std::min(1.0, t / steps));
  }

private:
  double start_, end_;
};

class CosineAnnealingLR final : public ParamScheduler {
public:
  explicit CosineAnnealingLR(const Config& cfg)
      : ParamScheduler(cfg), t_max_(cfg.get<double>("T_max", -1.0)),
        eta_min_(cfg.get<double>("eta_min")) {
    if (cfg.has("T_max") && t_max_ <= 0) cfg.fail_key("T_max", "expected > 0");
  }
  double compute(double t, double total, double v) const override {
    // Past T_max the curve goes on (rises again), as MMEngine's.
    double T = t_max_ > 0 ? t_max_ * scale() : total;
    return eta_min_ + (v - eta_min_) * (1 + std::cos(M_PI * t / T)) / 2;
  }

private:
  double t_max_, eta_min_;
};

class MultiStepLR final : public ParamScheduler {
public:
  explicit MultiStepLR(const Config& cfg)
      : ParamScheduler(cfg), milestones_(cfg.get<std::vector<double>>("milestones")),
        gamma_(cfg.get<double>("gamma")) {}
  // Milestones count from `begin`, as MMEngine's.
  double compute(double t, double, double v) const override {
    for (double m : milestones_)
      if (t >= m * scale()) v *= gamma_;
    return v;
  }

private:
  std::vector<double> milestones_;
  double gamma_;
};

} // namespace

void register_schedulers(Registrar& r) {
  r.add<ParamScheduler>(
      "LinearLR", [](const Config& c) { return std::make_shared<LinearLR>(c); },
      ParamScheduler::base_schema("Scales the value by a factor moving linearly from "
                                  "start_factor to end_factor over [begin, end).")
          .optional("start_factor", ArgType::Float, 1.0 / 3, "factor at begin")
          .optional("end_factor", ArgType::Float, 1.0, "factor at end"));
  r.add<ParamScheduler>(
      "CosineAnnealingLR", [](const Config& c) { return std::make_shared<CosineAnnealingLR>(c); },
      ParamScheduler::base_schema("Cosine annealing from the value to eta_min over T_max.")
          .optional("T_max", ArgType::Float, Json(), "period (default end - begin)")
          .optional("eta_min", ArgType::Float, 0.0, "final value"));
  r.add<ParamScheduler>(
      "MultiStepLR", [](const Config& c) { return std::make_shared<MultiStepLR>(c); },
      ParamScheduler::base_schema("Multiplies the value by gamma at each milestone.")
          .required("milestones", ArgType::FloatList, "steps (epochs if by_epoch)")
          .optional("gamma", ArgType::Float, 0.1, "factor per milestone"));
}

} // namespace selfsup::core
