#pragma once
// MMSelfSup's BEiTMaskGenerator (BEiT, CAE, MaskFeat): a block-wise patch mask with exactly
// num_masking_patches masked cells.
#include <cstdint>
#include <memory>
#include <optional>
#include <ostream>

#include <torch/arg.h>
#include <torch/types.h>

#include <selfsup/config.h>
#include <selfsup/interfaces/data.h>
#include <selfsup/json.h>
#include <selfsup/options.h>

namespace selfsup::plugins::common {

struct BEiTMaskGeneratorOptions {
  static OptionTable<BEiTMaskGeneratorOptions> table();
  /// The patch grid: int or [h, w].
  TORCH_ARG(Json, input_size) = 14;
  TORCH_ARG(int64_t, num_masking_patches) = 75;
  TORCH_ARG(int64_t, min_num_patches) = 4;
  /// null: num_masking_patches.
  TORCH_ARG(std::optional<int64_t>, max_num_patches) = std::nullopt;
  TORCH_ARG(double, min_aspect) = 0.3;
  /// null: 1 / min_aspect.
  TORCH_ARG(std::optional<double>, max_aspect) = std::nullopt;
};

/// Writes `mask` (int64 [h, w], 1 = masked) with exactly num_masking_patches ones: blocks
/// are added until the count is reached; each of up to 10 tries per block draws an area
/// U(min_num_patches, min(remaining, max_num_patches)) and a log-uniform aspect ratio, and
/// is kept when it fits (h < H, w < W) and adds between 1 and `remaining` new cells.
class BEiTMaskGenerator final : public selfsup::Transform {
public:
  explicit BEiTMaskGenerator(const BEiTMaskGeneratorOptions& options);
  void apply(Sample& sample, Rng& rng) const override;
  /// The mask alone (what apply writes).
  [[nodiscard]] torch::Tensor generate(Rng& rng) const;

  BEiTMaskGeneratorOptions options;

private:
  /// One block: the number of cells it newly masked (0 after 10 failed tries).
  int64_t add_block(int64_t* mask, int64_t max_mask_patches, Rng& rng) const;
  int64_t height_ = 0, width_ = 0, max_num_patches_ = 0;
  double log_aspect_lo_ = 0.0, log_aspect_hi_ = 0.0;
};

std::shared_ptr<selfsup::Transform> make_beit_mask_generator(const Config& cfg);

} // namespace selfsup::plugins::common
