// fp32 3x3 stride-1 convolutions through oneDNN's Winograd F(4x4, 3x3) kernels (the same oneDNN
// 2.6 that LibTorch calls, which only ever asks it for direct convolution). See fast_conv.h.
#include <cstdlib>
#include <cstring>
#include <map>
#include <mutex>
#include <tuple>
#include <vector>

#include <ATen/autocast_mode.h>
#include <oneapi/dnnl/dnnl.hpp>
#include <torch/autograd.h>

#include "fast_conv.h"

namespace selfsup::plugins::backbones {

namespace {

using torch::autograd::AutogradContext;
using torch::autograd::variable_list;

dnnl::engine& cpu_engine() {
  static dnnl::engine engine(dnnl::engine::kind::cpu, 0);
  return engine;
}

// The three primitives of one problem shape (batch, channels in/out, height, width), in the
// blocked layouts oneDNN chose for them. Built once per shape and kept; a shape oneDNN has no
// Winograd kernel for is remembered as unsupported.
struct WinogradPrimitives {
  bool supported = false;
  dnnl::convolution_forward::primitive_desc fwd_pd;
  dnnl::convolution_backward_data::primitive_desc bwd_data_pd;
  dnnl::convolution_backward_weights::primitive_desc bwd_weights_pd;
  dnnl::convolution_forward fwd;
  dnnl::convolution_backward_data bwd_data;
  dnnl::convolution_backward_weights bwd_weights;
};

using Shape = std::tuple<int64_t, int64_t, int64_t, int64_t, int64_t>;

const WinogradPrimitives& primitives_for(const Shape& shape) {
  static std::mutex mutex;
  static std::map<Shape, WinogradPrimitives> cache;
  const std::lock_guard<std::mutex> lock(mutex);
  auto [it, inserted] = cache.try_emplace(shape);
  WinogradPrimitives& p = it->second;
  if (!inserted) return p;
  const auto [n, c, o, h, w] = shape;
  using dt = dnnl::memory::data_type;
  using tag = dnnl::memory::format_tag;
  const dnnl::memory::desc src({n, c, h, w}, dt::f32, tag::any);
  const dnnl::memory::desc weights({o, c, 3, 3}, dt::f32, tag::any);
  const dnnl::memory::desc dst({n, o, h, w}, dt::f32, tag::any);
  const dnnl::memory::dims stride{1, 1}, pad{1, 1};
  const auto alg = dnnl::algorithm::convolution_winograd;
  try {
    p.fwd_pd = dnnl::convolution_forward::primitive_desc(
        dnnl::convolution_forward::desc(dnnl::prop_kind::forward_training, alg, src, weights, dst,
                                        stride, pad, pad),
        cpu_engine());
    p.bwd_data_pd = dnnl::convolution_backward_data::primitive_desc(
        dnnl::convolution_backward_data::desc(alg, src, weights, dst, stride, pad, pad),
        cpu_engine(), p.fwd_pd);
    p.bwd_weights_pd = dnnl::convolution_backward_weights::primitive_desc(
        dnnl::convolution_backward_weights::desc(alg, src, weights, dst, stride, pad, pad),
        cpu_engine(), p.fwd_pd);
    p.fwd = dnnl::convolution_forward(p.fwd_pd);
    p.bwd_data = dnnl::convolution_backward_data(p.bwd_data_pd);
    p.bwd_weights = dnnl::convolution_backward_weights(p.bwd_weights_pd);
    p.supported = true;
  } catch (const dnnl::error&) {
    p.supported = false; // no Winograd kernel for this shape or CPU: the caller goes direct
  }
  return p;
}

Shape shape_of(const torch::Tensor& x, const torch::Tensor& w) {
  return {x.size(0), x.size(1), w.size(0), x.size(2), x.size(3)};
}

// A tensor's own layout (any strides) as a oneDNN memory over its data.
dnnl::memory as_memory(const torch::Tensor& t) {
  const dnnl::memory::desc desc(t.sizes().vec(), dnnl::memory::data_type::f32, t.strides().vec());
  return {desc, cpu_engine(), t.data_ptr()};
}

// `from` in the layout `desc` wants: `from` itself when it already has it, else a reordered copy
// (in a buffer that lives as long as the returned memory).
dnnl::memory in_layout(const dnnl::memory& from, const dnnl::memory::desc& desc,
                       dnnl::stream& stream) {
  if (from.get_desc() == desc) return from;
  dnnl::memory to(desc, cpu_engine());
  dnnl::reorder(from, to).execute(stream, const_cast<dnnl::memory&>(from), to);
  return to;
}

// A tensor shaped like `like` in `like`'s memory format, filled from `from` (any layout).
torch::Tensor to_tensor(const dnnl::memory& from, at::IntArrayRef sizes, const torch::Tensor& like,
                        dnnl::stream& stream) {
  torch::Tensor out =
      torch::empty(sizes, like.options().memory_format(like.suggest_memory_format()));
  dnnl::memory dst = as_memory(out);
  dnnl::reorder(from, dst).execute(stream, const_cast<dnnl::memory&>(from), dst);
  return out;
}

class WinogradConv2d final : public torch::autograd::Function<WinogradConv2d> {
public:
  static torch::Tensor forward(AutogradContext* ctx, const torch::Tensor& x,
                               const torch::Tensor& w) {
    const WinogradPrimitives& p = primitives_for(shape_of(x, w));
    dnnl::stream stream(cpu_engine());
    const dnnl::memory src = in_layout(as_memory(x), p.fwd_pd.src_desc(), stream);
    const dnnl::memory weights = in_layout(as_memory(w), p.fwd_pd.weights_desc(), stream);
    dnnl::memory dst(p.fwd_pd.dst_desc(), cpu_engine());
    p.fwd.execute(stream, {{DNNL_ARG_SRC, src}, {DNNL_ARG_WEIGHTS, weights}, {DNNL_ARG_DST, dst}});
    torch::Tensor y = to_tensor(dst, {x.size(0), w.size(0), x.size(2), x.size(3)}, x, stream);
    stream.wait();
    ctx->save_for_backward({x, w});
    return y;
  }

