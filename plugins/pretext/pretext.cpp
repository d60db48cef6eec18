#include "pretext.h"

#include <utility>

#include <torch/torch.h>

#include <selfsup/errors.h>

namespace selfsup::plugins::pretext {

namespace {

/// The top-1 accuracy (in %) of `scores` [N, K] against `labels` [N], without gradient.
torch::Tensor accuracy(const torch::Tensor& scores, const torch::Tensor& labels) {
  torch::NoGradGuard no_grad;
  return scores.argmax(1).eq(labels).to(torch::kFloat32).mean() * 100.0;
}

/// pseudo_label[key] flattened to [B * n] int64, checked to hold n labels per sample.
torch::Tensor flat_labels(const DataSamples& samples, const std::string& key, int64_t n,
                          const char* who) {
  const torch::Tensor& labels = samples.pseudo_label_at(key);
  TORCH_CHECK(labels.numel() == labels.size(0) * n, who, ": expected ", n, " ", key,
              " values per sample, got a batch of ", labels.sizes());
  return labels.flatten().to(torch::kLong);
}

} // namespace

// ---- data preprocessors ----------------------------------------------------------------

RelativeLocDataPreprocessor::RelativeLocDataPreprocessor(const SelfSupDataPreprocessorOptions& o)
    : base_(o) {}

std::vector<torch::Tensor>
RelativeLocDataPreprocessor::forward(const std::vector<torch::Tensor>& views,
                                     DataSamples& samples) const {
  // One view: an image to evaluate (kNN, linear probe, extract), only normalised; upstream
  // evaluates through a separate config with a plain preprocessor.
  if (views.size() == 1) return base_.forward(views, samples);
  TORCH_CHECK(views.size() == 9,
              "RelativeLocDataPreprocessor: expected 9 views (the centre patch, then 8 "
              "neighbours, as RandomPatchWithLabels makes them) or 1 image to evaluate, got ",
              views.size());
  const std::vector<torch::Tensor> x = base_.forward(views, samples);
  const std::vector<torch::Tensor> neighbours(x.begin() + 1, x.end());
  torch::Tensor img1 = torch::stack(neighbours, 1); // [B, 8, C, h, w]
  img1 = img1.reshape({img1.size(0) * 8, img1.size(2), img1.size(3), img1.size(4)});
  torch::Tensor img2 = x[0].unsqueeze(1).repeat({1, 8, 1, 1, 1});
  img2 = img2.reshape({img2.size(0) * 8, img2.size(2), img2.size(3), img2.size(4)});
  return {img1, img2};
}

RotationPredDataPreprocessor::RotationPredDataPreprocessor(const SelfSupDataPreprocessorOptions& o)
    : base_(o) {}

std::vector<torch::Tensor>
RotationPredDataPreprocessor::forward(const std::vector<torch::Tensor>& views,
                                      DataSamples& samples) const {
  TORCH_CHECK(!views.empty(), "RotationPredDataPreprocessor: expected the rotated views, got none");
  torch::Tensor img = torch::stack(base_.forward(views, samples), 1); // [B, V, C, H, W]
  return {img.reshape({img.size(0) * img.size(1), img.size(2), img.size(3), img.size(4)})};
}

// ---- RelativeLocNeck -------------------------------------------------------------------

OptionTable<RelativeLocNeckOptions> RelativeLocNeckOptions::table() {
  using O = RelativeLocNeckOptions;
  using namespace selfsup::check;
  return OptionTable<O>("RelativeLoc's neck: [avgpool] -> fc (2 * in_channels -> out_channels) "
                        "-> BN (momentum 0.003) -> ReLU -> Dropout (MMSelfSup's RelativeLocNeck)",
                        O())
      .required("in_channels", &O::in_channels_,
                "backbone channels (the fc takes twice as many: neighbour and centre)", gt(0))
      .required("out_channels", &O::out_channels_, "output features", gt(0))
      .optional("with_avg_pool", &O::with_avg_pool_, "global average pooling first")
      .optional("norm_cfg", &O::norm_cfg_,
                "{type: 'BN1d'} (BN: the same; SyncBN: global batch statistics)")
      .as(ArgType::Dict)
      .rule([](const O& o, const Config& cfg) {
        const Config norm = cfg["norm_cfg"];
        for (const auto& key : norm.keys())
          if (key != "type")
            norm.fail_key(key, "unknown key: RelativeLocNeck's norm layer takes only `type` (its "
                               "momentum is 0.003, set by the neck, as upstream)");
        const Json* type = o.norm_cfg().find("type");
        if (!type || !type->is_string() ||
            (type->as_string() != "BN1d" && type->as_string() != "BN" &&
             type->as_string() != "SyncBN"))
          norm.fail("expected {type: 'BN1d' | 'BN' | 'SyncBN'}, got " + o.norm_cfg().dump());
      });
}

RelativeLocNeck::RelativeLocNeck(const RelativeLocNeckOptions& options_) : options(options_) {
  fc_ = register_module("fc", torch::nn::Linear(options.in_channels() * 2, options.out_channels()));
  const Json* norm_type = options.norm_cfg().find("type");
  const bool sync = norm_type && norm_type->is_string() && norm_type->as_string() == "SyncBN";
  bn_ = register_module(
      "bn", bricks::BatchNorm1d(torch::nn::BatchNormOptions(options.out_channels()).momentum(0.003),
                                sync));
  dropout_ = register_module("dropout", torch::nn::Dropout(0.5));
  torch::NoGradGuard no_grad;
  torch::nn::init::normal_(fc_->weight, 0.0, 0.01); // upstream init_cfg: Normal(std=0.01)
  torch::nn::init::zeros_(fc_->bias);
  torch::nn::init::ones_(bn_->weight);
  torch::nn::init::zeros_(bn_->bias);
}

std::vector<torch::Tensor> RelativeLocNeck::forward(const std::vector<torch::Tensor>& x) {
  TORCH_CHECK(x.size() == 1, "RelativeLocNeck: expected one input tensor, got ", x.size());
  torch::Tensor h = x[0];
  if (options.with_avg_pool()) {
    TORCH_CHECK(h.dim() == 4, "RelativeLocNeck: with_avg_pool needs [N, C, H, W], got ", h.sizes());
    h = torch::adaptive_avg_pool2d(h, {1, 1});
  }
  h = h.reshape({h.size(0), -1});
  TORCH_CHECK(h.size(1) == 2 * options.in_channels(), "RelativeLocNeck: expected ",
              2 * options.in_channels(), " input features (2 x in_channels), got ", h.size(1));
  return {dropout_(torch::relu(bn_(fc_(h))))};
}

void RelativeLocNeck::pretty_print(std::ostream& stream) const {
  stream << "selfsup::plugins::pretext::RelativeLocNeck(in_channels=" << options.in_channels()
         << ", out_channels=" << options.out_channels() << ")";
}

// ---- RelativeLoc -----------------------------------------------------------------------

Schema RelativeLoc::schema() {
  return BaseModel::base_schema(
      "RelativeLoc: predicts which of the 8 neighbours of the centre patch a patch is "
      "(RandomPatchWithLabels, RelativeLocDataPreprocessor, RelativeLocNeck, ClsHead).");
}

RelativeLoc::RelativeLoc(const Config& cfg) : BaseModel(cfg) {
  if (!neck_) cfg.fail_key("neck", "RelativeLoc needs a neck (RelativeLocNeck)");
  if (!head_) cfg.fail_key("head", "RelativeLoc needs a head (ClsHead with 8 classes)");
}

std::vector<torch::Tensor> RelativeLoc::features(const std::vector<torch::Tensor>& inputs) {
  TORCH_CHECK(inputs.size() == 2,
              "RelativeLoc: expected {neighbours, centres} (see "
              "RelativeLocDataPreprocessor), got ",
              inputs.size(), " inputs");
  const torch::Tensor x1 = backbone_->forward(inputs[0])[0];
  const torch::Tensor x2 = backbone_->forward(inputs[1])[0];
  return neck_->forward({torch::cat({x1, x2}, 1)});
}

LossMap RelativeLoc::loss(const std::vector<torch::Tensor>& inputs, const DataSamples& samples) {
  const auto x = features(inputs);
  const torch::Tensor labels = flat_labels(samples, "patch_label", 8, "RelativeLoc");
  LossMap out{{"loss", head_->loss(x, labels)}};
  out["accuracy"] = accuracy(head_->predict(x)[0], labels);
  return out;
}

std::vector<torch::Tensor> RelativeLoc::predict(const std::vector<torch::Tensor>& inputs,
                                                const DataSamples&) {
  const torch::Tensor scores = head_->predict(features(inputs))[0]; // [8B, K]
  return {scores.reshape({-1, 8, scores.size(1)})};
}

void RelativeLoc::pretty_print(std::ostream& stream) const {
  stream << "selfsup::RelativeLoc";
}

// ---- RotationPred ----------------------------------------------------------------------

Schema RotationPred::schema() {
  return BaseModel::base_schema(
      "RotationPred: predicts which of 0, 90, 180, 270 degrees an image was rotated by "
      "(RotationWithLabels, RotationPredDataPreprocessor, ClsHead).");
}

RotationPred::RotationPred(const Config& cfg) : BaseModel(cfg) {
  if (!head_) cfg.fail_key("head", "RotationPred needs a head (ClsHead with 4 classes)");
}

LossMap RotationPred::loss(const std::vector<torch::Tensor>& inputs, const DataSamples& samples) {
  TORCH_CHECK(inputs.size() == 1,
              "RotationPred: expected one input [4B, C, H, W] (see "
              "RotationPredDataPreprocessor), got ",
              inputs.size());
  std::vector<torch::Tensor> x = backbone_->forward(inputs[0]);
  if (neck_) x = neck_->forward(x);
  const torch::Tensor labels = flat_labels(samples, "rot_label", 4, "RotationPred");
  LossMap out{{"loss", head_->loss(x, labels)}};
  out["accuracy"] = accuracy(head_->predict(x)[0], labels);
  return out;
}

std::vector<torch::Tensor> RotationPred::predict(const std::vector<torch::Tensor>& inputs,
                                                 const DataSamples&) {
  TORCH_CHECK(inputs.size() == 1, "RotationPred: expected one input, got ", inputs.size());
  std::vector<torch::Tensor> x = backbone_->forward(inputs[0]);
  if (neck_) x = neck_->forward(x);
  const torch::Tensor scores = head_->predict(x)[0]; // [4B, K]
  return {scores.reshape({-1, 4, scores.size(1)})};
}

void RotationPred::pretty_print(std::ostream& stream) const {
  stream << "selfsup::RotationPred";
}

// ---- factories -------------------------------------------------------------------------

std::shared_ptr<selfsup::Neck> make_relative_loc_neck(const Config& cfg) {
  return std::make_shared<RelativeLocNeck>(RelativeLocNeckOptions::table().parse(cfg));
}

std::shared_ptr<DataPreprocessor> make_relative_loc_data_preprocessor(const Config& cfg) {
  return std::make_shared<RelativeLocDataPreprocessor>(
      SelfSupDataPreprocessorOptions::table().parse(cfg));
}

std::shared_ptr<DataPreprocessor> make_rotation_pred_data_preprocessor(const Config& cfg) {
  return std::make_shared<RotationPredDataPreprocessor>(
      SelfSupDataPreprocessorOptions::table().parse(cfg));
}

} // namespace selfsup::plugins::pretext
