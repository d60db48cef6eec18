#include "mocov3.h"

#include <string>

#include <torch/torch.h>

#include <selfsup/bricks/ema.h>
#include <selfsup/dist.h>
#include <selfsup/errors.h>
#include <selfsup/interfaces/training.h>
#include <selfsup/registry.h>

namespace selfsup::plugins::moco {

// ---- MoCoV3Head ------------------------------------------------------------------------

OptionTable<MoCoV3HeadOptions> MoCoV3HeadOptions::table() {
  using O = MoCoV3HeadOptions;
  using namespace selfsup::check;
  return OptionTable<O>("MoCo v3's head: predictor, then a contrastive loss of the normalised "
                        "predictions against the normalised momentum features of the global "
                        "batch (the positive is each sample's own), as MMSelfSup's MoCoV3Head",
                        O())
      .required("predictor", &O::predictor_,
                "predictor neck config, e.g. {type: 'NonLinearNeck', ...}")
      .component("neck")
      .required("loss", &O::loss_,
                "loss of the logits and labels, e.g. {type: 'mmcls.CrossEntropyLoss', "
                "loss_weight: 2 * temperature}")
      .component("loss")
      .optional("temperature", &O::temperature_, "divides the cosine logits", gt(0));
}

MoCoV3Head::MoCoV3Head(std::shared_ptr<selfsup::Neck> predictor,
                       std::shared_ptr<selfsup::Loss> loss, double temperature)
    : predictor_(register_module("predictor", std::move(predictor))),
      loss_(register_module("loss", std::move(loss))), temperature_(temperature) {}

torch::Tensor MoCoV3Head::loss(const std::vector<torch::Tensor>& inputs,
                               const torch::Tensor& target) {
  TORCH_CHECK(inputs.size() == 1, "MoCoV3Head: expected inputs {base_out}, got ", inputs.size(),
              " tensors");
  TORCH_CHECK(target.defined() && target.dim() == 2,
              "MoCoV3Head: expected the momentum features [N, C] as target");
  const auto pred_out = predictor_->forward({inputs[0]});
  TORCH_CHECK(!pred_out.empty(), "MoCoV3Head: the predictor returned no tensor");
  namespace F = torch::nn::functional;
  const auto normalize = F::NormalizeFuncOptions().dim(1);
  auto pred = F::normalize(pred_out[0], normalize);
  auto keys = F::normalize(target.detach(), normalize);
  // The keys of every rank (MMSelfSup's concat_all_gather: no gradient).
  auto parts = dist().all_gather(keys);
  keys = parts.size() == 1 ? parts[0] : torch::cat(parts);
  auto logits = torch::matmul(pred, keys.to(pred.scalar_type()).t()) / temperature_;
  const int64_t n = logits.size(0);
  auto labels =
      torch::arange(n, torch::TensorOptions().dtype(torch::kLong).device(logits.device())) +
      n * dist().rank();
  return loss_->forward(logits, labels);
}

void MoCoV3Head::pretty_print(std::ostream& stream) const {
  stream << "selfsup::plugins::moco::MoCoV3Head(temperature=" << temperature_ << ")";
}

std::shared_ptr<selfsup::Head> make_mocov3_head(const Config& cfg) {
  const auto options = MoCoV3HeadOptions::table().parse(cfg);
  return std::make_shared<MoCoV3Head>(build<selfsup::Neck>(options.predictor()),
                                      build<selfsup::Loss>(options.loss()), options.temperature());
}

// ---- MoCoV3 ----------------------------------------------------------------------------

Schema MoCoV3::schema() {
  using namespace selfsup::check;
  return BaseModel::base_schema(
             "MoCo v3: the two views' predictions against the momentum encoder's features of "
             "the other view, contrasted over the global batch by MoCoV3Head, symmetric; the "
             "momentum encoder follows by CosineEMA.")
      .optional("base_momentum", ArgType::Float, 0.99,
                "CosineEMA's starting momentum (rises to 1 with the cosine of iter / max_iters)",
                {in(0.0, 1.0)});
}

MoCoV3::MoCoV3(const Config& cfg)
    : BaseModel(cfg), base_momentum_(cfg.get<double>("base_momentum")) {
  if (!neck_) cfg.fail_key("neck", "MoCoV3 needs a neck (the projector)");
  if (!head_) cfg.fail_key("head", "MoCoV3 needs a head (MoCoV3Head)");

  // The base encoder seen with the momentum encoder's names, not registered here (its
  // modules are this model's `backbone` and `neck`).
  query_view_ = std::make_shared<torch::nn::Module>("MoCoV3BaseEncoder");
  query_view_->register_module("0", backbone_);
  query_view_->register_module("1", neck_);

  // A second instance from the same config, a copy, never optimised: MMEngine's averaged
  // model (CosineEMA) holds it as `module` beside its `steps` counter.
  backbone_k_ = build<Backbone>(cfg["backbone"]);
  neck_k_ = build<Neck>(cfg["neck"]);
  key_encoder_ = std::make_shared<torch::nn::Module>("MoCoV3MomentumEncoder");
  key_encoder_->register_module("0", backbone_k_);
  key_encoder_->register_module("1", neck_k_);
  ema_ = std::make_shared<torch::nn::Module>("CosineEMA");
  ema_->register_module("module", key_encoder_);
  steps_ = ema_->register_buffer("steps", torch::zeros({}, torch::kLong));
  register_module("momentum_encoder", ema_);
  bricks::copy_module_state(*key_encoder_, *query_view_);
  bricks::freeze(*ema_);
}

LossMap MoCoV3::loss(const std::vector<torch::Tensor>& inputs, const DataSamples&) {
  TORCH_CHECK(inputs.size() == 2, "MoCoV3 expects 2 views per image, got ", inputs.size());
  const auto& view_1 = inputs[0];
  const auto& view_2 = inputs[1];
  auto q1 = neck_->forward(backbone_->forward(view_1))[0];
  auto q2 = neck_->forward(backbone_->forward(view_2))[0];

  torch::Tensor k1, k2;
  {
    torch::NoGradGuard no_grad;
    const int64_t step = context() ? context()->iter() : 0;
    last_momentum_ =
        step == 0 ? 0.0
                  : bricks::cosine_ema_momentum(base_momentum_, 1.0, step, context()->max_iters());
    bricks::momentum_update(*key_encoder_, *query_view_, last_momentum_, step);
    steps_.add_(1);
    k1 = neck_k_->forward(backbone_k_->forward(view_1))[0];
    k2 = neck_k_->forward(backbone_k_->forward(view_2))[0];
  }
  auto loss = head_->loss({q1}, k2) + head_->loss({q2}, k1);
  return {{"loss", loss}};
}

void MoCoV3::pretty_print(std::ostream& stream) const {
  stream << "selfsup::MoCoV3(base_momentum=" << base_momentum_ << ")";
}

} // namespace selfsup::plugins::moco
