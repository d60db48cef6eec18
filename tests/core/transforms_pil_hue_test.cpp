// pil::hue (core/src/transforms/pil_ops.h) on every one of the 2^24 colours, against PIL 9.4's
// own per-pixel arithmetic written out here the plain way (libImaging/Convert.c's rgb2hsv and
// hsv2rgb: float divisions, fmod, floor and round from libm), so a table or a shortcut in the
// kernel that changes a single colour fails. The PNG fixtures of transforms_pil_test.cpp check
// the same kernel against PIL's output on real images.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdio>

#include <selfsup/interfaces/data.h>

#include "../../core/src/transforms/pil_ops.h"

namespace selfsup::core {
namespace {

namespace pil = transforms::pil;

uint8_t clip8(int v) {
  return uint8_t(std::min(std::max(v, 0), 255));
}

// mmcv.adjust_hue with backend 'pillow' for one RGB pixel: PIL's convert('HSV'), H += shift
// (uint8, wrapping), convert('RGB'). C's promotions are spelled out: float where PIL declares
// float, double where it mixes in a double literal.
void reference_hue(uint8_t r, uint8_t g, uint8_t b, uint8_t shift, uint8_t out[3]) {
  const uint8_t maxc = std::max(r, std::max(g, b));
  const uint8_t minc = std::min(r, std::min(g, b));
  uint8_t h8 = 0, s8 = 0;
  const uint8_t v8 = maxc;
  if (maxc != minc) {
    const float cr = float(maxc - minc);
    const float s = cr / float(maxc);
    const float rc = float(maxc - r) / cr;
    const float gc = float(maxc - g) / cr;
    const float bc = float(maxc - b) / cr;
    float h = 0.f;
    if (r == maxc)
      h = bc - gc;
    else if (g == maxc)
      h = float(2.0 + double(rc) - double(bc));
    else
      h = float(4.0 + double(gc) - double(rc));
    h = float(std::fmod(double(h) / 6.0 + 1.0, 1.0));
    h8 = clip8(int(double(h) * 255.0));
    s8 = clip8(int(double(s) * 255.0));
  }
  h8 = uint8_t(h8 + shift);
  if (s8 == 0) {
    out[0] = out[1] = out[2] = v8;
    return;
  }
  const int i = int(std::floor(double(float(h8)) * 6.0 / 255.0));
  const float f = float(double(float(h8)) * 6.0 / 255.0 - double(float(i)));
  const float fs = float(double(float(s8)) / 255.0);
  const uint8_t p = clip8(int(std::round(double(float(v8)) * (1.0 - double(fs)))));
  const uint8_t q = clip8(int(std::round(double(float(v8)) * (1.0 - double(fs * f)))));
  const uint8_t t =
      clip8(int(std::round(double(float(v8)) * (1.0 - double(fs) * (1.0 - double(f))))));
  const uint8_t rgb[6][3] = {{v8, t, p}, {q, v8, p}, {p, v8, t},
                             {p, q, v8}, {t, p, v8}, {v8, p, q}};
  std::copy(rgb[i % 6], rgb[i % 6] + 3, out);
}

// Every colour once, as a 4096 x 4096 BGR image (mmcv's channel order).
Image every_colour() {
  Image img(4096, 4096, 3);
  for (uint32_t c = 0; c < (1u << 24); ++c) {
    img.data[size_t(c) * 3 + 0] = uint8_t(c);       // B
    img.data[size_t(c) * 3 + 1] = uint8_t(c >> 8);  // G
    img.data[size_t(c) * 3 + 2] = uint8_t(c >> 16); // R
  }
  return img;
}

// The number of colours where the kernel and the reference differ, for hue factor `factor`.
size_t mismatches(const Image& colours, double factor) {
  Image img = colours;
  pil::hue(img, factor);
  const auto shift = uint8_t(int(factor * 255.0) & 0xFF);
  size_t bad = 0;
  for (uint32_t c = 0; c < (1u << 24); ++c) {
    uint8_t rgb[3];
    reference_hue(uint8_t(c >> 16), uint8_t(c >> 8), uint8_t(c), shift, rgb);
    const uint8_t* got = &img.data[size_t(c) * 3];
    if (got[2] != rgb[0] || got[1] != rgb[1] || got[0] != rgb[2]) {
      if (bad < 3)
        std::printf("  factor %g, RGB (%u, %u, %u): kernel (%u, %u, %u), PIL (%u, %u, %u)\n",
                    factor, unsigned(c >> 16), unsigned((c >> 8) & 255), unsigned(c & 255),
                    unsigned(got[2]), unsigned(got[1]), unsigned(got[0]), unsigned(rgb[0]),
                    unsigned(rgb[1]), unsigned(rgb[2]));
      ++bad;
    }
  }
  return bad;
}

// Shifts 0 (the HSV round trip alone, which is not the identity in PIL), 51 and 205 (the ends
// of ColorJitter's hue 0.2: +-0.2 * 255 truncated) and 128.
TEST(PilHue, EveryColourMatchesPilArithmetic) {
  const Image colours = every_colour();
  for (double factor : {0.0, 0.2, -0.2, 0.5}) {
    SCOPED_TRACE("hue factor " + std::to_string(factor));
    EXPECT_EQ(mismatches(colours, factor), 0u);
  }
}

// The reference is not vacuous: it is not the identity, and a kernel off by one step of H
// disagrees with it on most colours.
TEST(PilHue, ReferenceSeesAOneStepShift) {
  const Image colours = every_colour();
  size_t changed = 0;
  for (uint32_t c = 0; c < (1u << 24); c += 97) {
    uint8_t rgb[3];
    reference_hue(uint8_t(c >> 16), uint8_t(c >> 8), uint8_t(c), 51, rgb);
    changed += rgb[0] != uint8_t(c >> 16) || rgb[1] != uint8_t((c >> 8) & 255) ||
               rgb[2] != uint8_t(c & 255);
  }
  EXPECT_GT(changed, (1u << 24) / 97 / 2);
  // Factor 0.2 gives shift 51; 52.5 / 255 gives 52.
  Image img = colours;
  pil::hue(img, 52.5 / 255.0);
  size_t differ = 0;
  for (uint32_t c = 0; c < (1u << 24); c += 97) {
    uint8_t rgb[3];
    reference_hue(uint8_t(c >> 16), uint8_t(c >> 8), uint8_t(c), 51, rgb);
    const uint8_t* got = &img.data[size_t(c) * 3];
    differ += got[2] != rgb[0] || got[1] != rgb[1] || got[0] != rgb[2];
  }
  EXPECT_GT(differ, (1u << 24) / 97 / 2);
}

} // namespace
} // namespace selfsup::core
