#pragma once
// Deterministic image kernels with the exact arithmetic of mmcv 2.0.1's backend='pillow' (PIL
// 9.4, Debian's python3-pil) and of mmselfsup's PIL-based transforms; private to core, exported
// only so that tests/core/transforms_pil_test.cpp can call them with fixed parameters.
//
// Images are mmcv's arrays: HWC uint8, 3 channels in BGR order or 1 channel (PIL's "L"). Where
// PIL works on RGB (grey level, HSV) the kernels read the channels in BGR order accordingly.
// Each function is written from PIL's documented algorithm and its integer/float rounding
// rules; none allocates per pixel.
#include <array>

#include <selfsup/core/export.h>
#include <selfsup/interfaces/data.h>

namespace selfsup::core::transforms::pil {

/// PIL's resampling filters that mmselfsup's RandomResizedCrop can ask for.
enum class Filter { nearest, bilinear, bicubic, lanczos };

/// mmcv.imcrop to the box (x, y, w, h), then mmcv.imresize(backend='pillow'), i.e.
/// PIL Image.resize((out_w, out_h), filter): a separable convolution, horizontal pass first,
/// whose support widens by the downscale factor (antialiasing), with coefficients normalised
/// per output pixel and rounded to 22 fractional bits, 8-bit results rounded and clipped after
/// each pass. Filter::nearest samples the pixel under each output pixel's centre.
SELFSUP_CORE_API Image resize(const Image& src, int x, int y, int w, int h, int out_h, int out_w,
                              Filter filter);

/// PIL ImageEnhance.Brightness(img).enhance(factor): blend with black.
SELFSUP_CORE_API void brightness(Image& img, double factor);
/// PIL ImageEnhance.Contrast: blend with the mean of the "L" image, rounded to an integer.
SELFSUP_CORE_API void contrast(Image& img, double factor);
/// PIL ImageEnhance.Color (ColorJitter's saturation): blend with the image's "L" conversion.
/// 1-channel images are left unchanged.
SELFSUP_CORE_API void color(Image& img, double factor);
/// mmcv.adjust_hue (pillow): PIL's RGB -> HSV (uint8 channels, truncated), H += uint8(factor *
/// 255) modulo 256, PIL's HSV -> RGB. 1-channel images are left unchanged.
SELFSUP_CORE_API void hue(Image& img, double factor);
/// PIL's convert("L") of a BGR image: (19595 R + 38470 G + 7471 B + 2^15) >> 16.
SELFSUP_CORE_API Image luma(const Image& img);
/// PIL ImageFilter.GaussianBlur(radius): three passes of PIL's extended box blur (fractional
/// edge weights) per direction, horizontal first, edges replicated, 8-bit results each pass.
SELFSUP_CORE_API void gaussian_blur(Image& img, double radius);
/// mmcv.solarize / PIL ImageOps.solarize: v < threshold ? v : 255 - v.
SELFSUP_CORE_API void solarize(Image& img, double threshold);

/// mmcv RandomGrayscale's numpy arithmetic (not PIL): g = int((w_b b + w_g g) + w_r r) with the
/// weights divided by their sum in double, truncated; 3 channels kept (replicated) or 1.
SELFSUP_CORE_API Image weighted_grey(const Image& img, const std::array<double, 3>& weights_bgr,
                                     bool keep_channels);

} // namespace selfsup::core::transforms::pil
