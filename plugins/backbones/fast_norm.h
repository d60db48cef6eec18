#pragma once
// ResNet's BatchNorm in training, fused with what follows it: relu(bn(x) + residual) in two
// passes over the data forward and two backward, where LibTorch 1.13 runs BatchNorm, the
// residual addition, ReLU and their backward as separate ops (about seven passes forward and
// nine backward, each in its own kernel). Same arithmetic as torch's BatchNorm (batch mean and
// biased variance to normalise, unbiased variance into running_var, num_batches_tracked, the
// momentum or, without one, the cumulative average); one bf16 rounding of the output instead of
// one per op. docs/performance.md has the figures.
#include <torch/types.h>

#include <selfsup/bricks/norm.h>

namespace selfsup::plugins::backbones {

/// act(bn(x) + residual), act = ReLU when `relu`, none otherwise; `residual` may be undefined
/// (no addition). Fused when `uses_fused_norm` holds, else bn's forward, then + and ReLU.
torch::Tensor batch_norm_act(const bricks::BatchNorm2d& bn, const torch::Tensor& x,
                             const torch::Tensor& residual, bool relu);

/// True when bn is in training mode and not synchronised across ranks, tracks running
/// statistics, `x` is a 4-D CPU float or bf16 tensor, contiguous channels-last or contiguous
/// NCHW, with more than one value per channel, and `residual` (if defined) has x's sizes,
/// dtype and strides. SELFSUP_FUSED_BN=0 in the environment turns it off (for before/after
/// timing).
bool uses_fused_norm(const bricks::BatchNorm2d& bn, const torch::Tensor& x,
                     const torch::Tensor& residual);

} // namespace selfsup::plugins::backbones
