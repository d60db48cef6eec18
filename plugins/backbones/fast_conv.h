#pragma once
// A 2-D convolution whose weight gradient, for bf16 inputs of small output maps, is computed as
// one matrix product over the unfolded input (im2col) instead of by oneDNN's direct
// backward-weights kernel. On this platform's AMX kernels (LibTorch 1.13, oneDNN 2.6) the direct
// kernel is 2.4-2.8x slower than the matrix product for ResNet's 4x4 layer4 maps at batch 512
// (docs/performance.md); forward and input gradient stay the library's.
#include <torch/nn/modules/conv.h>
#include <torch/types.h>

namespace selfsup::plugins::backbones {

/// conv(x), through the matrix-product weight gradient when `uses_matmul_weight_grad` holds.
torch::Tensor conv2d(const torch::nn::Conv2d& conv, const torch::Tensor& x);

/// True when a gradient will be taken (grad mode, the weight requires grad), the computation is
/// bf16 on the CPU (bf16 tensors, or CPU autocast to bf16), `x` is channels-last, the conv has
/// no bias, zero padding, dilation 1 and one group, and its output map has at most 16 pixels.
/// SELFSUP_MATMUL_WEIGHT_GRAD=0 in the environment turns it off (for before/after timing).
bool uses_matmul_weight_grad(const torch::nn::Conv2d& conv, const torch::Tensor& x);

/// The weight gradient of conv2d(x, w) (no bias, `stride`, `padding`, dilation 1, one group)
/// for the output gradient `grad_out`, by im2col and one matrix product, in grad_out's dtype;
/// [O, C, kh, kw] with channels-last strides.
torch::Tensor conv2d_weight_grad_matmul(const torch::Tensor& x, const torch::Tensor& grad_out,
                                        at::IntArrayRef kernel, at::IntArrayRef stride,
                                        at::IntArrayRef padding);

} // namespace selfsup::plugins::backbones
