#pragma once
// The loss scaler of float16 mixed precision: torch.cuda.amp.GradScaler's algorithm, as
// MMEngine's AmpOptimWrapper drives it. The loss is multiplied by the scale before backward so
// that small float16 gradients do not flush to zero; before clipping and the optimizer step the
// gradients are divided by it again. A step whose gradients hold an Inf or a NaN (the scale was
// too large) is skipped and the scale multiplied by backoff_factor; after growth_interval
// consecutive good steps it is multiplied by growth_factor (unless that overflows float32). A
// static scale (MMEngine's number `loss_scale`) never changes, though it still skips such
// steps. The scale is a float32, as GradScaler keeps it. Built from `optim_wrapper.loss_scale`:
//
//   "dynamic"                                        GradScaler() (65536, 2, 0.5, 2000)
//   512.0                                            a static scale of 512
//   {"init_scale": 1024, "growth_factor": 2, "backoff_factor": 0.5, "growth_interval": 100,
//    "enabled": true}                                GradScaler(**loss_scale)
#include <cstdint>
#include <string>
#include <vector>

#include <ATen/core/Dict.h>
#include <ATen/core/ivalue.h>
#include <torch/types.h>

#include <selfsup/config.h>
#include <selfsup/core/export.h>
#include <selfsup/options.h>

namespace selfsup::core {

/// `optim_wrapper.loss_scale` as a dict: GradScaler's arguments, with its defaults.
struct SELFSUP_CORE_API LossScalerOptions {
  double init_scale = 65536.0;
  double growth_factor = 2.0;
  double backoff_factor = 0.5;
  int64_t growth_interval = 2000;
  /// false: no loss scaling at all (GradScaler(enabled=False)).
  bool enabled = true;
  static OptionTable<LossScalerOptions> table();
};

class SELFSUP_CORE_API LossScaler {
public:
  /// Dynamic scaling with GradScaler's parameters (`options.enabled` is the caller's to read:
  /// a scaler always scales).
  explicit LossScaler(const LossScalerOptions& options = {});
  /// A static scale (MMEngine passes a float loss_scale to GradScaler and resets the scale to
  /// it after every step).
  [[nodiscard]] static LossScaler fixed(double scale);
  /// Reads `optim_wrapper.loss_scale`: "dynamic", a number > 0 or a dict of
  /// LossScalerOptions; anything else is a ConfigError naming the path.
  [[nodiscard]] static LossScalerOptions options_of(const Config& loss_scale);
  /// The scaler `loss_scale` asks for (static for a number, else dynamic).
  [[nodiscard]] static LossScaler from_config(const Config& loss_scale);

  /// The current scale (what the next loss is multiplied by).
  [[nodiscard]] double scale() const { return double(scale_); }
  /// Consecutive steps without Inf or NaN since the scale last changed (GradScaler's
  /// _growth_tracker).
  [[nodiscard]] int64_t growth_tracker() const { return growth_tracker_; }
  [[nodiscard]] bool dynamic() const { return dynamic_; }
  [[nodiscard]] const LossScalerOptions& options() const { return options_; }

  /// `loss` times the scale.
  [[nodiscard]] torch::Tensor scale_loss(const torch::Tensor& loss) const;
  /// Divides every defined gradient of `params` by the scale, in place (GradScaler.unscale_:
  /// each multiplied by the float32 reciprocal); returns whether any holds an Inf or a NaN.
  /// Call once per step, after the gradients are complete (accumulated and synchronised).
  [[nodiscard]] bool unscale(const std::vector<torch::Tensor>& params) const;
  /// After the step, or its skip (`found_inf`): GradScaler.update().
  void update(bool found_inf);

  /// GradScaler.state_dict(): {"scale": float, "growth_factor": float, "backoff_factor":
  /// float, "growth_interval": int, "_growth_tracker": int}.
  [[nodiscard]] c10::impl::GenericDict state_dict() const;
  /// GradScaler.load_state_dict(): all five entries (the factors and interval too, as
  /// torch's). A static scaler takes them but keeps its own scale after the next step, as
  /// MMEngine's. Throws ValueError naming `source` when an entry is missing or mistyped.
  void load_state_dict(const c10::IValue& state, const std::string& source);

private:
  LossScalerOptions options_;
  bool dynamic_ = true;
  float scale_;
  int64_t growth_tracker_ = 0;
};

} // namespace selfsup::core
