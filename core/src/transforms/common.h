#pragma once
// Helpers shared by the engine's transforms (core/src/transforms/*.cpp); private to core.
// Every transform is immutable after construction; all randomness comes from the Rng passed
// to apply(), so a sample's result does not depend on the thread that runs it.
#include <opencv2/core.hpp>

#include <array>
#include <cstdint>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include <selfsup/config.h>
#include <selfsup/interfaces/data.h>
#include <selfsup/options.h>
#include <selfsup/registry.h>

namespace selfsup::core::transforms {

using Lut = std::array<uint8_t, 256>;

/// A cv::Mat header over the image's pixels (no copy).
inline cv::Mat as_mat(Image& img) {
  return cv::Mat(img.height, img.width, CV_8UC(img.channels), img.data.data());
}

/// Throws ValueError naming `who` when the sample's image is missing or inconsistent.
void require_image(const Image& img, const char* who);

inline uint8_t clamp_u8(int v) {
  return uint8_t(v < 0 ? 0 : (v > 255 ? 255 : v));
}

/// PIL's float -> uint8 in Image.blend: truncation toward zero, clipped.
inline uint8_t trunc_u8(float v) {
  if (v <= 0.f) return 0;
  if (v >= 255.f) return 255;
  return uint8_t(v);
}

inline void apply_lut(Image& img, const Lut& lut) {
  for (auto& v : img.data) v = lut[v];
}

/// PIL's "L" conversion (ITU-R 601-2 luma) of one BGR pixel.
inline int luma_bgr(const uint8_t* p) {
  return (p[2] * 19595 + p[1] * 38470 + p[0] * 7471 + 0x8000) >> 16;
}

/// A pair [min, max] of numbers with min <= max (a list option's constraint).
Constraint min_max();

template <class T> std::shared_ptr<Transform> make(const Config& cfg) {
  return std::make_shared<T>(cfg);
}

// One registration function per source file, called by register_transforms.
void register_geometric(Registrar& r);   // RandomResizedCrop, RandomFlip, Resize, RandomCrop
void register_photometric(Registrar& r); // ColorJitter, RandomGrayscale, RandomGaussianBlur,
                                         // RandomSolarize, ColorConvert
void register_composition(Registrar& r); // RandomApply, MultiView
void register_packing(Registrar& r);     // PackSelfSupInputs
void register_loading(Registrar& r);     // LoadImageFromFile
// RandomRotation, ResizeEdge, CenterCrop (rotate_resize_crop.cpp)
void register_rotate_resize_crop(Registrar& r);

} // namespace selfsup::core::transforms
