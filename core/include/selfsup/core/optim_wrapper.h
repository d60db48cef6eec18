#pragma once
// The optim wrapper (MMEngine's OptimWrapper / AmpOptimWrapper with the
// DefaultOptimWrapperConstructor): builds the optimizer over per-parameter groups from
// paramwise_cfg, and owns what happens between a loss and an updated model: autocast, loss
// scaling, backward, gradient accumulation, gradient synchronisation across processes,
// unscaling, clipping, the optimizer step and zeroing the gradients. Built from the
// `optim_wrapper` config:
//
//   {"type": "OptimWrapper" | "AmpOptimWrapper",
//    "optimizer": {"type": "LARS", "lr": 0.3, ...},            // any registered optimizer
//    "paramwise_cfg": {"custom_keys": {"bn": {"decay_mult": 0, "lars_exclude": true},
//                                      "head": {"lr": 0.01, "momentum": 0.8}},
//                      "norm_decay_mult": 0, "bias_decay_mult": 0, "bias_lr_mult": 2,
//                      "dwconv_decay_mult": 0, "flat_decay_mult": 0,
//                      "bypass_duplicate": false},
//    "clip_grad": {"max_norm": 10, "norm_type": 2} | {"type": "value", "clip_value": 1},
//    "accumulative_counts": 1,
//    "skip_nonfinite": false,       // true: a NaN/Inf loss skips its step (counted) instead
//                                   // of stopping the run
//    "dtype": "bfloat16" | "float16",                           // AmpOptimWrapper only
//    "loss_scale": "dynamic" | 512.0 | {"init_scale": ..., ...}} // AmpOptimWrapper only
//
// AmpOptimWrapper as MMEngine's: autocast to `dtype` (default: bfloat16 on the CPU, whose
// autocast in LibTorch 1.13 knows no other, float16 on CUDA, torch's CUDA default), and on
// CUDA a loss scaler (LossScaler, torch's GradScaler; `loss_scale` default "dynamic") whatever
// the dtype, as MMEngine always builds one. On the CPU torch's GradScaler disables itself, so
// there is none: a given loss_scale is logged once as not applied.
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include <torch/nn/module.h>
#include <torch/optim/optimizer.h>
#include <torch/types.h>

#include <selfsup/config.h>
#include <selfsup/core/export.h>
#include <selfsup/core/loss_scaler.h>
#include <selfsup/json.h>
#include <selfsup/options.h>

namespace selfsup {
class OptimizerFactory;
}

namespace selfsup::core {

/// Autocast to a lower precision on one device while alive (AmpOptimWrapper's
/// optim_context); restores the previous autocast state when destroyed.
class SELFSUP_CORE_API AutocastGuard {
public:
  AutocastGuard(torch::Device device, torch::ScalarType dtype);
  ~AutocastGuard();
  AutocastGuard(const AutocastGuard&) = delete;
  AutocastGuard& operator=(const AutocastGuard&) = delete;

private:
  bool cuda_;
  bool was_enabled_ = false;
  torch::ScalarType was_dtype_ = torch::kBFloat16;
};

/// `optim_wrapper.clip_grad`: MMEngine's clip_grad (torch's clip_grad_norm_ or
/// clip_grad_value_).
struct SELFSUP_CORE_API ClipGradOptions {
  std::string type = "norm";
  std::optional<double> max_norm;
  double norm_type = 2.0;
  std::optional<double> clip_value;
  /// torch's clip_grad_norm_ error_if_nonfinite: a NaN or Inf total norm is an error.
  bool error_if_nonfinite = false;
  static OptionTable<ClipGradOptions> table();
};

/// `optim_wrapper.paramwise_cfg`: MMEngine's DefaultOptimWrapperConstructor options. A
/// multiplier that is not given is not applied.
struct SELFSUP_CORE_API ParamwiseOptions {
  /// Name substring -> {lr_mult, decay_mult, and the optimizer's group keys}.
  Config custom_keys;
  std::optional<double> norm_decay_mult;
  std::optional<double> bias_decay_mult;
  std::optional<double> bias_lr_mult;
  std::optional<double> dwconv_decay_mult;
  std::optional<double> flat_decay_mult;
  bool bypass_duplicate = false;
  static OptionTable<ParamwiseOptions> table();
};

/// The `optim_wrapper` config.
struct SELFSUP_CORE_API OptimWrapperOptions {
  std::string type = "OptimWrapper";
  Config optimizer;
  std::optional<ParamwiseOptions> paramwise_cfg;
  std::optional<ClipGradOptions> clip_grad;
  int64_t accumulative_counts = 1;
  bool skip_nonfinite = false;
  /// AmpOptimWrapper's autocast dtype, "bfloat16" or "float16" (absent: by device).
  std::optional<std::string> dtype;
  /// AmpOptimWrapper's loss_scale: "dynamic", a number (static) or a dict of
  /// LossScalerOptions (absent: "dynamic").
  Json loss_scale;
  static OptionTable<OptimWrapperOptions> table();
};

class SELFSUP_CORE_API OptimWrapper {
public:
  /// Builds the optimizer (kind "optimizer", `optimizer.type`) over one param group per
  /// parameter of `model` (MMEngine 0.8.4's DefaultOptimWrapperConstructor: a matching custom
  /// key, the longest one, wins and sets every key it has; else bias_lr_mult, then the first
  /// of the norm, bias, depth-wise conv and flat decay rules). A parameter that does not
  /// require a gradient gets no rule. Config errors are ConfigErrors naming the JSON path.
  /// `device` is where training runs (default: the device of the model's first parameter): it
  /// picks AmpOptimWrapper's default dtype and whether it scales the loss (CUDA), and refuses
  /// float16 on the CPU. The scaler's arithmetic does not depend on it, so a test may name
  /// CUDA for a CPU model to drive the scaler.
  OptimWrapper(const Config& optim_wrapper_cfg, torch::nn::Module& model,
               std::optional<torch::Device> device = std::nullopt);
  ~OptimWrapper();
  OptimWrapper(const OptimWrapper&) = delete;
  OptimWrapper& operator=(const OptimWrapper&) = delete;

