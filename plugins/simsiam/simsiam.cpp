#include "simsiam.h"

#include <torch/torch.h>

#include <selfsup/errors.h>

namespace selfsup::plugins::simsiam {

Schema SimSiam::schema() {
  return BaseModel::base_schema(
      "SimSiam: each view's projection is predicted from the other's through the head's "
      "predictor, with a stop-gradient on the target side (symmetric loss, halved).");
}

SimSiam::SimSiam(const Config& cfg) : BaseModel(cfg) {
  if (!neck_) cfg.fail_key("neck", "SimSiam needs a neck (the projector)");
  if (!head_) cfg.fail_key("head", "SimSiam needs a head (LatentPredictHead with its predictor)");
}

LossMap SimSiam::loss(const std::vector<torch::Tensor>& inputs, const DataSamples&) {
  TORCH_CHECK(inputs.size() == 2, "SimSiam expects 2 views per image, got ", inputs.size());
  const torch::Tensor z1 = neck_->forward(backbone_->forward(inputs[0]))[0];
  const torch::Tensor z2 = neck_->forward(backbone_->forward(inputs[1]))[0];
  // The head detaches its target: the stop-gradient.
  const torch::Tensor loss_1 = head_->loss({z1}, z2);
  const torch::Tensor loss_2 = head_->loss({z2}, z1);
  return {{"loss", 0.5 * (loss_1 + loss_2)}};
}

void SimSiam::pretty_print(std::ostream& stream) const {
  stream << "selfsup::SimSiam";
}

} // namespace selfsup::plugins::simsiam
