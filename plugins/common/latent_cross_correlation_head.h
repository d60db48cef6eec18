#pragma once
// LatentCrossCorrelationHead (Barlow Twins): the cross-correlation of two batches of
// embeddings, each standardised by a BatchNorm without affine, into a loss.
#include <cstdint>
#include <memory>
#include <ostream>
#include <vector>

#include <torch/arg.h>
#include <torch/nn/modules/batchnorm.h>
#include <torch/types.h>

#include <selfsup/config.h>
#include <selfsup/interfaces/modules.h>
#include <selfsup/options.h>

namespace selfsup::plugins::common {

struct LatentCrossCorrelationHeadOptions {
  static OptionTable<LatentCrossCorrelationHeadOptions> table();
  TORCH_ARG(int64_t, in_channels) = 0;
  /// The loss, built by type name (CrossCorrelationLoss).
  TORCH_ARG(Config, loss);
};

/// As MMSelfSup's LatentCrossCorrelationHead: C = bn(input)^T bn(target) / (N * world size),
/// summed over ranks (the distributed interface's all_reduce; the identity in one process),
/// then loss(C). `bn` is one BatchNorm1d(in_channels, affine=false) applied to each side.
class LatentCrossCorrelationHead final : public selfsup::Head {
public:
  LatentCrossCorrelationHead(int64_t in_channels, std::shared_ptr<selfsup::Loss> loss);
  /// The cross-correlation matrix [C, C] of input [N, C] and target [N, C].
  torch::Tensor cross_correlation(const torch::Tensor& input, const torch::Tensor& target);
  /// inputs = {input [N, C]}; target [N, C].
  torch::Tensor loss(const std::vector<torch::Tensor>& inputs,
                     const torch::Tensor& target) override;
  void pretty_print(std::ostream& stream) const override;

private:
  int64_t in_channels_;
  torch::nn::BatchNorm1d bn_{nullptr};
  std::shared_ptr<selfsup::Loss> loss_;
};

std::shared_ptr<selfsup::Head> make_latent_cross_correlation_head(const Config& cfg);

} // namespace selfsup::plugins::common
