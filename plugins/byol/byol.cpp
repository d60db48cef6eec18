#include "byol.h"

#include <torch/torch.h>

#include <selfsup/bricks/ema.h>
#include <selfsup/errors.h>
#include <selfsup/interfaces/training.h>
#include <selfsup/registry.h>

namespace selfsup::plugins::byol {

namespace {

/// A `Sequential(backbone, neck)`-shaped holder: children `0` and `1`.
std::shared_ptr<torch::nn::Module> pair_of(const std::shared_ptr<Backbone>& backbone,
                                           const std::shared_ptr<Neck>& neck) {
  auto holder = std::make_shared<torch::nn::Module>("Sequential");
  holder->register_module("0", backbone);
  holder->register_module("1", neck);
  return holder;
}

} // namespace

TargetNetwork::TargetNetwork(std::shared_ptr<Backbone> backbone, std::shared_ptr<Neck> neck)
    : backbone_(std::move(backbone)), neck_(std::move(neck)) {
  module_ = register_module("module", pair_of(backbone_, neck_));
}

torch::Tensor TargetNetwork::forward(const torch::Tensor& x) {
  return neck_->forward(backbone_->forward(x))[0];
}

Schema BYOL::schema() {
  return BaseModel::base_schema(
             "BYOL: an online network with a predictor regresses the projections of a "
             "CosineEMA target network across the two views (symmetric loss).")
      .optional("base_momentum", ArgType::Float, 0.996,
                "the target's EMA momentum at the first iteration; it rises to 1 with the "
                "cosine of iteration / max iterations (CosineEMA)",
                {check::in(0, 1)});
}

BYOL::BYOL(const Config& cfg)
    : BaseModel(cfg), base_momentum_(cfg.get<double>("base_momentum", 0.996)) {
  if (!neck_) cfg.fail_key("neck", "BYOL needs a neck (the projector)");
  if (!head_) cfg.fail_key("head", "BYOL needs a head (LatentPredictHead with its predictor)");
  // The target: a second instance built from the same config, starting as a copy of the
  // online network, never optimised.
  target_net_ = register_module(
      "target_net",
      std::make_shared<TargetNetwork>(build<Backbone>(cfg["backbone"]), build<Neck>(cfg["neck"])));
  update_target(0, 1);
  bricks::freeze(*target_net_);
}

void BYOL::update_target(int64_t step, int64_t max_iters) {
  const auto online = pair_of(backbone_, neck_);
  const double momentum = step == 0
                              ? base_momentum_
                              : bricks::cosine_ema_momentum(base_momentum_, 1.0, step, max_iters);
  bricks::momentum_update(target_net_->module(), *online, momentum, step);
}

LossMap BYOL::loss(const std::vector<torch::Tensor>& inputs, const DataSamples&) {
  TORCH_CHECK(inputs.size() == 2, "BYOL expects 2 views per image, got ", inputs.size());
  const torch::Tensor proj_online_1 = neck_->forward(backbone_->forward(inputs[0]))[0];
  const torch::Tensor proj_online_2 = neck_->forward(backbone_->forward(inputs[1]))[0];
  torch::Tensor proj_target_1, proj_target_2;
  {
    torch::NoGradGuard no_grad;
    const RunnerContext* run = context();
    update_target(run ? run->iter() : 0, run ? run->max_iters() : 1);
    proj_target_1 = target_net_->forward(inputs[0]);
    proj_target_2 = target_net_->forward(inputs[1]);
  }
  const torch::Tensor loss_1 = head_->loss({proj_online_1}, proj_target_2);
  const torch::Tensor loss_2 = head_->loss({proj_online_2}, proj_target_1);
  return {{"loss", 2.0 * (loss_1 + loss_2)}};
}

void BYOL::pretty_print(std::ostream& stream) const {
  stream << "selfsup::BYOL(base_momentum=" << base_momentum_ << ")";
}

} // namespace selfsup::plugins::byol
