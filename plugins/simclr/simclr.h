#pragma once
#include <selfsup/interfaces/algorithm.h>
#include <selfsup/schema.h>

namespace selfsup::plugins::simclr {

/// SimCLR (Chen et al. 2020) as MMSelfSup computes it: the two views of each image are
/// interleaved into a batch of 2N, embeddings are L2-normalised, and each row's positive is
/// its partner view while the other 2N-2 rows are negatives, through a ContrastiveHead.
class SimCLR final : public BaseModel {
public:
  explicit SimCLR(const Config& cfg);
  static Schema schema();

  LossMap loss(const std::vector<torch::Tensor>& inputs, const DataSamples& samples) override;
  void pretty_print(std::ostream& stream) const override;
};

} // namespace selfsup::plugins::simclr
