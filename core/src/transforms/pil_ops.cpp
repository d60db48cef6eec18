// The pillow-backend kernels of pil_ops.h. Written from PIL's documented algorithms; the
// float/double types and the rounding of each step follow PIL 9.4 so results are bit-exact.
#include "pil_ops.h"

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <string>
#include <vector>

#include <selfsup/errors.h>

#include "common.h"

namespace selfsup::core::transforms::pil {

namespace {

// The integer loops of the blur and the resize (sums of uint8 x int32 products) vectorize far
// better with AVX2's 32-bit multiply than with SSE2's emulation of it. On x86-64 each is built
// twice, for the baseline and for AVX2, and the AVX2 one runs where the CPU has it. Integer
// arithmetic gives the same bits either way; no floating-point code is built for AVX2 (where
// FMA contraction could change a rounding).
#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
#define SELFSUP_PIL_AVX2 1
#define SELFSUP_PIL_INLINE [[gnu::always_inline]] inline
bool has_avx2() {
  static const bool avx2 = __builtin_cpu_supports("avx2") != 0;
  return avx2;
}
#else
#define SELFSUP_PIL_AVX2 0
#define SELFSUP_PIL_INLINE inline
#endif

// ---------------------------------------------------------------------------------------
// Resampling

constexpr int kPrecisionBits = 32 - 8 - 2; // 8-bit data, 2 bits of headroom for the sums

double sinc(double x) {
  if (x == 0.0) return 1.0;
  x *= M_PI;
  return std::sin(x) / x;
}

double filter_support(Filter f) {
  switch (f) {
  case Filter::bilinear:
    return 1.0;
  case Filter::bicubic:
    return 2.0;
  case Filter::lanczos:
    return 3.0;
  case Filter::nearest:
    break;
  }
  return 0.0;
}

double filter_weight(Filter f, double x) {
  switch (f) {
  case Filter::bilinear:
    x = std::fabs(x);
    return x < 1.0 ? 1.0 - x : 0.0;
  case Filter::bicubic: { // Keys' cubic convolution with a = -0.5
    constexpr double a = -0.5;
    x = std::fabs(x);
    if (x < 1.0) return ((a + 2.0) * x - (a + 3.0)) * x * x + 1;
    if (x < 2.0) return (((x - 5) * x + 8) * x - 4) * a;
    return 0.0;
  }
  case Filter::lanczos:
    return (-3.0 <= x && x < 3.0) ? sinc(x) * sinc(x / 3) : 0.0;
  case Filter::nearest:
    break;
  }
  return 0.0;
}

// One axis: for output index i, taps start[i] .. start[i] + count[i] - 1 of the input with
// fixed-point weights k[i * ksize + t].
struct Taps {
  int ksize = 0;
  std::vector<int> start, count;
  std::vector<int32_t> k;
};

Taps make_taps(int in_size, int out_size, Filter f) {
  Taps taps;
  const double scale = double(in_size) / out_size;
  const double filterscale = std::max(scale, 1.0); // shrinking widens the filter
  const double support = filter_support(f) * filterscale;
  taps.ksize = int(std::ceil(support)) * 2 + 1;
  taps.start.resize(size_t(out_size));
  taps.count.resize(size_t(out_size));
  taps.k.assign(size_t(out_size) * size_t(taps.ksize), 0);
  std::vector<double> w(size_t(taps.ksize));
  const double inv = 1.0 / filterscale;
  for (int i = 0; i < out_size; ++i) {
    const double center = (i + 0.5) * scale;
    const int lo = std::max(int(center - support + 0.5), 0);
    const int hi = std::min(int(center + support + 0.5), in_size);
    const int n = std::min(hi - lo, taps.ksize);
    double total = 0.0;
    for (int t = 0; t < n; ++t) {
      w[size_t(t)] = filter_weight(f, (t + lo - center + 0.5) * inv);
      total += w[size_t(t)];
    }
    int32_t* k = &taps.k[size_t(i) * size_t(taps.ksize)];
    for (int t = 0; t < n; ++t) {
      const double v = total != 0.0 ? w[size_t(t)] / total : w[size_t(t)];
      const double fixed = v * double(1 << kPrecisionBits);
      k[t] = int32_t(v < 0 ? -0.5 + fixed : 0.5 + fixed);
    }
    taps.start[size_t(i)] = lo;
    taps.count[size_t(i)] = std::max(n, 0);
  }
  return taps;
}

inline uint8_t fixed_to_u8(int32_t acc) {
  const int32_t v = acc >> kPrecisionBits; // arithmetic shift: floor
  return uint8_t(v < 0 ? 0 : (v > 255 ? 255 : v));
}

// Horizontal pass over `rows` rows starting at `src` (row stride in bytes) into dst (dense).
// kC > 0: that many channels, summed in registers; 0: `channels`, any count.
template <int kC>
void resample_rows(const uint8_t* src, size_t src_stride, int rows, int channels, const Taps& tp,
                   uint8_t* dst, int out_w) {
  const int c = kC > 0 ? kC : channels;
  std::vector<int32_t> wide(kC > 0 ? 0 : static_cast<size_t>(c));
  for (int y = 0; y < rows; ++y) {
    const uint8_t* in = src + size_t(y) * src_stride;
    uint8_t* out = dst + size_t(y) * size_t(out_w) * size_t(c);
    for (int i = 0; i < out_w; ++i) {
      const int32_t* k = &tp.k[size_t(i) * size_t(tp.ksize)];
      const uint8_t* p = in + size_t(tp.start[size_t(i)]) * size_t(c);
      const int n = tp.count[size_t(i)];
      int32_t fixed[kC > 0 ? kC : 1];
      int32_t* acc = kC > 0 ? fixed : wide.data();
      for (int ch = 0; ch < c; ++ch) acc[ch] = 1 << (kPrecisionBits - 1);
      for (int t = 0; t < n; ++t, p += c)
        for (int ch = 0; ch < c; ++ch) acc[ch] += int32_t(p[ch]) * k[t];
      for (int ch = 0; ch < c; ++ch) out[size_t(i) * size_t(c) + size_t(ch)] = fixed_to_u8(acc[ch]);
    }
  }
}

// Vertical pass: src rows are dense with `row_len` bytes each.
SELFSUP_PIL_INLINE void resample_cols_body(const uint8_t* __restrict src, size_t row_len,
                                           const Taps& tp, int out_h, uint8_t* __restrict dst,
                                           int32_t* __restrict acc) {
  for (int j = 0; j < out_h; ++j) {
    for (size_t i = 0; i < row_len; ++i) acc[i] = int32_t(1) << (kPrecisionBits - 1);
    const int32_t* k = &tp.k[size_t(j) * size_t(tp.ksize)];
    const int n = tp.count[size_t(j)];
    for (int t = 0; t < n; ++t) {
      const uint8_t* __restrict row = src + size_t(tp.start[size_t(j)] + t) * row_len;
      const int32_t kt = k[t];
      for (size_t i = 0; i < row_len; ++i) acc[i] += int32_t(row[i]) * kt;
    }
    uint8_t* __restrict out = dst + size_t(j) * row_len;
    for (size_t i = 0; i < row_len; ++i) out[i] = fixed_to_u8(acc[i]);
  }
}

#if SELFSUP_PIL_AVX2
[[gnu::target("avx2")]] void resample_cols_avx2(const uint8_t* src, size_t row_len, const Taps& tp,
                                                int out_h, uint8_t* dst, int32_t* acc) {
  resample_cols_body(src, row_len, tp, out_h, dst, acc);
}
#endif

void resample_cols(const uint8_t* src, size_t row_len, const Taps& tp, int out_h, uint8_t* dst) {
  std::vector<int32_t> acc(row_len);
#if SELFSUP_PIL_AVX2
  if (has_avx2()) return resample_cols_avx2(src, row_len, tp, out_h, dst, acc.data());
#endif
  resample_cols_body(src, row_len, tp, out_h, dst, acc.data());
}

Image crop(const Image& src, int x, int y, int w, int h) {
  Image out(h, w, src.channels);
  const size_t c = size_t(src.channels), row = size_t(w) * c;
  for (int r = 0; r < h; ++r)
    std::memcpy(&out.data[size_t(r) * row],
                &src.data[(size_t(y + r) * size_t(src.width) + size_t(x)) * c], row);
  return out;
}

// PIL resizes with NEAREST through its affine scaling: source index = floor of the running sum
// scale/2 + i * scale (accumulated in double), 0 outside the image.
Image resize_nearest(const Image& src, int x, int y, int w, int h, int out_h, int out_w) {
  const size_t c = size_t(src.channels);
  Image out(out_h, out_w, src.channels);
  std::vector<int> xs(static_cast<size_t>(out_w));
  const double sx = double(w) / out_w, sy = double(h) / out_h;
  double pos = sx * 0.5;
  for (int i = 0; i < out_w; ++i, pos += sx) xs[size_t(i)] = pos < 0.0 ? -1 : int(pos);
  pos = sy * 0.5;
  for (int j = 0; j < out_h; ++j, pos += sy) {
    const int yi = pos < 0.0 ? -1 : int(pos);
    uint8_t* o = &out.data[size_t(j) * size_t(out_w) * c];
    if (yi < 0 || yi >= h) continue; // zero-filled, as PIL
    const uint8_t* row = &src.data[(size_t(y + yi) * size_t(src.width) + size_t(x)) * c];
    for (int i = 0; i < out_w; ++i) {
      const int xi = xs[size_t(i)];
      if (xi >= 0 && xi < w) std::memcpy(o + size_t(i) * c, row + size_t(xi) * c, c);
    }
  }
  return out;
}

// ---------------------------------------------------------------------------------------
// Blending (PIL Image.blend: float alpha, truncation toward zero, clipped)

inline uint8_t blend(int degenerate, int value, float alpha) {
  return trunc_u8(float(degenerate) + alpha * float(value - degenerate));
}

// ---------------------------------------------------------------------------------------
// HSV (PIL's uint8 HSV: H and S scaled to 0..255 and truncated)

inline void rgb_to_hsv(int r, int g, int b, uint8_t& h8, uint8_t& s8, uint8_t& v8) {
  const int maxc = std::max(r, std::max(g, b));
  const int minc = std::min(r, std::min(g, b));
  v8 = uint8_t(maxc);
  if (maxc == minc) {
    h8 = s8 = 0;
    return;
  }
  const float cr = float(maxc - minc);
  const float s = cr / float(maxc);
  const float rc = float(maxc - r) / cr;
  const float gc = float(maxc - g) / cr;
  const float bc = float(maxc - b) / cr;
  float h;
  if (r == maxc)
    h = bc - gc;
  else if (g == maxc)
    h = float(2.0 + double(rc) - double(bc));
  else
    h = float(4.0 + double(gc) - double(rc));
  // fmod(h / 6 + 1, 1): the argument lies in [5/6, 11/6], where subtracting 1 is exact.
  const double wrapped = double(h) / 6.0 + 1.0;
  h = float(wrapped >= 1.0 ? wrapped - 1.0 : wrapped);
  h8 = clamp_u8(int(double(h) * 255.0));
  s8 = clamp_u8(int(double(s) * 255.0));
}

// round() of a non-negative double below 2^31 without a libm call: truncate, then add one when
// the (exact) remainder is at least one half, which is round-half-away-from-zero.
inline int round_nonneg(double x) {
  const int k = int(x);
  return k + int(x - double(k) >= 0.5);
}

// PIL's uint8 HSV -> RGB of the pixels with s8 > 0 (s8 == 0 is grey: r = g = b = v8). The
// sector i and fraction f of h8, and the float saturation fs of s8, are tabulated; what remains
// per pixel is p, q and t with PIL's arithmetic.
struct HsvSector {
  uint8_t sector = 0; // int(h8 * 6 / 255) % 6
  float f = 0.f;      // h8 * 6 / 255 - int(h8 * 6 / 255), as a float
};

HsvSector hsv_sector(int h8) {
  const double h6 = double(float(h8)) * 6.0 / 255.0;
  const int i = int(h6); // floor: h6 >= 0
  return {uint8_t(i % 6), float(h6 - double(float(i)))};
}

float hsv_saturation(int s8) {
  return float(double(float(s8)) / 255.0);
}

// Writes (r, g, b) from v8 and PIL's p, q, t of one pixel with s8 > 0.
inline void hsv_to_rgb(const HsvSector& sec, float fs, uint8_t v8, uint8_t& r, uint8_t& g,
                       uint8_t& b) {
  const double v = double(float(v8));
  const auto p = uint8_t(round_nonneg(v * (1.0 - double(fs))));
  // A sector uses q (odd sectors) or t (even ones), never both: only that one is computed.
  const double scales[2] = {double(fs) * (1.0 - double(sec.f)), double(fs * sec.f)}; // t, q
  const double qt_scale = scales[sec.sector & 1];
  const auto qt = uint8_t(round_nonneg(v * (1.0 - qt_scale)));
  // Per sector, which of {v, p, q or t} goes to r, g and b (PIL: (v, t, p), (q, v, p),
  // (p, v, t), (p, q, v), (t, p, v), (v, p, q)).
  static constexpr uint8_t kPick[6][3] = {{0, 2, 1}, {2, 0, 1}, {1, 0, 2},
                                          {1, 2, 0}, {2, 1, 0}, {0, 1, 2}};
  const uint8_t vals[3] = {v8, p, qt};
  const uint8_t* pick = kPick[sec.sector];
  r = vals[pick[0]];
  g = vals[pick[1]];
  b = vals[pick[2]];
}

// PIL's RGB -> uint8 HSV depends on a pixel only through maxc (v8), the differences
// d = maxc - channel and their largest, maxc - minc. h8 is tabulated by the channel holding
// the maximum (R first, then G, as PIL's tests run) and the two other channels' d; s8 by
// (maxc, maxc - minc). Both tables are filled once from rgb_to_hsv itself.
// The HSV -> RGB side's sector and fraction of each h8, and float saturation of each s8, are
// tabulated with them.
struct HsvTables {
  std::vector<uint8_t> h8; // [max channel 0..2 (R, G, B)][d of the first other][d of the second]
  std::vector<uint8_t> s8; // [maxc][maxc - minc]
  std::array<HsvSector, 256> sector; // by h8 (after the shift)
  std::array<float, 256> fs{};       // by s8
};

const HsvTables& hsv_tables() {
  static const HsvTables tables = [] {
    HsvTables t;
    t.h8.assign(size_t(3) * 256 * 256, 0);
    t.s8.assign(size_t(256) * 256, 0);
    uint8_t h = 0, s = 0, v = 0;
    for (int d1 = 0; d1 < 256; ++d1)
      for (int d2 = 0; d2 < 256; ++d2) {
        // The max channel at 255, the other two at 255 - d (R's "others" are G, B; G's are R,
        // B; B's are R, G).
        const int a = 255 - d1, b = 255 - d2;
        const size_t at = size_t(d1) * 256 + size_t(d2);
        rgb_to_hsv(255, a, b, h, s, v);
        t.h8[at] = h;
        rgb_to_hsv(a, 255, b, h, s, v);
        t.h8[size_t(256) * 256 + at] = h;
        rgb_to_hsv(a, b, 255, h, s, v);
        t.h8[size_t(2) * 256 * 256 + at] = h;
      }
    for (int maxc = 1; maxc < 256; ++maxc)
      for (int cr = 1; cr <= maxc; ++cr) {
        rgb_to_hsv(maxc, maxc - cr, maxc - cr, h, s, v);
        t.s8[size_t(maxc) * 256 + size_t(cr)] = s;
      }
    for (int i = 0; i < 256; ++i) {
      t.sector[size_t(i)] = hsv_sector(i);
      t.fs[size_t(i)] = hsv_saturation(i);
    }
    return t;
  }();
  return tables;
}

// ---------------------------------------------------------------------------------------
// Extended box blur

// The box radius (integer part + fractional edge weight) whose 3 passes approximate a
// Gaussian of standard deviation `radius` (Gwosdek et al., "Theoretical foundations of
// Gaussian convolution by extended box filtering", 2011), in PIL's float arithmetic.
float extended_box_radius(float radius, int passes) {
  const float sigma2 = radius * radius / float(passes);
  const float big_l = float(std::sqrt(12.0 * double(sigma2) + 1.0)); // box length
  const float l = float(std::floor((double(big_l) - 1.0) / 2.0));    // integer radius
  float a = (2 * l + 1) * (l * (l + 1) - 3 * sigma2);
  a /= 6 * (sigma2 - (l + 1) * (l + 1));
  return l + a;
}

// One box-blur pass down the columns, src -> dst (h rows of row_len bytes), a whole row at a
// time. Output row y weighs rows [y - r, y + r] by ww and rows y - r - 1 and y + r + 1 by fw
// (24-bit fixed point), row indices clamped to the image (edges replicated). The horizontal
// passes run through it too, on the transposed image.
// One output row of box_cols from the running column sums `acc`, which it then advances. The
// pointers are declared unaliased (the rows read may coincide at the edges, but only `out` and
// `acc` are written, each its own buffer) so the compiler vectorizes the loop.
SELFSUP_PIL_INLINE void box_step_body(const uint8_t* __restrict far_up,
                                      const uint8_t* __restrict far_down,
                                      const uint8_t* __restrict leaving, uint8_t* __restrict out,
                                      uint32_t* __restrict acc, size_t n, uint32_t ww,
                                      uint32_t fw) {
  for (size_t i = 0; i < n; ++i) {
    const uint32_t bulk = acc[i] * ww + uint32_t(far_up[i] + far_down[i]) * fw;
    out[i] = uint8_t((bulk + (1u << 23)) >> 24);
    acc[i] += uint32_t(far_down[i]) - uint32_t(leaving[i]);
  }
}

#if SELFSUP_PIL_AVX2
[[gnu::target("avx2")]] void box_step_avx2(const uint8_t* far_up, const uint8_t* far_down,
                                           const uint8_t* leaving, uint8_t* out, uint32_t* acc,
                                           size_t n, uint32_t ww, uint32_t fw) {
  box_step_body(far_up, far_down, leaving, out, acc, n, ww, fw);
}
#endif

void box_step(const uint8_t* far_up, const uint8_t* far_down, const uint8_t* leaving, uint8_t* out,
              uint32_t* acc, size_t n, uint32_t ww, uint32_t fw) {
#if SELFSUP_PIL_AVX2
  if (has_avx2()) return box_step_avx2(far_up, far_down, leaving, out, acc, n, ww, fw);
#endif
  box_step_body(far_up, far_down, leaving, out, acc, n, ww, fw);
}

void box_cols(const uint8_t* src, uint8_t* dst, int h, size_t row_len, int r, uint32_t ww,
              uint32_t fw, std::vector<uint32_t>& acc) {
  const auto row = [&](int j) { return src + size_t(std::min(std::max(j, 0), h - 1)) * row_len; };
  acc.assign(row_len, 0);
  for (int j = -r; j <= r; ++j) {
    const uint8_t* p = row(j);
    for (size_t i = 0; i < row_len; ++i) acc[i] += p[i];
  }
  for (int y = 0; y < h; ++y) {
    const uint8_t* far_up = row(y - r - 1);
    const uint8_t* far_down = row(y + r + 1);
    const uint8_t* leaving = row(y - r);
    box_step(far_up, far_down, leaving, dst + size_t(y) * row_len, acc.data(), row_len, ww, fw);
  }
}

// Per-thread buffers the kernels reuse from call to call. Reached through a function that is
// not inlined: GCC recomputes the address of a thread_local at each use instead of keeping it,
// and in a shared library each recomputation is a call to __tls_get_addr (it was 7% of the
// 32x32 SimCLR pipeline, called per row of the blur).
struct Scratch {
  std::vector<uint8_t> ext, other;
  std::vector<uint32_t> acc;
  std::vector<float> grey;
};

// v[i] = trunc_u8(g[i] + alpha * (v[i] - g[i])): PIL's blend of each value with its grey level.
void blend_values(uint8_t* __restrict v, const float* __restrict g, size_t n, float alpha) {
  for (size_t i = 0; i < n; ++i) {
    const float x = g[i] + alpha * (float(v[i]) - g[i]);
    v[i] = uint8_t(int(std::min(std::max(x, 0.f), 255.f)));
  }
}

[[gnu::noinline]] Scratch& scratch() {
  thread_local Scratch buffers;
  return buffers;
}

// src (h rows of w pixels of c bytes) -> dst (w rows of h pixels).
void transpose(const uint8_t* src, int h, int w, int c, uint8_t* dst) {
  const size_t cs = size_t(c);
  for (int y = 0; y < h; ++y) {
    const uint8_t* in = src + size_t(y) * size_t(w) * cs;
    uint8_t* out = dst + size_t(y) * cs;
    const size_t step = size_t(h) * cs;
    if (c == 3) {
      for (int x = 0; x < w; ++x, in += 3, out += step) {
        out[0] = in[0];
        out[1] = in[1];
        out[2] = in[2];
      }
    } else {
      for (int x = 0; x < w; ++x, in += cs, out += step) std::memcpy(out, in, cs);
    }
  }
}

} // namespace

// ---------------------------------------------------------------------------------------

Image resize(const Image& src, int x, int y, int w, int h, int out_h, int out_w, Filter filter) {
  require_image(src, "resize (pillow)");
  if (x < 0 || y < 0 || w <= 0 || h <= 0 || x + w > src.width || y + h > src.height || out_h <= 0 ||
      out_w <= 0)
    throw ValueError("resize (pillow): crop box (x " + std::to_string(x) + ", y " +
                     std::to_string(y) + ", w " + std::to_string(w) + ", h " + std::to_string(h) +
                     ") -> " + std::to_string(out_h) + "x" + std::to_string(out_w) +
                     " does not fit the " + std::to_string(src.height) + "x" +
                     std::to_string(src.width) + " image");
  if (out_w == w && out_h == h) return crop(src, x, y, w, h);
  if (filter == Filter::nearest) return resize_nearest(src, x, y, w, h, out_h, out_w);

  const int c = src.channels;
  const size_t src_stride = size_t(src.width) * size_t(c);
  const uint8_t* origin = &src.data[size_t(y) * src_stride + size_t(x) * size_t(c)];
  Taps vt = make_taps(h, out_h, filter);
  // Rows of the crop the vertical pass reads: the horizontal pass runs only on those.
  const int first = vt.start.front();
  const int last = vt.start.back() + vt.count.back();

  std::vector<uint8_t>& tmp = scratch().ext;
  const uint8_t* rows = origin;
  size_t rows_stride = src_stride;
  int row_w = w;
  if (out_w != w) {
    const Taps ht = make_taps(w, out_w, filter);
    tmp.resize(size_t(last - first) * size_t(out_w) * size_t(c));
    const uint8_t* from = origin + size_t(first) * src_stride;
    if (c == 3)
      resample_rows<3>(from, src_stride, last - first, c, ht, tmp.data(), out_w);
    else if (c == 1)
      resample_rows<1>(from, src_stride, last - first, c, ht, tmp.data(), out_w);
    else
      resample_rows<0>(from, src_stride, last - first, c, ht, tmp.data(), out_w);
    for (int& s : vt.start) s -= first;
    rows = tmp.data();
    rows_stride = size_t(out_w) * size_t(c);
    row_w = out_w;
  }
  Image out(out_h, out_w, c);
  if (out_h == h) { // horizontal only: the rows are the result
    for (int r = 0; r < h; ++r)
      std::memcpy(&out.data[size_t(r) * rows_stride], rows + size_t(r) * rows_stride, rows_stride);
    return out;
  }
  if (rows == origin && rows_stride != size_t(row_w) * size_t(c)) { // vertical only, a crop
    tmp.resize(size_t(h) * size_t(w) * size_t(c));
    for (int r = 0; r < h; ++r)
      std::memcpy(&tmp[size_t(r) * size_t(w) * size_t(c)], origin + size_t(r) * src_stride,
                  size_t(w) * size_t(c));
    rows = tmp.data();
  }
  resample_cols(rows, size_t(row_w) * size_t(c), vt, out_h, out.data.data());
  return out;
}

void brightness(Image& img, double factor) {
  const float alpha = float(factor);
  Lut lut;
  for (int v = 0; v < 256; ++v) lut[size_t(v)] = blend(0, v, alpha);
  apply_lut(img, lut);
}

void contrast(Image& img, double factor) {
  const size_t n = size_t(img.height) * size_t(img.width);
  if (n == 0) return;
  uint64_t sum = 0;
  if (img.channels == 3) {
    for (size_t i = 0; i < n; ++i) sum += uint64_t(luma_bgr(&img.data[i * 3]));
  } else {
    for (size_t i = 0; i < n; ++i) sum += img.data[i * size_t(img.channels)];
  }
  // ImageStat's mean (a double), then int(mean + 0.5).
  const int mean = int(double(sum) / double(n) + 0.5);
  const float alpha = float(factor);
  Lut lut;
  for (int v = 0; v < 256; ++v) lut[size_t(v)] = blend(mean, v, alpha);
  apply_lut(img, lut);
}

void color(Image& img, double factor) {
  if (img.channels != 3) return;
  const float alpha = float(factor);
  const size_t n = size_t(img.height) * size_t(img.width);
  // Two passes that the compiler vectorizes: each value's grey level (its pixel's luma), then
  // blend() on every value, without branches (clamping to [0, 255] then truncating equals
  // trunc_u8).
  std::vector<float>& grey = scratch().grey;
  grey.resize(3 * n);
  const uint8_t* p = img.data.data();
  for (size_t i = 0; i < n; ++i, p += 3)
    grey[3 * i] = grey[3 * i + 1] = grey[3 * i + 2] = float(luma_bgr(p));
  blend_values(img.data.data(), grey.data(), 3 * n, alpha);
}

void hue(Image& img, double factor) {
  if (img.channels != 3) return;
  // np.uint8(hue_factor * 255): truncation toward zero, then modulo 256.
  const auto shift = uint8_t(int(factor * 255.0) & 0xFF);
  const HsvTables& tables = hsv_tables();
  const size_t n = size_t(img.height) * size_t(img.width);
  uint8_t* p = img.data.data();
  for (size_t i = 0; i < n; ++i, p += 3) {
    const int b = p[0], g = p[1], r = p[2];
    const int maxc = std::max(r, std::max(g, b));
    const int minc = std::min(r, std::min(g, b));
    if (maxc == minc) continue; // grey: s8 = 0, so H is ignored and the pixel comes back as is
    const int dr = maxc - r, dg = maxc - g, db = maxc - b;
    // The max channel (R before G before B) and the other two channels' d, in table order.
    const size_t at_r = size_t(dg) * 256 + size_t(db);
    const size_t at_g = size_t(256) * 256 + size_t(dr) * 256 + size_t(db);
    const size_t at_b = size_t(2) * 256 * 256 + size_t(dr) * 256 + size_t(dg);
    // Selected with masks, not branches: which channel is the largest is a coin toss on noisy
    // images.
    const size_t is_r = r == maxc, is_g = (1 - is_r) & size_t(g == maxc), is_b = 1 - is_r - is_g;
    const size_t at = (at_r & (0 - is_r)) | (at_g & (0 - is_g)) | (at_b & (0 - is_b));
    const uint8_t h8 = tables.h8[at];
    const uint8_t s8 = tables.s8[size_t(maxc) * 256 + size_t(maxc - minc)];
    if (s8 == 0) { // PIL: grey at v
      p[0] = p[1] = p[2] = uint8_t(maxc);
      continue;
    }
    hsv_to_rgb(tables.sector[uint8_t(h8 + shift)], tables.fs[s8], uint8_t(maxc), p[2], p[1], p[0]);
  }
}

Image luma(const Image& img) {
  if (img.channels == 1) return img;
  if (img.channels != 3)
    throw ValueError("luma (pillow): expected a 1- or 3-channel image, got " +
                     std::to_string(img.channels) + " channels");
  Image out(img.height, img.width, 1);
  const uint8_t* p = img.data.data();
  for (size_t i = 0; i < out.data.size(); ++i, p += 3) out.data[i] = uint8_t(luma_bgr(p));
  return out;
}

void gaussian_blur(Image& img, double radius) {
  constexpr int kPasses = 3;
  const float box = extended_box_radius(float(radius), kPasses);
  if (!(box >= 0.0f)) return; // radius 0 (or invalid): PIL's passes leave the image unchanged
  const int r = int(box);
  const auto ww = uint32_t(float(1 << 24) / (box * 2 + 1));
  const uint32_t fw = ((1u << 24) - uint32_t(r * 2 + 1) * ww) / 2;
  if (ww == (1u << 24) && fw == 0) return; // box radius 0: identity
  const int h = img.height, w = img.width, c = img.channels;
  Scratch& sc = scratch();
  std::vector<uint8_t>& cols = sc.ext; // the image transposed: w rows of h pixels
  std::vector<uint8_t>& other = sc.other;
  std::vector<uint32_t>& acc = sc.acc;
  const size_t row = size_t(w) * size_t(c), col = size_t(h) * size_t(c);
  // Horizontal passes first (as PIL): down the columns of the transposed image, where the
  // running sums of a whole row of pixels advance together.
  cols.resize(img.data.size());
  other.resize(img.data.size());
  transpose(img.data.data(), h, w, c, cols.data());
  for (int pass = 0; pass < kPasses; ++pass) {
    box_cols(cols.data(), other.data(), w, col, r, ww, fw, acc);
    std::swap(cols, other);
  }
  transpose(cols.data(), w, h, c, img.data.data());
  for (int pass = 0; pass < kPasses; ++pass) {
    box_cols(img.data.data(), other.data(), h, row, r, ww, fw, acc);
    std::swap(img.data, other); // the pass's result becomes the image
  }
}

void solarize(Image& img, double threshold) {
  Lut lut;
  for (int v = 0; v < 256; ++v) lut[size_t(v)] = v < threshold ? uint8_t(v) : uint8_t(255 - v);
  apply_lut(img, lut);
}

Image weighted_grey(const Image& img, const std::array<double, 3>& weights_bgr,
                    bool keep_channels) {
  if (img.channels != 3)
    throw ValueError("RandomGrayscale: expected a 3-channel image, got " +
                     std::to_string(img.channels) + " channels");
  double total = 0.0; // Python's sum(), left to right
  for (double v : weights_bgr) total += v;
  const double w0 = weights_bgr[0] / total, w1 = weights_bgr[1] / total,
               w2 = weights_bgr[2] / total;
  const size_t n = size_t(img.height) * size_t(img.width);
  Image out(img.height, img.width, keep_channels ? 3 : 1);
  const uint8_t* p = img.data.data();
  for (size_t i = 0; i < n; ++i, p += 3) {
    const double g = w0 * double(p[0]) + w1 * double(p[1]) + w2 * double(p[2]);
    const uint8_t v = g >= 255.0 ? 255 : (g <= 0.0 ? 0 : uint8_t(g));
    if (keep_channels) {
      out.data[i * 3] = out.data[i * 3 + 1] = out.data[i * 3 + 2] = v;
    } else {
      out.data[i] = v;
    }
  }
  return out;
}

} // namespace selfsup::core::transforms::pil
