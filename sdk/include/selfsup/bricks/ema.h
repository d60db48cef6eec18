#pragma once
// Momentum-encoder brick shared by plugins (MoCo, BYOL, MoCo v3, DenseCL): a target network
// that follows an online network by exponential moving average, as MMEngine's
// ExponentialMovingAverage and MMSelfSup's CosineEMA do with `update_buffers=False`.
//
// The target is built from the same config as the online network (a second instance, so no
// Cloneable is needed) and starts as a copy of it. Parameters are averaged; buffers (BatchNorm
// statistics) are copied from the online network at every update, as upstream.
#include <cstdint>

#include <torch/nn/module.h>

#include <selfsup/export.h>

namespace selfsup::bricks {

/// Copies every parameter and buffer of `source` into `target` (no gradient). The two must
/// have the same parameter and buffer names and shapes; otherwise ValueError naming the first
/// difference.
SELFSUP_SDK_API void copy_module_state(torch::nn::Module& target, const torch::nn::Module& source);

/// Freezes `target`: requires_grad false on every parameter (targets are never optimised).
SELFSUP_SDK_API void freeze(torch::nn::Module& target);

/// One EMA update with MMSelfSup's convention, `momentum` the weight kept:
///   target_param = momentum * target_param + (1 - momentum) * source_param
/// for floating-point parameters; buffers copied from `source`. MoCo's momentum 0.999 is
/// MMEngine's ExponentialMovingAverage(momentum=0.001).
SELFSUP_SDK_API void ema_update(torch::nn::Module& target, const torch::nn::Module& source,
                                double momentum);

/// MMSelfSup's CosineEMA momentum at update `step` of `max_iters`: rises from `base` to `end`
/// with the cosine,  end - (end - base) * (cos(pi * step / max_iters) + 1) / 2.
SELFSUP_SDK_API double cosine_ema_momentum(double base, double end, int64_t step,
                                           int64_t max_iters);

/// The update MMEngine's averaged models make at their `step`-th call (0-based): the first
/// call copies (parameters and buffers), later calls average with `momentum`. Algorithms pass
/// the run's iteration (RunnerContext::iter()) as `step`, not a private counter, so a resumed
/// run continues the same curve.
SELFSUP_SDK_API void momentum_update(torch::nn::Module& target, const torch::nn::Module& source,
                                     double momentum, int64_t step);

} // namespace selfsup::bricks
