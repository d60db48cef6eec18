#pragma once
// ResNet's convolutions in training, on two paths faster here than the direct kernels LibTorch
// 1.13 asks oneDNN 2.6 for (docs/performance.md has the figures); every other call is the
// module's own forward.
// - bf16 with output maps of at most 16 pixels (layer4 at 32 px): the weight gradient as one
//   matrix product over the unfolded input (im2col), 2.4-2.8x faster than oneDNN's direct AMX
//   backward-weights kernel there; forward and input gradient stay the library's.
// - fp32 3x3 stride-1: forward and both gradients through oneDNN's Winograd F(4x4, 3x3)
//   kernels, which do about 2x fewer multiplications than direct convolution.
#include <torch/nn/modules/conv.h>
#include <torch/types.h>

namespace selfsup::plugins::backbones {

/// conv(x), through the matrix-product weight gradient when `uses_matmul_weight_grad` holds,
/// through Winograd when `uses_winograd` does, else the module's forward.
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

/// True when a gradient will be taken (grad mode, the weight requires grad), `x` and the weight
/// are fp32 on the CPU outside autocast, the conv is 3x3, stride 1, padding 1 (zeros),
/// dilation 1, one group, no bias, and oneDNN has a Winograd kernel for the shape (it needs
/// channel counts it can block, and AVX-512). SELFSUP_WINOGRAD=0 in the environment turns it off.
bool uses_winograd(const torch::nn::Conv2d& conv, const torch::Tensor& x);

/// What both paths need: a gradient will be taken (grad mode, the weight requires grad), `x`
/// is a 4-D CPU tensor, and the conv has no bias, one group, numeric zero padding, dilation 1.
bool is_plain_trained_conv(const torch::nn::Conv2d& conv, const torch::Tensor& x);

/// False when the environment variable `name` is "0" (the paths' off switches).
bool switched_on(const char* name);

/// conv2d(x, w, padding 1) by Winograd, differentiable in x and w; the output and the input
/// gradient in x's memory format, the weight gradient in w's. Only where uses_winograd holds.
torch::Tensor winograd_conv2d(const torch::Tensor& x, const torch::Tensor& w);

} // namespace selfsup::plugins::backbones
