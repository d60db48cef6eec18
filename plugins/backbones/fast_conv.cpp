#include "fast_conv.h"

#include <cstdlib>
#include <cstring>
#include <vector>

#include <ATen/autocast_mode.h>
#include <torch/autograd.h>
#include <torch/nn/functional/conv.h>

namespace selfsup::plugins::backbones {

namespace {

using torch::autograd::AutogradContext;
using torch::autograd::variable_list;

// conv2d(x, w) in bf16: the library's forward and input gradient, the weight gradient by
// conv2d_weight_grad_matmul. Gradients come back in the dtypes of x and w (autocast's fp32
// master weights get an fp32 gradient, as through autocast's own cast).
class SmallConv2d final : public torch::autograd::Function<SmallConv2d> {
public:
  static torch::Tensor forward(AutogradContext* ctx, const torch::Tensor& x, const torch::Tensor& w,
                               std::vector<int64_t> stride, std::vector<int64_t> padding) {
    const torch::Tensor xb = x.to(torch::kBFloat16);
    const torch::Tensor wb = w.to(torch::kBFloat16);
    ctx->save_for_backward({xb, wb});
    ctx->saved_data["x_dtype"] = int64_t(x.scalar_type());
    ctx->saved_data["w_dtype"] = int64_t(w.scalar_type());
    ctx->saved_data["stride"] = stride;
    ctx->saved_data["padding"] = padding;
    return at::convolution(xb, wb, {}, stride, padding, {1, 1}, false, {0, 0}, 1);
  }

  static variable_list backward(AutogradContext* ctx, variable_list grad_outputs) {
    const auto saved = ctx->get_saved_variables();
    const torch::Tensor& xb = saved[0];
    const torch::Tensor& wb = saved[1];
    const std::vector<int64_t> stride = ctx->saved_data["stride"].toIntVector();
    const std::vector<int64_t> padding = ctx->saved_data["padding"].toIntVector();
    const auto x_dtype = c10::ScalarType(ctx->saved_data["x_dtype"].toInt());
    const auto w_dtype = c10::ScalarType(ctx->saved_data["w_dtype"].toInt());
    const torch::Tensor g =
        grad_outputs[0].to(torch::kBFloat16).contiguous(at::MemoryFormat::ChannelsLast);
    torch::Tensor gx, gw;
    if (ctx->needs_input_grad(0))
      gx = std::get<0>(at::convolution_backward(g, xb, wb, c10::nullopt, stride, padding, {1, 1},
                                                false, {0, 0}, 1, {true, false, false}))
               .to(x_dtype);
    if (ctx->needs_input_grad(1))
      gw = conv2d_weight_grad_matmul(xb, g, wb.sizes().slice(2), stride, padding).to(w_dtype);
    return {gx, gw, torch::Tensor(), torch::Tensor()};
  }
};

} // namespace

bool switched_on(const char* name) {
  const char* v = std::getenv(name);
  return v == nullptr || std::strcmp(v, "0") != 0;
}

bool is_plain_trained_conv(const torch::nn::Conv2d& conv, const torch::Tensor& x) {
  const auto& o = conv->options;
  return torch::GradMode::is_enabled() && conv->weight.requires_grad() && !conv->bias.defined() &&
         x.dim() == 4 && x.device().is_cpu() && o.groups() == 1 &&
         c10::holds_alternative<torch::ExpandingArray<2>>(o.padding()) &&
         c10::holds_alternative<torch::enumtype::kZeros>(o.padding_mode()) &&
         o.dilation()->at(0) == 1 && o.dilation()->at(1) == 1;
}

bool uses_matmul_weight_grad(const torch::nn::Conv2d& conv, const torch::Tensor& x) {
  static const bool on = switched_on("SELFSUP_MATMUL_WEIGHT_GRAD");
  if (!on || !is_plain_trained_conv(conv, x)) return false;
  const bool bf16 =
      (x.scalar_type() == torch::kBFloat16 && conv->weight.scalar_type() == torch::kBFloat16) ||
      (at::autocast::is_cpu_enabled() &&
       at::autocast::get_autocast_cpu_dtype() == torch::kBFloat16);
  if (!bf16 || x.suggest_memory_format() != at::MemoryFormat::ChannelsLast) return false;
  const auto& o = conv->options;
  const auto& pad = c10::get<torch::ExpandingArray<2>>(o.padding());
  const int64_t out_h =
      (x.size(2) + 2 * pad->at(0) - o.kernel_size()->at(0)) / o.stride()->at(0) + 1;
  const int64_t out_w =
      (x.size(3) + 2 * pad->at(1) - o.kernel_size()->at(1)) / o.stride()->at(1) + 1;
  return out_h * out_w <= 16;
}

torch::Tensor conv2d(const torch::nn::Conv2d& conv, const torch::Tensor& x) {
  if (uses_winograd(conv, x)) return winograd_conv2d(x, conv->weight);
  if (!uses_matmul_weight_grad(conv, x)) return conv.ptr()->forward(x);
  const auto& pad = c10::get<torch::ExpandingArray<2>>(conv->options.padding());
  const auto& stride = *conv->options.stride();
  return SmallConv2d::apply(x, conv->weight, std::vector<int64_t>(stride.begin(), stride.end()),
                            std::vector<int64_t>(pad->begin(), pad->end()));
}

torch::Tensor conv2d_weight_grad_matmul(const torch::Tensor& x, const torch::Tensor& grad_out,
                                        at::IntArrayRef kernel, at::IntArrayRef stride,
                                        at::IntArrayRef padding) {
  const int64_t n = x.size(0), c = x.size(1), o = grad_out.size(1);
  const int64_t out_h = grad_out.size(2), out_w = grad_out.size(3);
  const int64_t kh = kernel[0], kw = kernel[1];
  const torch::Tensor padded =
      padding[0] == 0 && padding[1] == 0
          ? x
          : at::constant_pad_nd(x, {padding[1], padding[1], padding[0], padding[0]}, 0);
  const torch::Tensor nhwc = padded.permute({0, 2, 3, 1}); // [N, H, W, C]
  // Column (i, j, c) of row (n, y, x) is input pixel (y * stride + i, x * stride + j), channel
  // c: the taps side by side, so that the product's [O, kh, kw, C] is the weight gradient in
  // channels-last order.
  std::vector<torch::Tensor> taps;
  taps.reserve(size_t(kh * kw));
  for (int64_t i = 0; i < kh; ++i)
    for (int64_t j = 0; j < kw; ++j)
      taps.push_back(nhwc.slice(1, i, i + stride[0] * (out_h - 1) + 1, stride[0])
                         .slice(2, j, j + stride[1] * (out_w - 1) + 1, stride[1]));
  const torch::Tensor cols = at::stack(taps, 3).reshape({n * out_h * out_w, kh * kw * c});
  const torch::Tensor rows = grad_out.permute({0, 2, 3, 1}).reshape({n * out_h * out_w, o});
  return rows.t().mm(cols).view({o, kh, kw, c}).permute({0, 3, 1, 2});
}

} // namespace selfsup::plugins::backbones