  /// Autocast to cast_dtype() on `device` while the guard lives when this is an
  /// AmpOptimWrapper; null (nothing to do) otherwise. float16 on the CPU is a ValueError.
  [[nodiscard]] std::unique_ptr<AutocastGuard> autocast(torch::Device device) const;

  /// loss.backward() (divided by the accumulation window's length, times the loss scale when
  /// there is a scaler), then at the end of a window (every accumulative_counts iterations of
  /// the run, and at its end; `iter` is the 0-based global iteration, `max_iters` the run's
  /// total): gradient synchronisation (the mean over processes when the world size is > 1),
  /// with a scaler the gradients divided by the scale (an Inf or NaN in any, on any rank since
  /// the synchronised gradients carry it, skips the step: no clipping, no update, the
  /// gradients dropped, the scale lowered), clipping, step, zero_grad. Appends "grad_norm" to
  /// `scalars` when clipping by norm, and "loss_scale" (the scale after this window) with a
  /// scaler. Returns whether the optimizer stepped.
  bool update_params(const torch::Tensor& loss, int64_t iter, int64_t max_iters,
                     std::vector<std::pair<std::string, double>>& scalars);
  /// Drops every gradient (they become undefined, as PyTorch's set_to_none): a parameter that
  /// gets no gradient before the next step is not updated, nor decayed.
  void zero_grad();

  [[nodiscard]] torch::optim::Optimizer& optimizer() { return *optimizer_; }
  [[nodiscard]] const torch::optim::Optimizer& optimizer() const { return *optimizer_; }
  /// One group per parameter; the parameter's dotted name.
  [[nodiscard]] size_t num_groups() const { return names_.size(); }
  [[nodiscard]] const std::string& group_name(size_t group) const { return names_.at(group); }
  /// The group's lr before any schedule (the optimizer's lr times the group's lr_mult).
  [[nodiscard]] double initial_lr(size_t group) const { return initial_lrs_.at(group); }
  [[nodiscard]] double lr(size_t group) const;
  void set_lr(size_t group, double lr);

  [[nodiscard]] int64_t accumulative_counts() const { return options_.accumulative_counts; }
  [[nodiscard]] bool amp() const { return options_.type == "AmpOptimWrapper"; }
  /// AmpOptimWrapper's autocast dtype (bfloat16 or float16).
  [[nodiscard]] torch::ScalarType cast_dtype() const { return cast_dtype_; }
  /// The loss scaler, or null when the loss is not scaled.
  [[nodiscard]] const LossScaler* loss_scaler() const { return scaler_ ? &*scaler_ : nullptr; }
  /// Whether a step whose loss is NaN or Inf is skipped (and counted) rather than stopping
  /// the run (`skip_nonfinite`).
  [[nodiscard]] bool skip_nonfinite() const { return options_.skip_nonfinite; }

  /// PyTorch's optimizer state_dict layout, each group with its "initial_lr" (as PyTorch's
  /// schedulers add it), and with a scaler its state under "loss_scaler" (as MMEngine's
  /// AmpOptimWrapper); tensors on the CPU.
  [[nodiscard]] c10::IValue state_dict() const;
  /// Restores state_dict(); throws ValueError when it does not fit this optimizer (and then
  /// changes nothing of the scaler). A saved "loss_scaler" restores the scaler; a wrapper
  /// without a scaler passes it over, as MMEngine's OptimWrapper and a disabled GradScaler
  /// do. A state without one leaves the scaler at its configured start.
  void load_state_dict(const c10::IValue& state);

private:
  void build_groups(torch::nn::Module& model, const Config& cfg);
  void sync_gradients();

  OptimWrapperOptions options_;
  std::string optimizer_type_;
  std::shared_ptr<OptimizerFactory> factory_;
  std::unique_ptr<torch::optim::Optimizer> optimizer_;
  std::vector<std::string> names_;
  std::vector<double> initial_lrs_;
  std::vector<torch::Tensor> params_; // every parameter of every group, in group order
  torch::ScalarType cast_dtype_ = torch::kBFloat16;
  std::optional<LossScaler> scaler_;
};

/// `selfsup train --amp`, as MMSelfSup's tools/train.py: optim_wrapper.type becomes
/// AmpOptimWrapper and loss_scale defaults to "dynamic". Returns the line to log when the
/// config already was an AmpOptimWrapper ("" otherwise). A ConfigError when optim_wrapper is
/// not a dict or of another type (naming optim_wrapper.type).
SELFSUP_CORE_API std::string enable_amp(Json& cfg);

} // namespace selfsup::core
