#include <selfsup/core/loss_scaler.h>

#include <cmath>

#include <torch/torch.h>

#include <selfsup/errors.h>

namespace selfsup::core {

namespace {
[[noreturn]] void fail_state(const std::string& source, const std::string& what) {
  throw ValueError(source + ": " + what);
}
} // namespace

OptionTable<LossScalerOptions> LossScalerOptions::table() {
  using O = LossScalerOptions;
  using namespace check;
  return OptionTable<O>("Dynamic loss scaling (torch.cuda.amp.GradScaler's arguments)", O())
      .optional("init_scale", &O::init_scale, "the first scale", gt(0))
      .optional("growth_factor", &O::growth_factor,
                "the scale is multiplied by it after growth_interval steps without Inf or NaN",
                gt(1))
      .optional("backoff_factor", &O::backoff_factor,
                "the scale is multiplied by it when a step's gradients hold an Inf or a NaN (the "
                "step is skipped)",
                gt(0), lt(1))
      .optional("growth_interval", &O::growth_interval,
                "consecutive good steps before the scale grows", ge(1))
      .optional("enabled", &O::enabled, "false: no loss scaling");
}

LossScaler::LossScaler(const LossScalerOptions& options)
    : options_(options), scale_(float(options.init_scale)) {}

LossScaler LossScaler::fixed(double scale) {
  LossScalerOptions o;
  o.init_scale = scale;
  LossScaler s(o);
  s.dynamic_ = false;
  return s;
}

LossScalerOptions LossScaler::options_of(const Config& loss_scale) {
  const Json& v = loss_scale.json();
  if (v.is_string() && v.as_string() == "dynamic") return LossScalerOptions{};
  if (v.is_number() && v.as_number() > 0 && std::isfinite(v.as_number())) {
    LossScalerOptions o;
    o.init_scale = v.as_number();
    return o;
  }
  if (v.is_object()) return LossScalerOptions::table().parse(loss_scale);
  loss_scale.fail("expected \"dynamic\", a number > 0 (a static scale) or a dict of "
                  "init_scale, growth_factor, backoff_factor, growth_interval, enabled; got " +
                  v.dump());
}

LossScaler LossScaler::from_config(const Config& loss_scale) {
  const LossScalerOptions o = options_of(loss_scale);
  return loss_scale.json().is_number() ? fixed(o.init_scale) : LossScaler(o);
}

torch::Tensor LossScaler::scale_loss(const torch::Tensor& loss) const {
  return loss * double(scale_);
}

bool LossScaler::unscale(const std::vector<torch::Tensor>& params) const {
  torch::NoGradGuard no_grad;
  // GradScaler: the float32 reciprocal of the scale, computed in double.
  const float inv = float(1.0 / double(scale_));
  std::vector<torch::Tensor> nonfinite;
  for (const auto& p : params) {
    if (!p.grad().defined()) continue;
    torch::Tensor g = p.grad();
    nonfinite.push_back(torch::isfinite(g).logical_not().any());
    g.mul_(inv);
  }
  if (nonfinite.empty()) return false;
  return torch::stack(nonfinite).any().item<bool>(); // one device sync per step
}

void LossScaler::update(bool found_inf) {
  if (!dynamic_) {
    scale_ = float(options_.init_scale);
    return;
  }
  // torch's _amp_update_scale_.
  if (found_inf) {
    scale_ = float(double(scale_) * options_.backoff_factor);
    growth_tracker_ = 0;
    return;
  }
  const int64_t good = growth_tracker_ + 1;
  if (good == options_.growth_interval) {
    const float grown = float(double(scale_) * options_.growth_factor);
    if (std::isfinite(grown)) scale_ = grown; // never past float32's range
    growth_tracker_ = 0;
  } else {
    growth_tracker_ = good;
  }
}

c10::impl::GenericDict LossScaler::state_dict() const {
  c10::impl::GenericDict d(c10::StringType::get(), c10::AnyType::get());
  d.insert("scale", double(scale_));
  d.insert("growth_factor", options_.growth_factor);
  d.insert("backoff_factor", options_.backoff_factor);
  d.insert("growth_interval", options_.growth_interval);
  d.insert("_growth_tracker", growth_tracker_);
  return d;
}

void LossScaler::load_state_dict(const c10::IValue& state, const std::string& source) {
  auto fail = [&](const std::string& what) { fail_state(source, what); };
  if (!state.isGenericDict())
    fail("expected a dict (GradScaler.state_dict()), got " + state.tagKind());
  const auto d = state.toGenericDict();
  if (d.empty())
    fail("empty (saved from a disabled GradScaler); expected scale, growth_factor, "
         "backoff_factor, growth_interval and _growth_tracker");
  auto number = [&](const char* key) {
    if (!d.contains(key)) fail(std::string(key) + ": missing");
    const c10::IValue v = d.at(key);
    if (v.isDouble()) return v.toDouble();
    if (!v.isInt())
      fail_state(source, std::string(key) + ": expected a number, got " + v.tagKind());
    return double(v.toInt());
  };
  auto integer = [&](const char* key) {
    if (!d.contains(key)) fail(std::string(key) + ": missing");
    const c10::IValue v = d.at(key);
    if (!v.isInt()) fail(std::string(key) + ": expected an int, got " + v.tagKind());
    return v.toInt();
  };
  const double scale = number("scale");
  const double growth = number("growth_factor");
  const double backoff = number("backoff_factor");
  const int64_t interval = integer("growth_interval");
  const int64_t tracker = integer("_growth_tracker");
  if (!(scale > 0) || !std::isfinite(scale))
    fail("scale: expected a finite number > 0, got " + std::to_string(scale));
  if (!(growth > 1)) fail("growth_factor: expected > 1, got " + std::to_string(growth));
  if (!(backoff > 0 && backoff < 1))
    fail("backoff_factor: expected in (0, 1), got " + std::to_string(backoff));
  if (interval < 1) fail("growth_interval: expected >= 1, got " + std::to_string(interval));
  if (tracker < 0 || tracker >= interval)
    fail("_growth_tracker: expected in [0, growth_interval), got " + std::to_string(tracker));
  scale_ = float(scale);
  options_.growth_factor = growth;
  options_.backoff_factor = backoff;
  options_.growth_interval = interval;
  growth_tracker_ = tracker;
}

} // namespace selfsup::core
