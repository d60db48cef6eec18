#pragma once
// MMSelfSup's PixelReconstructionLoss (MaskFeat, MixMIM, SparK, iTPN): an L1 or L2 penalty
// between a reconstruction and its target.
#include <memory>
#include <optional>
#include <ostream>
#include <string>

#include <torch/arg.h>
#include <torch/types.h>

#include <selfsup/config.h>
#include <selfsup/interfaces/modules.h>
#include <selfsup/options.h>

namespace selfsup::plugins::common {

struct PixelReconstructionLossOptions {
  static OptionTable<PixelReconstructionLossOptions> table();
  /// 'L1' or 'L2'.
  TORCH_ARG(std::string, criterion) = "L2";
  /// Upstream divides a *masked* loss by it; the Loss interface has no mask, so a head that
  /// masks (MaskFeatPretrainHead) selects the masked rows itself and refuses a channel.
  TORCH_ARG(std::optional<int64_t>, channel) = std::nullopt;
};

/// `penalty(pred, target)` element-wise (|d| for L1, d^2 for L2); a 3-D result is first
/// averaged over its last dim, then everything is averaged: upstream's forward without a
/// mask. Masked use: pass the masked rows only ([M, C]), which gives upstream's
/// `sum(loss * mask) / sum(mask)` for channel 1.
class PixelReconstructionLoss final : public selfsup::Loss {
public:
  explicit PixelReconstructionLoss(const PixelReconstructionLossOptions& options)
      : options(options) {}
  torch::Tensor forward(const torch::Tensor& pred, const torch::Tensor& target) override;
  void pretty_print(std::ostream& stream) const override;

  PixelReconstructionLossOptions options;
};

std::shared_ptr<selfsup::Loss> make_pixel_reconstruction_loss(const Config& cfg);

} // namespace selfsup::plugins::common
