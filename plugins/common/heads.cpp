#include "heads.h"

#include <sstream>

#include <torch/torch.h>

#include <selfsup/registry.h>

namespace selfsup::plugins::common {

// ---- ContrastiveHead -------------------------------------------------------------------

ContrastiveHeadImpl::ContrastiveHeadImpl(std::shared_ptr<selfsup::Loss> loss, double temperature)
    : loss_(register_module("loss", std::move(loss))), temperature_(temperature) {
  TORCH_CHECK(temperature_ > 0, "ContrastiveHead: temperature must be > 0, got ", temperature_);
}

torch::Tensor ContrastiveHeadImpl::loss(const std::vector<torch::Tensor>& inputs,
                                        const torch::Tensor& /*target*/) {
  TORCH_CHECK(inputs.size() == 2, "ContrastiveHead: expected inputs {pos, neg}, got ",
              inputs.size(), " tensors");
  const torch::Tensor& pos = inputs[0];
  const torch::Tensor& neg = inputs[1];
  TORCH_CHECK(pos.dim() == 2 && neg.dim() == 2 && pos.size(0) == neg.size(0),
              "ContrastiveHead: expected pos [N, 1] and neg [N, K], got ", pos.sizes(), " and ",
              neg.sizes());
  const torch::Tensor logits = torch::cat({pos, neg}, 1) / temperature_;
  const torch::Tensor labels =
      torch::zeros({pos.size(0)}, torch::TensorOptions().dtype(torch::kLong).device(pos.device()));
  return loss_->forward(logits, labels);
}

void ContrastiveHeadImpl::pretty_print(std::ostream& stream) const {
  stream << "selfsup::plugins::common::ContrastiveHead(temperature=" << temperature_ << ")";
}

// ---- ClsHead ---------------------------------------------------------------------------

ClsHeadOptions ClsHeadOptions::from_config(const Config& cfg) {
  ClsHeadOptions o;
  o.with_avg_pool(cfg.get<bool>("with_avg_pool", false));
  o.in_channels(cfg.get<int64_t>("in_channels", 2048));
  o.num_classes(cfg.get<int64_t>("num_classes", 1000));
  o.vit_backbone(cfg.get<bool>("vit_backbone", false));
  if (o.in_channels() <= 0)
    cfg.fail_key("in_channels", "expected an int > 0, got " + std::to_string(o.in_channels()));
  if (o.num_classes() <= 0)
    cfg.fail_key("num_classes", "expected an int > 0, got " + std::to_string(o.num_classes()));
  return o;
}

ClsHeadImpl::ClsHeadImpl(const ClsHeadOptions& options_, std::shared_ptr<selfsup::Loss> loss)
    : options(options_) {
  fc_cls_ =
      register_module("fc_cls", torch::nn::Linear(options.in_channels(), options.num_classes()));
  {
    // MMSelfSup's init_cfg: Normal(std=0.01) on Linear (bias 0).
    torch::NoGradGuard no_grad;
    torch::nn::init::normal_(fc_cls_->weight, 0.0, 0.01);
    torch::nn::init::zeros_(fc_cls_->bias);
  }
  loss_ = register_module("loss", std::move(loss));
}

torch::Tensor ClsHeadImpl::logits(const std::vector<torch::Tensor>& inputs) {
  torch::Tensor x;
  if (options.vit_backbone()) {
    TORCH_CHECK(!inputs.empty(), "ClsHead: expected at least one input tensor, got none");
    x = inputs.back();
  } else {
    TORCH_CHECK(inputs.size() == 1, "ClsHead: expected exactly one input tensor, got ",
                inputs.size());
    x = inputs[0];
  }
  if (options.with_avg_pool()) {
    TORCH_CHECK(x.dim() == 4, "ClsHead: with_avg_pool needs a [N, C, H, W] input, got ", x.sizes());
    x = torch::adaptive_avg_pool2d(x, {1, 1});
  }
  x = x.reshape({x.size(0), -1});
  TORCH_CHECK(x.size(1) == options.in_channels(), "ClsHead: expected ", options.in_channels(),
              " input features, got ", x.size(1));
  return fc_cls_(x);
}

torch::Tensor ClsHeadImpl::loss(const std::vector<torch::Tensor>& inputs,
                                const torch::Tensor& target) {
  return loss_->forward(logits(inputs), target);
}

std::vector<torch::Tensor> ClsHeadImpl::predict(const std::vector<torch::Tensor>& inputs) {
  return {torch::softmax(logits(inputs), 1)};
}

void ClsHeadImpl::pretty_print(std::ostream& stream) const {
  stream << "selfsup::plugins::common::ClsHead(in_channels=" << options.in_channels()
         << ", num_classes=" << options.num_classes()
         << ", with_avg_pool=" << options.with_avg_pool()
         << ", vit_backbone=" << options.vit_backbone() << ")";
}

// ---- LatentPredictHead -----------------------------------------------------------------

LatentPredictHeadImpl::LatentPredictHeadImpl(std::shared_ptr<selfsup::Neck> predictor,
                                             std::shared_ptr<selfsup::Loss> loss)
    : predictor_(register_module("predictor", std::move(predictor))),
      loss_(register_module("loss", std::move(loss))) {}

torch::Tensor LatentPredictHeadImpl::loss(const std::vector<torch::Tensor>& inputs,
                                          const torch::Tensor& target) {
  TORCH_CHECK(inputs.size() == 1, "LatentPredictHead: expected inputs {input}, got ", inputs.size(),
              " tensors");
  const std::vector<torch::Tensor> pred = predictor_->forward({inputs[0]});
  TORCH_CHECK(!pred.empty(), "LatentPredictHead: the predictor returned no tensor");
  return loss_->forward(pred[0], target.detach());
}

void LatentPredictHeadImpl::pretty_print(std::ostream& stream) const {
  stream << "selfsup::plugins::common::LatentPredictHead";
}

// ---- registration ----------------------------------------------------------------------

namespace {
selfsup::Json default_ce() {
  return selfsup::Json::object({{"type", "CrossEntropyLoss"}});
}
} // namespace

selfsup::Schema contrastive_head_schema() {
  using selfsup::ArgType;
  using selfsup::Json;
  return selfsup::Schema("InfoNCE head: loss(cat(pos, neg) / temperature, label 0), as "
                         "MMSelfSup's ContrastiveHead (SimCLR, MoCo, NPID)")
      .optional("loss", ArgType::Dict, default_ce(), "loss config (built by type name)")
      .optional("temperature", ArgType::Float, Json(0.1), "softmax temperature, > 0");
}

selfsup::Schema cls_head_schema() {
  using selfsup::ArgType;
  using selfsup::Json;
  return selfsup::Schema("[avgpool] -> fc_cls classifier, as MMSelfSup's ClsHead")
      .optional("loss", ArgType::Dict, default_ce(), "loss config (built by type name)")
      .optional("with_avg_pool", ArgType::Bool, Json(false),
                "global average pooling of a [N, C, H, W] input first")
      .optional("in_channels", ArgType::Int, Json(2048), "input features")
      .optional("num_classes", ArgType::Int, Json(1000), "number of classes")
      .optional("vit_backbone", ArgType::Bool, Json(false),
                "take the last input tensor (a ViT's cls token)");
}

selfsup::Schema latent_predict_head_schema() {
  using selfsup::ArgType;
  return selfsup::Schema("loss(predictor(input), stop-grad(target)), as MMSelfSup's "
                         "LatentPredictHead (BYOL, SimSiam)")
      .required("loss", ArgType::Dict, "loss config, e.g. {type: 'CosineSimilarityLoss'}")
      .required("predictor", ArgType::Dict,
                "predictor neck config, e.g. {type: 'NonLinearNeck', ...}");
}

std::shared_ptr<selfsup::Head> make_contrastive_head(const Config& cfg) {
  const double temperature = cfg.get<double>("temperature", 0.1);
  if (!(temperature > 0))
    cfg.fail_key("temperature", "expected a number > 0, got " + cfg["temperature"].json().dump());
  return std::make_shared<ContrastiveHeadImpl>(selfsup::build<selfsup::Loss>(cfg["loss"]),
                                               temperature);
}

std::shared_ptr<selfsup::Head> make_cls_head(const Config& cfg) {
  const auto options = ClsHeadOptions::from_config(cfg);
  return std::make_shared<ClsHeadImpl>(options, selfsup::build<selfsup::Loss>(cfg["loss"]));
}

std::shared_ptr<selfsup::Head> make_latent_predict_head(const Config& cfg) {
  auto predictor = selfsup::build<selfsup::Neck>(cfg["predictor"]);
  auto loss = selfsup::build<selfsup::Loss>(cfg["loss"]);
  return std::make_shared<LatentPredictHeadImpl>(std::move(predictor), std::move(loss));
}

} // namespace selfsup::plugins::common