  static variable_list backward(AutogradContext* ctx, variable_list grad_outputs) {
    const auto saved = ctx->get_saved_variables();
    const torch::Tensor& x = saved[0];
    const torch::Tensor& w = saved[1];
    const torch::Tensor g = grad_outputs[0].contiguous(x.suggest_memory_format());
    const WinogradPrimitives& p = primitives_for(shape_of(x, w));
    dnnl::stream stream(cpu_engine());
    const dnnl::memory grad = as_memory(g);
    torch::Tensor gx, gw;
    // The output gradient in the blocked layout, reordered once when both passes want the same.
    dnnl::memory blocked_grad;
    auto grad_in = [&](const dnnl::memory::desc& desc) {
      if (!blocked_grad || blocked_grad.get_desc() != desc)
        blocked_grad = in_layout(grad, desc, stream);
      return blocked_grad;
    };
    if (ctx->needs_input_grad(0)) {
      const dnnl::memory diff_dst = grad_in(p.bwd_data_pd.diff_dst_desc());
      const dnnl::memory weights = in_layout(as_memory(w), p.bwd_data_pd.weights_desc(), stream);
      dnnl::memory diff_src(p.bwd_data_pd.diff_src_desc(), cpu_engine());
      p.bwd_data.execute(stream, {{DNNL_ARG_DIFF_DST, diff_dst},
                                  {DNNL_ARG_WEIGHTS, weights},
                                  {DNNL_ARG_DIFF_SRC, diff_src}});
      gx = to_tensor(diff_src, x.sizes(), x, stream);
    }
    if (ctx->needs_input_grad(1)) {
      const dnnl::memory diff_dst = grad_in(p.bwd_weights_pd.diff_dst_desc());
      const dnnl::memory src = in_layout(as_memory(x), p.bwd_weights_pd.src_desc(), stream);
      dnnl::memory diff_weights(p.bwd_weights_pd.diff_weights_desc(), cpu_engine());
      p.bwd_weights.execute(stream, {{DNNL_ARG_DIFF_DST, diff_dst},
                                     {DNNL_ARG_SRC, src},
                                     {DNNL_ARG_DIFF_WEIGHTS, diff_weights}});
      gw = to_tensor(diff_weights, w.sizes(), w, stream);
    }
    stream.wait();
    return {gx, gw};
  }
};

bool winograd_enabled_by_environment() {
  static const bool on = [] {
    const char* v = std::getenv("SELFSUP_WINOGRAD");
    return v == nullptr || std::strcmp(v, "0") != 0;
  }();
  return on;
}

} // namespace

bool uses_winograd(const torch::nn::Conv2d& conv, const torch::Tensor& x) {
  const auto& o = conv->options;
  if (!torch::GradMode::is_enabled() || !conv->weight.requires_grad() || conv->bias.defined())
    return false;
  if (x.dim() != 4 || !x.device().is_cpu() || x.scalar_type() != torch::kFloat ||
      conv->weight.scalar_type() != torch::kFloat || at::autocast::is_cpu_enabled() ||
      o.groups() != 1 || !c10::holds_alternative<torch::ExpandingArray<2>>(o.padding()) ||
      !c10::holds_alternative<torch::enumtype::kZeros>(o.padding_mode()))
    return false;
  const auto& pad = c10::get<torch::ExpandingArray<2>>(o.padding());
  for (int i = 0; i < 2; ++i)
    if (o.kernel_size()->at(size_t(i)) != 3 || o.stride()->at(size_t(i)) != 1 ||
        o.dilation()->at(size_t(i)) != 1 || pad->at(size_t(i)) != 1)
      return false;
  if (!winograd_enabled_by_environment()) return false;
  return primitives_for(shape_of(x, conv->weight)).supported;
}

torch::Tensor winograd_conv2d(const torch::Tensor& x, const torch::Tensor& w) {
  return WinogradConv2d::apply(x, w);
}

} // namespace selfsup::plugins::backbones
