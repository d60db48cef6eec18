#pragma once
#include <ostream>
#include <vector>

#include <selfsup/interfaces/algorithm.h>
#include <selfsup/schema.h>

namespace selfsup::plugins::simsiam {

/// SimSiam (Chen & He 2021) as MMSelfSup 1.0 computes it: z_i = neck(backbone(view_i)); the
/// head (LatentPredictHead) predicts each view's projection from the other's, the target side
/// detached (stop-gradient): loss = 0.5 * (head(z_1, z_2) + head(z_2, z_1)). The predictor's
/// fixed learning rate is SimSiamHook's.
class SimSiam final : public BaseModel {
public:
  explicit SimSiam(const Config& cfg);
  static Schema schema();

  LossMap loss(const std::vector<torch::Tensor>& inputs, const DataSamples& samples) override;
  void pretty_print(std::ostream& stream) const override;
};

} // namespace selfsup::plugins::simsiam
