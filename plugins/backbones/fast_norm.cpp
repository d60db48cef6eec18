#include "fast_norm.h"

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <vector>

#include <ATen/Parallel.h>
#include <torch/autograd.h>

#include <selfsup/dist.h>

#include "fast_conv.h"

namespace selfsup::plugins::backbones {

namespace {

using torch::autograd::AutogradContext;
using torch::autograd::variable_list;

// ---- Kernels -----------------------------------------------------------------------------
//
// The data is seen either as rows of C channels (channels-last: N*H*W rows) or as planes of
// H*W pixels of one channel (NCHW: N*C planes). Every pass is split over rows or planes between
// the threads; the sums of a pass go to per-thread double arrays (float within a block of rows
// or a plane), added up after. The loops are written so that the compiler vectorises them, and
// are built twice, for the baseline and for AVX-512 (chosen at run time).

#define SELFSUP_INLINE [[gnu::always_inline]] inline
#define SELFSUP_INLINE_LAMBDA __attribute__((always_inline))

using bf16_bits = uint16_t;

SELFSUP_INLINE float load(const float* p, int64_t i) {
  return p[i];
}
SELFSUP_INLINE float load(const bf16_bits* p, int64_t i) {
  const uint32_t u = uint32_t(p[i]) << 16;
  float f;
  std::memcpy(&f, &u, sizeof f);
  return f;
}
SELFSUP_INLINE void store(float* p, int64_t i, float v) {
  p[i] = v;
}
// Round to nearest even, NaN to the quiet NaN, as c10::BFloat16.
SELFSUP_INLINE void store(bf16_bits* p, int64_t i, float v) {
  uint32_t u;
  std::memcpy(&u, &v, sizeof u);
  u = v != v ? 0x7fc00000u : u + 0x7fffu + ((u >> 16) & 1u);
  p[i] = bf16_bits(u >> 16);
}

enum class Pass { kStats, kForward, kGradSums, kGradInput };

// One pass over one tensor geometry. Per-channel arrays (length C) are float; `s1`, `s2` are
// the per-thread sums ([threads][C] double), `scratch` per-thread float space ([threads][2C]).
struct Job {
  Pass pass;
  bool channels_last;
  int64_t channels, plane; // plane: H*W
  bool relu, residual;
  const void* x = nullptr;
  const void* res = nullptr; // kForward: added before the activation
  void* out = nullptr;       // kForward: y; kGradSums: g (with relu); kGradInput: dx
  const void* dy = nullptr;  // kGradSums: the output gradient; kGradInput: g
  const void* y = nullptr;   // kGradSums: the output, for ReLU's mask
  const float* mean = nullptr;
  const float* k1 = nullptr; // kStats: the shift; kForward: scale; kGradInput: a
  const float* k2 = nullptr; // kForward: bias; kGradInput: d
  const float* k3 = nullptr; // kGradInput: b
  double* s1 = nullptr;
  double* s2 = nullptr;
  float* scratch = nullptr;
};

// Sums of v and v*v, v = x - shift[c] (kStats), or of g and g * (x - mean[c]) (kGradSums,
// g = dy masked by y > 0 with relu, written to out), over rows [r0, r1).
template <class T, bool kGrad, bool kRelu>
SELFSUP_INLINE void sum_rows(const Job& j, int64_t r0, int64_t r1, int tid) {
  const int64_t C = j.channels;
  const T* __restrict x = static_cast<const T*>(j.x);
  const T* __restrict dy = static_cast<const T*>(j.dy);
  const T* __restrict y = static_cast<const T*>(j.y);
  T* __restrict g = static_cast<T*>(j.out);
  const float* __restrict sub = kGrad ? j.mean : j.k1;
  float* __restrict a1 = j.scratch + 2 * C * tid;
  float* __restrict a2 = a1 + C;
  double* __restrict s1 = j.s1 + C * tid;
  double* __restrict s2 = j.s2 + C * tid;
  constexpr int64_t kBlock = 32;
  for (int64_t rb = r0; rb < r1; rb += kBlock) {
    const int64_t re = std::min(r1, rb + kBlock);
    for (int64_t c = 0; c < C; ++c) a1[c] = a2[c] = 0.f;
    for (int64_t r = rb; r < re; ++r) {
      const int64_t o = r * C;
      for (int64_t c = 0; c < C; ++c) {
        const float v = load(x, o + c) - sub[c];
        if constexpr (kGrad) {
          float gv = load(dy, o + c);
          if constexpr (kRelu) {
            gv = load(y, o + c) > 0.f ? gv : 0.f;
            store(g, o + c, gv);
          }
          a1[c] += gv;
          a2[c] += gv * v;
        } else {
          a1[c] += v;
          a2[c] += v * v;
        }
      }
    }
    for (int64_t c = 0; c < C; ++c) {
      s1[c] += a1[c];
      s2[c] += a2[c];
    }
  }
}

// The same sums over planes [p0, p1) (plane p is channel p % C).
template <class T, bool kGrad, bool kRelu>
SELFSUP_INLINE void sum_planes(const Job& j, int64_t p0, int64_t p1, int tid) {
  const int64_t C = j.channels, len = j.plane;
  constexpr int kLanes = 16;
  for (int64_t p = p0; p < p1; ++p) {
    const int64_t c = p % C;
    // Only the pointers this pass uses are offset (the others may be null).
    const T* __restrict x = static_cast<const T*>(j.x) + p * len;
    const T* __restrict dy = kGrad ? static_cast<const T*>(j.dy) + p * len : nullptr;
    const T* __restrict y = kRelu ? static_cast<const T*>(j.y) + p * len : nullptr;
    T* __restrict g = kRelu ? static_cast<T*>(j.out) + p * len : nullptr;
    const float sub = kGrad ? j.mean[c] : j.k1[c];
    float l1[kLanes] = {}, l2[kLanes] = {};
    auto add = [&](int64_t i, int lane) SELFSUP_INLINE_LAMBDA {
      const float v = load(x, i) - sub;
      if constexpr (kGrad) {
        float gv = load(dy, i);
        if constexpr (kRelu) {
          gv = load(y, i) > 0.f ? gv : 0.f;
          store(g, i, gv);
        }
        l1[lane] += gv;
        l2[lane] += gv * v;
      } else {
        l1[lane] += v;
        l2[lane] += v * v;
      }
    };
    int64_t i = 0;
    for (; i + kLanes <= len; i += kLanes)
      for (int k = 0; k < kLanes; ++k) add(i + k, k);
    for (; i < len; ++i) add(i, 0);
    double t1 = 0, t2 = 0;
    for (int k = 0; k < kLanes; ++k) {
      t1 += l1[k];
      t2 += l2[k];
    }
    j.s1[C * tid + c] += t1;
    j.s2[C * tid + c] += t2;
  }
}

// kForward: out = act((x - mean) * scale + bias [+ res]); kGradInput: out = a * g - d * (x -
// mean) - b, g read from dy. Over elements [i0, i1) of rows (channel i % C) or of planes.
template <class T, Pass kPass, bool kRelu, bool kRes>
SELFSUP_INLINE void map_elements(const Job& j, int64_t u0, int64_t u1) {
  const int64_t C = j.channels;
  const T* __restrict x = static_cast<const T*>(j.x);
  const T* __restrict res = static_cast<const T*>(j.res);
  const T* dy = static_cast<const T*>(j.dy); // may be `out` itself (in place)
  T* out = static_cast<T*>(j.out);
  auto one = [&](int64_t i, float mean, float k1, float k2, float k3) SELFSUP_INLINE_LAMBDA {
    const float v = load(x, i) - mean;
    if constexpr (kPass == Pass::kForward) {
      float o = v * k1 + k2;
      if constexpr (kRes) o += load(res, i);
      if constexpr (kRelu) o = o > 0.f ? o : 0.f;
      store(out, i, o);
    } else {
      store(out, i, k1 * load(dy, i) - k2 * v - k3);
    }
  };
  if (j.channels_last) {
    for (int64_t r = u0; r < u1; ++r) {
      const int64_t o = r * C;
      for (int64_t c = 0; c < C; ++c)
        one(o + c, j.mean[c], j.k1[c], j.k2[c], kPass == Pass::kForward ? 0.f : j.k3[c]);
    }
  } else {
    const int64_t len = j.plane;
    for (int64_t p = u0; p < u1; ++p) {
      const int64_t c = p % C, o = p * len;
      const float mean = j.mean[c], k1 = j.k1[c], k2 = j.k2[c];
      const float k3 = kPass == Pass::kForward ? 0.f : j.k3[c];
      for (int64_t i = 0; i < len; ++i) one(o + i, mean, k1, k2, k3);
    }
  }
}

// One summing pass over rows (channels-last) or planes (NCHW).
template <class T, bool kGrad, bool kRelu>
SELFSUP_INLINE void sums(const Job& j, int64_t b, int64_t e, int tid) {
  if (j.channels_last)
    sum_rows<T, kGrad, kRelu>(j, b, e, tid);
  else
    sum_planes<T, kGrad, kRelu>(j, b, e, tid);
}

template <class T> SELFSUP_INLINE void run_chunk(const Job& j, int64_t b, int64_t e, int tid) {
  switch (j.pass) {
  case Pass::kStats:
    sums<T, false, false>(j, b, e, tid);
    break;
  case Pass::kGradSums:
    if (j.relu)
      sums<T, true, true>(j, b, e, tid);
    else
      sums<T, true, false>(j, b, e, tid);
    break;
  case Pass::kForward:
    if (j.relu && j.residual)
      map_elements<T, Pass::kForward, true, true>(j, b, e);
    else if (j.relu)
      map_elements<T, Pass::kForward, true, false>(j, b, e);
    else if (j.residual)
      map_elements<T, Pass::kForward, false, true>(j, b, e);
    else
      map_elements<T, Pass::kForward, false, false>(j, b, e);
    break;
  case Pass::kGradInput:
    map_elements<T, Pass::kGradInput, false, false>(j, b, e);
    break;
  }
}

template <class T> void run_chunk_baseline(const Job& j, int64_t b, int64_t e, int tid) {
  run_chunk<T>(j, b, e, tid);
}

#if defined(__x86_64__) && defined(__GNUC__)
template <class T>
[[gnu::target("avx512f,avx512bw,avx512vl,avx512dq,fma")]] void
run_chunk_avx512(const Job& j, int64_t b, int64_t e, int tid) {
  run_chunk<T>(j, b, e, tid);
}
bool has_avx512() {
  static const bool yes =
      __builtin_cpu_supports("avx512f") != 0 && __builtin_cpu_supports("avx512bw") != 0 &&
      __builtin_cpu_supports("avx512vl") != 0 && __builtin_cpu_supports("avx512dq") != 0;
  return yes;
}
#endif

template <class T> void run_chunk_best(const Job& j, int64_t b, int64_t e, int tid) {
#if defined(__x86_64__) && defined(__GNUC__)
  if (has_avx512()) return run_chunk_avx512<T>(j, b, e, tid);
#endif
  run_chunk_baseline<T>(j, b, e, tid);
}

// Runs `job` over the whole tensor [n, C, H, W] on LibTorch's threads; for the summing passes,
// returns the per-channel totals in s1, s2 (size C, double).
void run(Job job, bool bf16, int64_t n, std::vector<double>* s1, std::vector<double>* s2) {
  const int64_t C = job.channels;
  const int64_t units = job.channels_last ? n * job.plane : n * C;
  const int64_t per_unit = job.channels_last ? C : job.plane;
  const int threads = std::max(1, at::get_num_threads());
  std::vector<double> p1, p2;
  std::vector<float> scratch;
  const bool sums = job.pass == Pass::kStats || job.pass == Pass::kGradSums;
  if (sums) {
    p1.assign(size_t(threads * C), 0.0);
    p2.assign(size_t(threads * C), 0.0);
    scratch.assign(size_t(threads * 2 * C), 0.f);
    job.s1 = p1.data();
    job.s2 = p2.data();
    job.scratch = scratch.data();
  }
  const int64_t grain = std::max<int64_t>(1, (int64_t(1) << 15) / std::max<int64_t>(1, per_unit));
  at::parallel_for(0, units, grain, [&](int64_t b, int64_t e) {
    const int tid = at::get_thread_num();
    TORCH_CHECK(tid >= 0 && tid < threads, "fused BatchNorm: thread ", tid, " of ", threads);
    if (bf16)
      run_chunk_best<bf16_bits>(job, b, e, tid);
    else
      run_chunk_best<float>(job, b, e, tid);
  });
  if (sums) {
    s1->assign(size_t(C), 0.0);
    s2->assign(size_t(C), 0.0);
    for (int t = 0; t < threads; ++t)
      for (int64_t c = 0; c < C; ++c) {
        (*s1)[size_t(c)] += p1[size_t(t * C + c)];
        (*s2)[size_t(c)] += p2[size_t(t * C + c)];
      }
  }
}

// ---- The op ------------------------------------------------------------------------------

bool is_channels_last(const torch::Tensor& x) {
  return x.is_contiguous(at::MemoryFormat::ChannelsLast) && !x.is_contiguous();
}

// The geometry of x for a job (x is contiguous in one of the two formats).
Job job_for(Pass pass, const torch::Tensor& x, bool relu, bool residual) {
  Job j;
  j.pass = pass;
  j.channels_last = is_channels_last(x);
  j.channels = x.size(1);
  j.plane = x.size(2) * x.size(3);
  j.relu = relu;
  j.residual = residual;
  return j;
}

const void* data(const torch::Tensor& t) {
  return t.defined() ? t.data_ptr() : nullptr;
}
void* mutable_data(const torch::Tensor& t) {
  return t.defined() ? t.data_ptr() : nullptr;
}

torch::Tensor contiguous_like(const torch::Tensor& t, const torch::Tensor& like) {
  return t.to(like.scalar_type())
      .contiguous(is_channels_last(like) ? at::MemoryFormat::ChannelsLast
                                         : at::MemoryFormat::Contiguous);
}

torch::Tensor floats(const torch::Tensor& t) {
  return t.to(torch::kFloat).contiguous();
}

// act((x - mean) * invstd * weight + bias [+ residual]), differentiable in x, weight, bias and
// residual (the gradient through the batch mean and variance included); mean and invstd are
// x's batch statistics (float, [C]), given. An absent weight, bias or residual is passed as an
// empty tensor (autograd's Function does not take undefined ones).
torch::Tensor or_empty(const torch::Tensor& t) {
  return t.defined() ? t : torch::empty({0});
}
torch::Tensor if_given(const torch::Tensor& t) {
  return t.numel() > 0 ? t : torch::Tensor();
}

class FusedBatchNormAct final : public torch::autograd::Function<FusedBatchNormAct> {
public:
  static torch::Tensor forward(AutogradContext* ctx, const torch::Tensor& x,
                               const torch::Tensor& weight_or_empty,
                               const torch::Tensor& bias_or_empty,
                               const torch::Tensor& residual_or_empty, const torch::Tensor& mean,
                               const torch::Tensor& invstd, bool relu) {
    const torch::Tensor weight = if_given(weight_or_empty), bias = if_given(bias_or_empty);
    const torch::Tensor residual = if_given(residual_or_empty);
    const int64_t C = x.size(1);
    const torch::Tensor w = weight.defined() ? floats(weight) : torch::ones({C});
    const torch::Tensor scale = w * invstd;
    const torch::Tensor shift = bias.defined() ? floats(bias) : torch::zeros({C});
    torch::Tensor y = torch::empty_like(x);
    Job j = job_for(Pass::kForward, x, relu, residual.defined());
    j.x = data(x);
    j.res = data(residual);
    j.out = mutable_data(y);
    j.mean = mean.data_ptr<float>();
    j.k1 = scale.data_ptr<float>();
    j.k2 = shift.data_ptr<float>();
    run(j, x.scalar_type() == torch::kBFloat16, x.size(0), nullptr, nullptr);
    ctx->save_for_backward({x, relu ? y : torch::Tensor(), w, mean, invstd});
    ctx->saved_data["relu"] = relu;
    ctx->saved_data["residual"] = residual.defined();
    ctx->saved_data["w_dtype"] = int64_t(weight.defined() ? weight.scalar_type() : torch::kFloat);
    ctx->saved_data["b_dtype"] = int64_t(bias.defined() ? bias.scalar_type() : torch::kFloat);
    return y;
  }

