// fp32 3x3 stride-1 convolutions through oneDNN's Winograd F(4x4, 3x3) kernels (the same oneDNN
// 2.6 that LibTorch calls, which only ever asks it for direct convolution). See fast_conv.h.
#include <algorithm>
#include <cstdlib>
#include <array>
#include <memory>
#include <map>
#include <mutex>
#include <tuple>
#include <unordered_map>
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
  // Scratchpads are the caller's (allocated per call, see with_scratchpad): a primitive that
  // owned one would hold it for as long as the cache keeps the primitive.
  dnnl::primitive_attr attr;
  attr.set_scratchpad_mode(dnnl::scratchpad_mode::user);
  try {
    p.fwd_pd = dnnl::convolution_forward::primitive_desc(
        dnnl::convolution_forward::desc(dnnl::prop_kind::forward_training, alg, src, weights, dst,
                                        stride, pad, pad),
        attr, cpu_engine());
    p.bwd_data_pd = dnnl::convolution_backward_data::primitive_desc(
        dnnl::convolution_backward_data::desc(alg, src, weights, dst, stride, pad, pad), attr,
        cpu_engine(), p.fwd_pd);
    p.bwd_weights_pd = dnnl::convolution_backward_weights::primitive_desc(
        dnnl::convolution_backward_weights::desc(alg, src, weights, dst, stride, pad, pad), attr,
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

// Images per oneDNN call. Winograd's scratchpad holds the transformed tiles (some 2-5x the
// input chunk), and it and the blocked copies stay allocated between calls (see workspace):
// calls of about 8 MB of input or output keep that near 50 MB in all. With 32-MB calls a SimCLR
// run at batch 512 peaked 330 MB above the direct path, with 8-MB calls the step is as fast.
constexpr int64_t kChunkBytes = int64_t(8) << 20;

int64_t images_per_call(const torch::Tensor& x, const torch::Tensor& w) {
  const int64_t per_image =
      std::max(x.size(1), w.size(0)) * x.size(2) * x.size(3) * int64_t(sizeof(float));
  return std::clamp<int64_t>(kChunkBytes / per_image, 1, x.size(0));
}

// The shape of the call covering images [start, start + n).
Shape call_shape(const torch::Tensor& x, const torch::Tensor& w, int64_t n) {
  return {n, x.size(1), w.size(0), x.size(2), x.size(3)};
}

// Calls fn(start, n) for consecutive batch chunks of images_per_call images (the last shorter).
template <class Fn> void for_each_chunk(const torch::Tensor& x, const torch::Tensor& w, Fn&& fn) {
  const int64_t chunk = images_per_call(x, w);
  for (int64_t start = 0; start < x.size(0); start += chunk)
    fn(start, std::min(chunk, x.size(0) - start));
}

// Buffers for oneDNN's side of a call (blocked copies, scratchpad), one per role and thread,
// reused by every call and grown to the largest size asked of them. Fresh buffers per call
// would cost their page faults every time (about a quarter of the step at batch 512); buffers
// owned by the cached primitives would add up over every shape.
enum class Role { kSrc, kDst, kGrad, kWeights, kDiffWeights, kScratchpad, kCount };

dnnl::memory workspace(Role role, const dnnl::memory::desc& desc) {
  struct Buffer {
    std::unique_ptr<char, decltype(&std::free)> data{nullptr, &std::free};
    size_t size = 0;
  };
  thread_local std::array<Buffer, size_t(Role::kCount)> buffers;
  Buffer& buffer = buffers[size_t(role)];
  const size_t size = (desc.get_size() + 63) / 64 * 64;
  if (size > buffer.size) {
    buffer.data.reset(static_cast<char*>(std::aligned_alloc(64, size)));
    TORCH_CHECK(buffer.data != nullptr, "Winograd convolution: out of memory (", size, " bytes)");
    buffer.size = size;
  }
  return {desc, cpu_engine(), buffer.data.get()};
}

// `args` plus the scratchpad `pd` asks for.
std::unordered_map<int, dnnl::memory> with_scratchpad(std::unordered_map<int, dnnl::memory> args,
                                                      const dnnl::primitive_desc_base& pd) {
  args.emplace(DNNL_ARG_SCRATCHPAD, workspace(Role::kScratchpad, pd.scratchpad_desc()));
  return args;
}

// A tensor's own layout (any strides) as a oneDNN memory over its data.
dnnl::memory as_memory(const torch::Tensor& t) {
  const dnnl::memory::desc desc(t.sizes().vec(), dnnl::memory::data_type::f32, t.strides().vec());
  return {desc, cpu_engine(), t.data_ptr()};
}

// `from` in the layout `desc` wants: `from` itself when it already has it, else a reordered copy
// in the `role` buffer.
dnnl::memory in_layout(const dnnl::memory& from, const dnnl::memory::desc& desc, Role role,
                       dnnl::stream& stream) {
  if (from.get_desc() == desc) return from;
  dnnl::memory to = workspace(role, desc);
  dnnl::reorder(from, to).execute(stream, const_cast<dnnl::memory&>(from), to);
  return to;
}

class WinogradConv2d final : public torch::autograd::Function<WinogradConv2d> {
public:
  static torch::Tensor forward(AutogradContext* ctx, const torch::Tensor& x,
                               const torch::Tensor& w) {
    dnnl::stream stream(cpu_engine());
    torch::Tensor y = torch::empty({x.size(0), w.size(0), x.size(2), x.size(3)},
                                   x.options().memory_format(x.suggest_memory_format()));
    dnnl::memory weights;
    for_each_chunk(x, w, [&](int64_t start, int64_t n) {
      const WinogradPrimitives& p = primitives_for(call_shape(x, w, n));
      const dnnl::memory src =
          in_layout(as_memory(x.narrow(0, start, n)), p.fwd_pd.src_desc(), Role::kSrc, stream);
      if (!weights || weights.get_desc() != p.fwd_pd.weights_desc())
        weights = in_layout(as_memory(w), p.fwd_pd.weights_desc(), Role::kWeights, stream);
      dnnl::memory dst = workspace(Role::kDst, p.fwd_pd.dst_desc());
      p.fwd.execute(
          stream,
          with_scratchpad({{DNNL_ARG_SRC, src}, {DNNL_ARG_WEIGHTS, weights}, {DNNL_ARG_DST, dst}},
                          p.fwd_pd));
      dnnl::memory out = as_memory(y.narrow(0, start, n));
      dnnl::reorder(dst, out).execute(stream, dst, out);
      stream.wait(); // before this chunk's buffers go
    });
    ctx->save_for_backward({x, w});
    return y;
  }

  static variable_list backward(AutogradContext* ctx, variable_list grad_outputs) {
    const auto saved = ctx->get_saved_variables();
    const torch::Tensor& x = saved[0];
    const torch::Tensor& w = saved[1];
    const torch::Tensor g = grad_outputs[0].contiguous(x.suggest_memory_format());
    const bool want_x = ctx->needs_input_grad(0), want_w = ctx->needs_input_grad(1);
    dnnl::stream stream(cpu_engine());
    torch::Tensor gx, gw;
    if (want_x) gx = torch::empty_like(x, x.options().memory_format(x.suggest_memory_format()));
    if (want_w) gw = torch::zeros_like(w, w.options().memory_format(w.suggest_memory_format()));
    dnnl::memory weights;
    for_each_chunk(x, w, [&](int64_t start, int64_t n) {
      const WinogradPrimitives& p = primitives_for(call_shape(x, w, n));
      const dnnl::memory grad = as_memory(g.narrow(0, start, n));
      // The output gradient in the blocked layout, reordered once when both passes want it.
      dnnl::memory blocked_grad;
      auto grad_in = [&](const dnnl::memory::desc& desc) {
        if (!blocked_grad || blocked_grad.get_desc() != desc)
          blocked_grad = in_layout(grad, desc, Role::kGrad, stream);
        return blocked_grad;
      };
      if (want_x) {
        const dnnl::memory diff_dst = grad_in(p.bwd_data_pd.diff_dst_desc());
        if (!weights || weights.get_desc() != p.bwd_data_pd.weights_desc())
          weights = in_layout(as_memory(w), p.bwd_data_pd.weights_desc(), Role::kWeights, stream);
        dnnl::memory diff_src = workspace(Role::kDst, p.bwd_data_pd.diff_src_desc());
        p.bwd_data.execute(stream, with_scratchpad({{DNNL_ARG_DIFF_DST, diff_dst},
                                                    {DNNL_ARG_WEIGHTS, weights},
                                                    {DNNL_ARG_DIFF_SRC, diff_src}},
                                                   p.bwd_data_pd));
        dnnl::memory out = as_memory(gx.narrow(0, start, n));
        dnnl::reorder(diff_src, out).execute(stream, diff_src, out);
      }
      if (want_w) {
        const dnnl::memory diff_dst = grad_in(p.bwd_weights_pd.diff_dst_desc());
        const dnnl::memory src = in_layout(as_memory(x.narrow(0, start, n)),
                                           p.bwd_weights_pd.src_desc(), Role::kSrc, stream);
        dnnl::memory diff_weights =
            workspace(Role::kDiffWeights, p.bwd_weights_pd.diff_weights_desc());
        p.bwd_weights.execute(stream, with_scratchpad({{DNNL_ARG_DIFF_DST, diff_dst},
                                                       {DNNL_ARG_SRC, src},
                                                       {DNNL_ARG_DIFF_WEIGHTS, diff_weights}},
                                                      p.bwd_weights_pd));
        torch::Tensor part = torch::empty_like(gw);
        dnnl::memory out = as_memory(part);
        dnnl::reorder(diff_weights, out).execute(stream, diff_weights, out);
        stream.wait();
        gw.add_(part);
      }
      stream.wait(); // before this chunk's buffers go
    });
    return {gx, gw};
  }
};

} // namespace

bool uses_winograd(const torch::nn::Conv2d& conv, const torch::Tensor& x) {
  static const bool on = switched_on("SELFSUP_WINOGRAD");
  if (!on || !is_plain_trained_conv(conv, x) || x.scalar_type() != torch::kFloat ||
      conv->weight.scalar_type() != torch::kFloat || at::autocast::is_cpu_enabled())
    return false;
  const auto& o = conv->options;
  const auto& pad = c10::get<torch::ExpandingArray<2>>(o.padding());
  for (size_t i = 0; i < 2; ++i)
    if (o.kernel_size()->at(i) != 3 || o.stride()->at(i) != 1 || pad->at(i) != 1) return false;
  const torch::Tensor& w = conv->weight;
  const int64_t chunk = images_per_call(x, w), last = x.size(0) % chunk;
  return primitives_for(call_shape(x, w, chunk)).supported &&
         (last == 0 || primitives_for(call_shape(x, w, last)).supported);
}

torch::Tensor winograd_conv2d(const torch::Tensor& x, const torch::Tensor& w) {
  return WinogradConv2d::apply(x, w);
}

} // namespace selfsup::plugins::backbones
