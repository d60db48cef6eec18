#pragma once
#include <ostream>
#include <vector>

#include <selfsup/interfaces/algorithm.h>
#include <selfsup/schema.h>

namespace selfsup::plugins::barlowtwins {

/// Barlow Twins (Zbontar et al. 2021) as MMSelfSup 1.0 computes it: z_i =
/// neck(backbone(view_i)) through the large projector, and loss = head(z_1, z_2) with
/// LatentCrossCorrelationHead (standardised cross-correlation over the global batch) and
/// CrossCorrelationLoss.
class BarlowTwins final : public BaseModel {
public:
  explicit BarlowTwins(const Config& cfg);
  static Schema schema();

  LossMap loss(const std::vector<torch::Tensor>& inputs, const DataSamples& samples) override;
  void pretty_print(std::ostream& stream) const override;
};

} // namespace selfsup::plugins::barlowtwins
