#pragma once
// MMSelfSup's HOGGenerator: the MaskFeat target, histograms of oriented gradients per cell.
#include <cstdint>
#include <memory>
#include <ostream>

#include <torch/arg.h>
#include <torch/types.h>

#include <selfsup/config.h>
#include <selfsup/interfaces/modules.h>
#include <selfsup/options.h>

namespace selfsup::plugins::maskfeat {

struct HOGGeneratorOptions {
  static OptionTable<HOGGeneratorOptions> table();
  /// Orientation bins over [0, pi) (a signed angle folds onto it).
  TORCH_ARG(int64_t, nbins) = 9;
  /// Cell size in pixels.
  TORCH_ARG(int64_t, pool) = 8;
  /// Side of the Gaussian window (sigma = window / 2) tiled over the image; 0: none.
  TORCH_ARG(int64_t, gaussian_window) = 16;
};

/// HOG features of normalised images [B, C, H, W] -> [B, 14 * 14, C * nbins * u * u]:
/// reflect-padded per-channel Sobel gradients gx ([[1, 0, -1], [2, 0, -2], [1, 0, -1]]) and
/// gy = gx^T; magnitude |(gx, gy)| times the tiled Gaussian window; bin
/// floor(atan2(gx, gy) / pi * nbins) mod nbins; magnitudes summed per pool x pool cell and
/// L2-normalised over the bins; then (as upstream, for a 14 x 14 patch grid) each patch
/// takes u x u cells with u = cells per row / 14, flattened channel-bin, dy, dx.
class HOGGenerator final : public selfsup::TargetGenerator {
public:
  explicit HOGGenerator(const HOGGeneratorOptions& options);
  torch::Tensor forward(const torch::Tensor& x) override;
  /// The normalised cell histograms [B, C, nbins, H / pool, W / pool] (before the patch
  /// reshape).
  [[nodiscard]] torch::Tensor cell_histograms(const torch::Tensor& x) const;
  void pretty_print(std::ostream& stream) const override;

  HOGGeneratorOptions options;
  torch::Tensor weight_x, weight_y, gaussian_kernel; // buffers, as upstream

  /// Upstream's fixed patch grid side of the reshape.
  static constexpr int64_t kPatchGrid = 14;
};

std::shared_ptr<selfsup::TargetGenerator> make_hog_generator(const Config& cfg);

} // namespace selfsup::plugins::maskfeat
