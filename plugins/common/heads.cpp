#include "heads.h"

#include <sstream>

#include <torch/torch.h>

#include <selfsup/registry.h>

namespace selfsup::plugins::common {

Config cross_entropy_loss_config() {
  return Config(Json::object({{"type", "CrossEntropyLoss"}}));
}

// ---- ContrastiveHead -------------------------------------------------------------------

OptionTable<ContrastiveHeadOptions> ContrastiveHeadOptions::table() {
  using O = ContrastiveHeadOptions;
  return OptionTable<O>("InfoNCE head: loss(cat(pos, neg) / temperature, label 0), as "
                        "MMSelfSup's ContrastiveHead (SimCLR, MoCo, NPID)",
                        O())
      .optional("loss", &O::loss_, "loss config (built by type name)")
      .component("loss")
      .optional("temperature", &O::temperature_, "softmax temperature", check::gt(0));
}

ContrastiveHead::ContrastiveHead(std::shared_ptr<selfsup::Loss> loss, double temperature)
    : loss_(register_module("loss", std::move(loss))), temperature_(temperature) {
  TORCH_CHECK(temperature_ > 0, "ContrastiveHead: temperature must be > 0, got ", temperature_);
}

torch::Tensor ContrastiveHead::loss(const std::vector<torch::Tensor>& inputs,
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

void ContrastiveHead::pretty_print(std::ostream& stream) const {
  stream << "selfsup::plugins::common::ContrastiveHead(temperature=" << temperature_ << ")";
}

// ---- ClsHead ---------------------------------------------------------------------------

OptionTable<ClsHeadOptions> ClsHeadOptions::table() {
  using O = ClsHeadOptions;
  using namespace selfsup::check;
  return OptionTable<O>("[avgpool] -> fc_cls classifier, as MMSelfSup's ClsHead", O())
      .optional("loss", &O::loss_, "loss config (built by type name)")
      .component("loss")
      .optional("with_avg_pool", &O::with_avg_pool_,
                "global average pooling of a [N, C, H, W] input first")
      .optional("in_channels", &O::in_channels_, "input features", gt(0))
      .optional("num_classes", &O::num_classes_, "number of classes", gt(0))
      .optional("vit_backbone", &O::vit_backbone_, "take the last input tensor (a ViT's cls token)")
      .optional("init_cfg", &O::init_cfg_,
                "null (Normal std 0.01 on fc_cls) or MMEngine init dicts: Normal (mean, std, "
                "bias) / Constant (val, bias) with a layer; those on Linear set fc_cls")
      .as(ArgType::Any)
      .rule([](const O& o, const Config& cfg) {
        if (o.init_cfg().is_null()) return;
        const Config init = cfg["init_cfg"];
        const bool list = init.is_array();
        for (size_t i = 0; i < (list ? init.size() : 1); ++i) {
          const Config entry = list ? init.at(i) : init;
          if (!entry.is_object() || !entry.has("type"))
            entry.fail("expected an init dict with a type, got " + entry.json().dump());
          const auto type = entry.get<std::string>("type");
          if (type != "Normal" && type != "Constant")
            entry.fail_key("type", "expected 'Normal' or 'Constant', got '" + type + "'");
          for (const auto& key : entry.keys()) {
            const bool ok = key == "type" || key == "layer" || key == "bias" ||
                            (type == "Normal" ? key == "mean" || key == "std" : key == "val");
            if (!ok) entry.fail_key(key, "unknown key of a " + type + " init");
            if (key != "type" && key != "layer") (void)entry.get<double>(key);
          }
        }
      });
}

namespace {

/// Applies ClsHead's init_cfg (validated by the table) to fc_cls.
void init_fc_cls(torch::nn::Linear& fc, const Json& init_cfg) {
  torch::NoGradGuard no_grad;
  if (init_cfg.is_null()) { // MMSelfSup's default init_cfg: Normal(std=0.01) on Linear, bias 0
    torch::nn::init::normal_(fc->weight, 0.0, 0.01);
    torch::nn::init::zeros_(fc->bias);
    return;
  }
  const auto number = [](const Json& d, const char* key, double fallback) {
    const Json* v = d.find(key);
    return v ? v->as_number() : fallback;
  };
  const auto on_linear = [](const Json& d) {
    const Json* layer = d.find("layer");
    if (!layer) return true;
    if (layer->is_string()) return layer->as_string() == "Linear";
    for (const auto& item : layer->items())
      if (item.is_string() && item.as_string() == "Linear") return true;
    return false;
  };
  const std::vector<Json> entries =
      init_cfg.is_array() ? init_cfg.items() : std::vector<Json>{init_cfg};
  for (const auto& d : entries) {
    if (!on_linear(d)) continue;
    if (d.find("type")->as_string() == "Normal")
      torch::nn::init::normal_(fc->weight, number(d, "mean", 0.0), number(d, "std", 1.0));
    else
      torch::nn::init::constant_(fc->weight, number(d, "val", 0.0));
    torch::nn::init::constant_(fc->bias, number(d, "bias", 0.0));
  }
}

} // namespace

ClsHead::ClsHead(const ClsHeadOptions& options_, std::shared_ptr<selfsup::Loss> loss)
    : options(options_) {
  fc_cls_ =
      register_module("fc_cls", torch::nn::Linear(options.in_channels(), options.num_classes()));
  init_fc_cls(fc_cls_, options.init_cfg());
  loss_ = register_module("loss", std::move(loss));
}

torch::Tensor ClsHead::logits(const std::vector<torch::Tensor>& inputs) {
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

torch::Tensor ClsHead::loss(const std::vector<torch::Tensor>& inputs, const torch::Tensor& target) {
  return loss_->forward(logits(inputs), target);
}

std::vector<torch::Tensor> ClsHead::predict(const std::vector<torch::Tensor>& inputs) {
  return {torch::softmax(logits(inputs), 1)};
}

void ClsHead::pretty_print(std::ostream& stream) const {
  stream << "selfsup::plugins::common::ClsHead(in_channels=" << options.in_channels()
         << ", num_classes=" << options.num_classes()
         << ", with_avg_pool=" << options.with_avg_pool()
         << ", vit_backbone=" << options.vit_backbone() << ")";
}

// ---- LatentPredictHead -----------------------------------------------------------------

OptionTable<LatentPredictHeadOptions> LatentPredictHeadOptions::table() {
  using O = LatentPredictHeadOptions;
  return OptionTable<O>("loss(predictor(input), stop-grad(target)), as MMSelfSup's "
                        "LatentPredictHead (BYOL, SimSiam)",
                        O())
      .required("loss", &O::loss_, "loss config, e.g. {type: 'CosineSimilarityLoss'}")
      .component("loss")
      .required("predictor", &O::predictor_,
                "predictor neck config, e.g. {type: 'NonLinearNeck', ...}")
      .component("neck");
}

LatentPredictHead::LatentPredictHead(std::shared_ptr<selfsup::Neck> predictor,
                                     std::shared_ptr<selfsup::Loss> loss)
    : predictor_(register_module("predictor", std::move(predictor))),
      loss_(register_module("loss", std::move(loss))) {}

torch::Tensor LatentPredictHead::loss(const std::vector<torch::Tensor>& inputs,
                                      const torch::Tensor& target) {
  TORCH_CHECK(inputs.size() == 1, "LatentPredictHead: expected inputs {input}, got ", inputs.size(),
              " tensors");
  const std::vector<torch::Tensor> pred = predictor_->forward({inputs[0]});
  TORCH_CHECK(!pred.empty(), "LatentPredictHead: the predictor returned no tensor");
  return loss_->forward(pred[0], target.detach());
}

void LatentPredictHead::pretty_print(std::ostream& stream) const {
  stream << "selfsup::plugins::common::LatentPredictHead";
}

// ---- registration ----------------------------------------------------------------------

std::shared_ptr<selfsup::Head> make_contrastive_head(const Config& cfg) {
  const auto options = ContrastiveHeadOptions::table().parse(cfg);
  return std::make_shared<ContrastiveHead>(selfsup::build<selfsup::Loss>(options.loss()),
                                           options.temperature());
}

std::shared_ptr<selfsup::Head> make_cls_head(const Config& cfg) {
  const auto options = ClsHeadOptions::table().parse(cfg);
  return std::make_shared<ClsHead>(options, selfsup::build<selfsup::Loss>(options.loss()));
}

std::shared_ptr<selfsup::Head> make_latent_predict_head(const Config& cfg) {
  const auto options = LatentPredictHeadOptions::table().parse(cfg);
  auto predictor = selfsup::build<selfsup::Neck>(options.predictor());
  auto loss = selfsup::build<selfsup::Loss>(options.loss());
  return std::make_shared<LatentPredictHead>(std::move(predictor), std::move(loss));
}

} // namespace selfsup::plugins::common