  static variable_list backward(AutogradContext* ctx, variable_list grad_outputs) {
    const auto saved = ctx->get_saved_variables();
    const torch::Tensor &x = saved[0], &y = saved[1], &w = saved[2], &mean = saved[3],
                        &invstd = saved[4];
    const bool relu = ctx->saved_data["relu"].toBool();
    const bool has_residual = ctx->saved_data["residual"].toBool();
    variable_list grads(7);
    if (!grad_outputs[0].defined()) return grads;
    const torch::Tensor dy = contiguous_like(grad_outputs[0], x);
    const bool bf16 = x.scalar_type() == torch::kBFloat16;
    const int64_t n = x.size(0), C = x.size(1);
    const double count = double(n * x.size(2) * x.size(3));

    // Pass 1: g (dy masked by ReLU, kept in g_buf) and the sums of g and g * (x - mean).
    torch::Tensor g_buf = relu ? torch::empty_like(x) : torch::Tensor();
    Job j1 = job_for(Pass::kGradSums, x, relu, has_residual);
    j1.x = data(x);
    j1.dy = data(dy);
    j1.y = data(y);
    j1.out = mutable_data(g_buf);
    j1.mean = mean.data_ptr<float>();
    std::vector<double> sum_g, sum_gv;
    run(j1, bf16, n, &sum_g, &sum_gv);
    const torch::Tensor g = relu ? g_buf : dy;

    const auto w_dtype = c10::ScalarType(ctx->saved_data["w_dtype"].toInt());
    const auto b_dtype = c10::ScalarType(ctx->saved_data["b_dtype"].toInt());
    torch::Tensor sg = torch::from_blob(sum_g.data(), {C}, torch::kDouble).to(torch::kFloat);
    torch::Tensor sgv = torch::from_blob(sum_gv.data(), {C}, torch::kDouble).to(torch::kFloat);
    if (ctx->needs_input_grad(1)) grads[1] = (sgv * invstd).to(w_dtype);
    if (ctx->needs_input_grad(2)) grads[2] = sg.to(b_dtype);
    if (has_residual && ctx->needs_input_grad(3)) grads[3] = g;
    if (ctx->needs_input_grad(0)) {
      // dx = w * invstd * (g - mean(g) - (x - mean) * invstd^2 * mean(g * (x - mean))).
      const torch::Tensor a = (w * invstd).contiguous();
      const torch::Tensor d = (a * invstd * invstd * sgv / count).contiguous();
      const torch::Tensor b = (a * sg / count).contiguous();
      // With ReLU and no residual gradient to keep, dx overwrites g in place.
      torch::Tensor dx = relu && !has_residual ? g_buf : torch::empty_like(x);
      Job j2 = job_for(Pass::kGradInput, x, false, false);
      j2.x = data(x);
      j2.dy = data(g);
      j2.out = mutable_data(dx);
      j2.mean = mean.data_ptr<float>();
      j2.k1 = a.data_ptr<float>();
      j2.k2 = d.data_ptr<float>();
      j2.k3 = b.data_ptr<float>();
      run(j2, bf16, n, nullptr, nullptr);
      grads[0] = dx;
    }
    return grads;
  }
};

bool same_layout(const torch::Tensor& a, const torch::Tensor& b) {
  return a.sizes() == b.sizes() && a.strides() == b.strides() &&
         a.scalar_type() == b.scalar_type() && a.device() == b.device();
}

} // namespace

bool uses_fused_norm(const bricks::BatchNorm2d& bn, const torch::Tensor& x,
                     const torch::Tensor& residual) {
  static const bool on = switched_on("SELFSUP_FUSED_BN");
  if (!on || !bn->is_training() || (bn->sync() && dist().world_size() > 1)) return false;
  if (!bn->options.track_running_stats() || !bn->running_mean.defined()) return false;
  if (x.dim() != 4 || !x.device().is_cpu() || x.size(0) * x.size(2) * x.size(3) <= 1) return false;
  if (x.scalar_type() != torch::kFloat && x.scalar_type() != torch::kBFloat16) return false;
  if (!x.is_contiguous() && !x.is_contiguous(at::MemoryFormat::ChannelsLast)) return false;
  if (x.size(1) != bn->options.num_features()) return false;
  return !residual.defined() || same_layout(x, residual);
}

torch::Tensor batch_norm_act(const bricks::BatchNorm2d& bn, const torch::Tensor& x,
                             const torch::Tensor& residual, bool relu) {
  if (!uses_fused_norm(bn, x, residual)) {
    torch::Tensor y = bn.ptr()->forward(x);
    if (residual.defined()) y += residual;
    return relu ? y.relu_() : y;
  }
  const int64_t C = x.size(1);
  const double count = double(x.size(0) * x.size(2) * x.size(3));
  const bool bf16 = x.scalar_type() == torch::kBFloat16;

  // The batch statistics, from sums of x - shift (shift: the channel's first value), so that
  // a large mean does not swamp the variance.
  std::vector<float> shift(static_cast<size_t>(C));
  {
    const torch::Tensor first =
        x.select(0, 0).select(1, 0).select(1, 0).to(torch::kFloat).contiguous();
    std::memcpy(shift.data(), first.data_ptr<float>(), sizeof(float) * size_t(C));
  }
  Job j = job_for(Pass::kStats, x, relu, residual.defined());
  j.x = data(x);
  j.k1 = shift.data();
  std::vector<double> s1, s2;
  run(j, bf16, x.size(0), &s1, &s2);
  const double eps = bn->options.eps();
  std::vector<float> mean_v(static_cast<size_t>(C)), invstd_v(static_cast<size_t>(C));
  std::vector<double> var(static_cast<size_t>(C));
  for (size_t c = 0; c < size_t(C); ++c) {
    const double m1 = s1[c] / count;
    const double v = std::max(0.0, s2[c] / count - m1 * m1);
    mean_v[c] = float(double(shift[c]) + m1);
    invstd_v[c] = float(1.0 / std::sqrt(v + eps));
    var[c] = v * count / (count - 1);
  }
  const torch::Tensor mean = torch::from_blob(mean_v.data(), {C}, torch::kFloat).clone();
  const torch::Tensor invstd = torch::from_blob(invstd_v.data(), {C}, torch::kFloat).clone();

  // The running statistics, as torch's BatchNorm (training, track_running_stats).
  {
    torch::NoGradGuard no_grad;
    bricks::BatchNorm2dImpl& m = *bn.ptr();
    m.num_batches_tracked += 1;
    const double factor = m.options.momentum()
                              ? *m.options.momentum()
                              : 1.0 / double(m.num_batches_tracked.item<int64_t>());
    const torch::Tensor var_t = torch::from_blob(var.data(), {C}, torch::kDouble);
    const torch::Tensor mean_t = torch::from_blob(mean_v.data(), {C}, torch::kFloat);
    m.running_mean.mul_(1 - factor).add_(mean_t.to(m.running_mean.scalar_type()), factor);
    m.running_var.mul_(1 - factor).add_(var_t.to(m.running_var.scalar_type()), factor);
  }
  return FusedBatchNormAct::apply(x, or_empty(bn->weight), or_empty(bn->bias), or_empty(residual),
                                  mean, invstd, relu);
}

} // namespace selfsup::plugins::backbones
