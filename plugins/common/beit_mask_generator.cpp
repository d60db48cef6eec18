#include "beit_mask_generator.h"

#include <cmath>
#include <string>

#include <torch/torch.h>

#include <selfsup/errors.h>

namespace selfsup::plugins::common {

namespace {
// int or [h, w], both > 0.
std::pair<int64_t, int64_t> grid_of(const Config& c) {
  const Json& j = c.json();
  if (j.is_int() && j.as_int() > 0) return {j.as_int(), j.as_int()};
  if (j.is_array() && j.size() == 2 && j.at(0).is_int() && j.at(1).is_int() &&
      j.at(0).as_int() > 0 && j.at(1).as_int() > 0)
    return {j.at(0).as_int(), j.at(1).as_int()};
  c.fail("expected an int > 0 or [h, w], got " + j.dump());
}
} // namespace

OptionTable<BEiTMaskGeneratorOptions> BEiTMaskGeneratorOptions::table() {
  using O = BEiTMaskGeneratorOptions;
  using namespace selfsup::check;
  return OptionTable<O>("BEiT's block-wise patch mask with exactly num_masking_patches masked "
                        "cells; writes 'mask' (int64 [h, w]) for PackSelfSupInputs' "
                        "algorithm_keys",
                        O())
      .required("input_size", &O::input_size_, "the patch grid: int or [h, w]")
      .required("num_masking_patches", &O::num_masking_patches_, "masked cells per sample", gt(0))
      .optional("min_num_patches", &O::min_num_patches_, "smallest block area", ge(1))
      .optional("max_num_patches", &O::max_num_patches_,
                "largest block area (null: num_masking_patches)", ge(1))
      .optional("min_aspect", &O::min_aspect_, "smallest block aspect ratio", gt(0))
      .optional("max_aspect", &O::max_aspect_, "largest aspect ratio (null: 1 / min_aspect)", gt(0))
      .rule([](const O& o, const Config& cfg) {
        const auto [h, w] = grid_of(cfg["input_size"]);
        if (o.num_masking_patches() > h * w)
          cfg.fail_key("num_masking_patches", "expected at most " + std::to_string(h * w) +
                                                  " (the " + std::to_string(h) + "x" +
                                                  std::to_string(w) + " grid), got " +
                                                  std::to_string(o.num_masking_patches()));
        // A block must be smaller than the grid in both directions (h < H, w < W), so at
        // least min_num_patches cells must fit in such a block.
        if (o.min_num_patches() > (h - 1) * (w - 1))
          cfg.fail_key("min_num_patches",
                       "expected at most " + std::to_string((h - 1) * (w - 1)) +
                           " (a block is smaller than the grid in both directions), got " +
                           std::to_string(o.min_num_patches()));
        if (o.min_num_patches() > o.max_num_patches().value_or(o.num_masking_patches()))
          cfg.fail_key("min_num_patches",
                       "expected at most max_num_patches (" +
                           std::to_string(o.max_num_patches().value_or(o.num_masking_patches())) +
                           "), got " + std::to_string(o.min_num_patches()));
      });
}

BEiTMaskGenerator::BEiTMaskGenerator(const BEiTMaskGeneratorOptions& options_) : options(options_) {
  const auto [h, w] = grid_of(Config(options.input_size(), "BEiTMaskGenerator.input_size"));
  height_ = h;
  width_ = w;
  max_num_patches_ = options.max_num_patches().value_or(options.num_masking_patches());
  log_aspect_lo_ = std::log(options.min_aspect());
  log_aspect_hi_ = std::log(options.max_aspect().value_or(1.0 / options.min_aspect()));
}

int64_t BEiTMaskGenerator::add_block(int64_t* mask, int64_t max_mask_patches, Rng& rng) const {
  // Python's round() rounds halves to even, as nearbyint does in the default mode.
  int64_t delta = 0;
  for (int attempt = 0; attempt < 10; ++attempt) {
    const double target_area =
        rng.uniform(double(options.min_num_patches()), double(max_mask_patches));
    const double aspect = std::exp(rng.uniform(log_aspect_lo_, log_aspect_hi_));
    const auto h = static_cast<int64_t>(std::nearbyint(std::sqrt(target_area * aspect)));
    const auto w = static_cast<int64_t>(std::nearbyint(std::sqrt(target_area / aspect)));
    if (w < width_ && h < height_) {
      const int64_t top = rng.randint(0, height_ - h);
      const int64_t left = rng.randint(0, width_ - w);
      int64_t already = 0;
      for (int64_t i = top; i < top + h; ++i)
        for (int64_t j = left; j < left + w; ++j) already += mask[i * width_ + j];
      const int64_t fresh = h * w - already;
      if (fresh > 0 && fresh <= max_mask_patches) {
        for (int64_t i = top; i < top + h; ++i)
          for (int64_t j = left; j < left + w; ++j)
            if (mask[i * width_ + j] == 0) {
              mask[i * width_ + j] = 1;
              ++delta;
            }
      }
      if (delta > 0) break;
    }
  }
  return delta;
}

torch::Tensor BEiTMaskGenerator::generate(Rng& rng) const {
  auto mask = torch::zeros({height_, width_}, torch::kInt64);
  int64_t* data = mask.data_ptr<int64_t>();
  int64_t count = 0;
  while (count != options.num_masking_patches()) {
    const int64_t max_mask_patches =
        std::min(options.num_masking_patches() - count, max_num_patches_);
    count += add_block(data, max_mask_patches, rng);
  }
  return mask;
}

void BEiTMaskGenerator::apply(Sample& sample, Rng& rng) const {
  sample.tensors["mask"] = generate(rng);
}

std::shared_ptr<selfsup::Transform> make_beit_mask_generator(const Config& cfg) {
  return std::make_shared<BEiTMaskGenerator>(BEiTMaskGeneratorOptions::table().parse(cfg));
}

} // namespace selfsup::plugins::common
