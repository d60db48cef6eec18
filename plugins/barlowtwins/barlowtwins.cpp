#include "barlowtwins.h"

#include <torch/torch.h>

#include <selfsup/errors.h>

namespace selfsup::plugins::barlowtwins {

Schema BarlowTwins::schema() {
  return BaseModel::base_schema(
      "Barlow Twins: the cross-correlation of the two views' standardised projections is "
      "pushed to the identity (LatentCrossCorrelationHead, CrossCorrelationLoss).");
}

BarlowTwins::BarlowTwins(const Config& cfg) : BaseModel(cfg) {
  if (!neck_) cfg.fail_key("neck", "BarlowTwins needs a neck (the projector)");
  if (!head_) cfg.fail_key("head", "BarlowTwins needs a head (LatentCrossCorrelationHead)");
}

LossMap BarlowTwins::loss(const std::vector<torch::Tensor>& inputs, const DataSamples&) {
  TORCH_CHECK(inputs.size() == 2, "BarlowTwins expects 2 views per image, got ", inputs.size());
  const torch::Tensor z1 = neck_->forward(backbone_->forward(inputs[0]))[0];
  const torch::Tensor z2 = neck_->forward(backbone_->forward(inputs[1]))[0];
  return {{"loss", head_->loss({z1}, z2)}};
}

void BarlowTwins::pretty_print(std::ostream& stream) const {
  stream << "selfsup::BarlowTwins";
}

} // namespace selfsup::plugins::barlowtwins
