#include "maskfeat.h"

#include <torch/torch.h>

#include <selfsup/errors.h>
#include <selfsup/registry.h>

#include "../backbones/transformer_layers.h"

namespace selfsup::plugins::maskfeat {

namespace bb = selfsup::plugins::backbones;

// ---- MaskFeatViT -----------------------------------------------------------------------

MaskFeatViT::MaskFeatViT(const bb::VisionTransformerOptions& options_)
    : VisionTransformer(options_) {
  mask_token = register_parameter("mask_token", torch::zeros({1, 1, embed_dims()}));
  bb::trunc_normal_(cls_token, 0.0, 0.02, -2.0, 2.0);
  bb::trunc_normal_(mask_token, 0.0, 0.02, -2.0, 2.0);
  bb::trunc_normal_(pos_embed, 0.0, 0.02, -2.0, 2.0);
  torch::NoGradGuard no_grad;
  for (const auto& item : named_modules("", /*include_self=*/false)) {
    if (auto* linear = item.value()->as<torch::nn::Linear>()) {
      bb::trunc_normal_(linear->weight, 0.0, 0.02, -2.0, 2.0);
      if (linear->bias.defined()) linear->bias.zero_();
    } else if (auto* conv = item.value()->as<torch::nn::Conv2d>()) {
      bb::trunc_normal_(conv->weight, 0.0, 0.02, -2.0, 2.0);
    } else if (auto* ln = item.value()->as<torch::nn::LayerNorm>()) {
      if (ln->weight.defined()) ln->weight.fill_(1.0);
      if (ln->bias.defined()) ln->bias.zero_();
    }
  }
  // Upstream's frozen stages apply after its init; the mmcls base froze them already.
  if (options.frozen_stages() > 0) freeze_stages();
}

torch::Tensor MaskFeatViT::forward_mask(const torch::Tensor& x, const torch::Tensor& mask) {
  auto [tokens, grid] = patch_embed(x);
  const int64_t b = tokens.size(0), l = tokens.size(1);
  TORCH_CHECK(mask.dim() >= 2 && mask.size(0) == b && mask.numel() == b * l,
              "MaskFeatViT: the mask ", mask.sizes(), " does not match ", b, " images of ", l,
              " patches (", grid[0], "x", grid[1], ")");
  const auto m = mask.reshape({b, l, 1}).to(tokens.scalar_type());
  auto h = tokens * (1 - m) + mask_token.expand({b, l, -1}).to(tokens.scalar_type()) * m;
  h = torch::cat({cls_token.expand({b, -1, -1}).to(h.scalar_type()), h}, 1);
  TORCH_CHECK(h.size(1) == pos_embed.size(1), "MaskFeatViT: ", h.size(1) - 1,
              " patches, but the position embedding was made for img_size with ",
              pos_embed.size(1) - 1, " (MaskFeatViT does not resize it)");
  h = h + pos_embed.to(h.scalar_type());
  h = torch::dropout(h, options.drop_rate(), is_training());
  if (pre_norm_ln) h = pre_norm_ln(h);
  const auto n_layers = static_cast<int64_t>(layers->size());
  for (int64_t i = 0; i < n_layers; ++i) {
    h = layers[i]->as<bb::TransformerEncoderLayerImpl>()->forward(h);
    if (i == n_layers - 1 && ln1) h = ln1(h);
  }
  return h;
}

void MaskFeatViT::pretty_print(std::ostream& stream) const {
  stream << "selfsup::plugins::maskfeat::MaskFeatViT(embed_dims=" << embed_dims()
         << ", num_layers=" << num_layers() << ", patch_resolution=[" << patch_resolution()[0]
         << ", " << patch_resolution()[1] << "])";
}

std::shared_ptr<selfsup::Backbone> make_maskfeat_vit(const Config& cfg) {
  auto options = bb::VisionTransformerOptions::table("mmcls").parse(cfg);
  if (!options.with_cls_token()) cfg.fail_key("with_cls_token", "MaskFeatViT needs true");
  if (options.avg_token()) cfg.fail_key("avg_token", "MaskFeatViT needs false");
  return std::make_shared<MaskFeatViT>(options);
}

// ---- MaskFeatPretrainHead --------------------------------------------------------------

OptionTable<MaskFeatPretrainHeadOptions> MaskFeatPretrainHeadOptions::table() {
  using O = MaskFeatPretrainHeadOptions;
  return OptionTable<O>("MaskFeat's head: the loss of the masked patches' predictions (class "
                        "token dropped) against their HOG features",
                        O())
      .required("loss", &O::loss_,
                "loss config, e.g. {type: 'PixelReconstructionLoss', "
                "criterion: 'L2'}")
      .component("loss")
      .rule([](const O& o, const Config& cfg) {
        const Config& loss = o.loss();
        if (loss.is_object() && loss.has("channel") && !loss["channel"].json().is_null())
          cfg.fail_key("loss", "the loss sees only the masked rows here, so a 'channel' divisor "
                               "of a masked loss is not supported (remove it)");
      });
}

MaskFeatPretrainHead::MaskFeatPretrainHead(std::shared_ptr<selfsup::Loss> loss)
    : loss_(register_module("loss", std::move(loss))) {}

torch::Tensor MaskFeatPretrainHead::loss(const std::vector<torch::Tensor>& inputs,
                                         const torch::Tensor& target) {
  TORCH_CHECK(inputs.size() == 2, "MaskFeatPretrainHead: expected inputs {pred, mask}, got ",
              inputs.size(), " tensors");
  const auto& pred = inputs[0];
  TORCH_CHECK(pred.dim() == 3 && target.dim() == 3 && pred.size(0) == target.size(0) &&
                  pred.size(1) == target.size(1) + 1,
              "MaskFeatPretrainHead: expected pred [B, 1 + L, C] and target [B, L, C], got ",
              pred.sizes(), " and ", target.sizes());
  const auto mask = inputs[1].reshape({pred.size(0), -1}).to(torch::kBool);
  TORCH_CHECK(mask.size(1) == target.size(1), "MaskFeatPretrainHead: the mask has ", mask.size(1),
              " patches, the target ", target.size(1));
  const auto patches = pred.narrow(1, 1, pred.size(1) - 1);
  return loss_->forward(patches.index({mask}), target.index({mask}));
}

void MaskFeatPretrainHead::pretty_print(std::ostream& stream) const {
  stream << "selfsup::plugins::maskfeat::MaskFeatPretrainHead";
}

std::shared_ptr<selfsup::Head> make_maskfeat_pretrain_head(const Config& cfg) {
  const auto options = MaskFeatPretrainHeadOptions::table().parse(cfg);
  return std::make_shared<MaskFeatPretrainHead>(selfsup::build<selfsup::Loss>(options.loss()));
}

// ---- MaskFeat --------------------------------------------------------------------------

Schema MaskFeat::schema() {
  return BaseModel::base_schema(
             "MaskFeat: predicts the HOG features of masked patches from a ViT whose masked "
             "patch embeddings are replaced by a learned mask token")
      .required("target_generator", ArgType::Dict,
                "the target generator, {type: 'HOGGenerator', ...}")
      .component("target_generator", "target_generator");
}

MaskFeat::MaskFeat(const Config& cfg) : BaseModel(cfg) {
  vit_ = std::dynamic_pointer_cast<MaskFeatViT>(backbone_);
  if (!vit_) cfg.fail_key("backbone", "MaskFeat needs a MaskFeatViT backbone");
  if (!neck_) cfg.fail_key("neck", "MaskFeat needs a neck (LinearNeck to the HOG dimension)");
  if (!head_) cfg.fail_key("head", "MaskFeat needs a head (MaskFeatPretrainHead)");
  if (!cfg.has("target_generator"))
    cfg.fail_key("target_generator", "MaskFeat needs a target generator (HOGGenerator)");
  target_generator_ = register_module(
      "target_generator", selfsup::build<selfsup::TargetGenerator>(cfg["target_generator"]));
}

LossMap MaskFeat::loss(const std::vector<torch::Tensor>& inputs, const DataSamples& samples) {
  TORCH_CHECK(!inputs.empty(), "MaskFeat: no input view");
  const auto& img = inputs[0];
  const auto mask = samples.data_at("mask").to(img.device()).to(torch::kBool);
  const auto latent = vit_->forward_mask(img, mask);
  const int64_t b = latent.size(0), l = latent.size(1), c = latent.size(2);
  auto pred = neck_->forward({latent.reshape({b * l, c})})[0];
  pred = pred.view({b, l, -1});
  torch::Tensor hog;
  {
    torch::NoGradGuard no_grad;
    hog = target_generator_->forward(img);
  }
  return {{"loss", head_->loss({pred, mask}, hog)}};
}

void MaskFeat::pretty_print(std::ostream& stream) const {
  stream << "selfsup::plugins::maskfeat::MaskFeat";
}

} // namespace selfsup::plugins::maskfeat
