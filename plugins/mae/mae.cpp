#include "mae.h"

#include <cmath>
#include <string>

#include <torch/torch.h>

#include <selfsup/errors.h>
#include <selfsup/registry.h>

#include "../common/mim.h"

namespace selfsup::plugins::mae {

using backbones::LayerNormCfg;
using backbones::PatchCfg;
using backbones::TransformerEncoderLayer;
using backbones::TransformerEncoderLayerImpl;
using backbones::TransformerEncoderLayerOptions;
using backbones::VisionTransformerOptions;

namespace {

void fail_unless_null_init_cfg(const Json& init_cfg, const Config& cfg) {
  if (!init_cfg.is_null())
    cfg.fail_key("init_cfg", "expected null: load pretrained weights with load_from (got " +
                                 init_cfg.dump() + ")");
}

} // namespace

// ---- MAEViT ----------------------------------------------------------------------------

OptionTable<MAEViTOptions> MAEViTOptions::table() {
  using O = MAEViTOptions;
  using namespace selfsup::check;
  return OptionTable<O>("MMSelfSup's MAEViT: a ViT with the fixed 2-D sin-cos position "
                        "embedding whose forward keeps a random (1 - mask_ratio) of the patches "
                        "per sample and returns {latent, mask, ids_restore}",
                        O())
      .optional("arch", &O::arch_,
                "arch name (small, base, large, huge, deit-tiny, ... as VisionTransformer) or "
                "{embed_dims, num_layers, num_heads, feedforward_channels}")
      .optional("img_size", &O::img_size_, "input size: int or [h, w]")
      .optional("patch_size", &O::patch_size_, "patch size: int or [h, w]")
      .optional("in_channels", &O::in_channels_,
                "channels of the input image (not upstream's key: its MAEViT is RGB)", gt(0))
      .optional("out_indices", &O::out_indices_,
                "layers returned by the unmasked forward (features): int or list")
      .optional("drop_rate", &O::drop_rate_, "dropout in the blocks", in(0, 1))
      .optional("drop_path_rate", &O::drop_path_rate_, "stochastic depth", in(0, 1))
      .optional("norm_cfg", &O::norm_cfg_, "the LayerNorms (type 'LN')")
      .optional("final_norm", &O::final_norm_, "LayerNorm 'ln1' after the last layer")
      .optional("output_cls_token", &O::output_cls_token_,
                "the unmasked forward also returns the class token")
      .optional("interpolate_mode", &O::interpolate_mode_,
                "how pos_embed is resized for another input size (unmasked forward)",
                one_of({"bicubic", "bilinear", "nearest"}))
      .optional("patch_cfg", &O::patch_cfg_, "PatchEmbed keys over the defaults")
      .optional("layer_cfgs", &O::layer_cfgs_,
                "TransformerEncoderLayer keys: one dict for all layers or a list per layer")
      .optional("mask_ratio", &O::mask_ratio_, "the share of patches hidden per sample", in(0, 1))
      .optional("init_cfg", &O::init_cfg_, "null (load pretrained weights with load_from)")
      .rule([](const O& o, const Config& cfg) {
        fail_unless_null_init_cfg(o.init_cfg(), cfg);
        if (o.mask_ratio() >= 1.0) cfg.fail_key("mask_ratio", "expected < 1 (some patch kept)");
        // The ViT's own checks (arch, sizes, out_indices, layer_cfgs), naming this config.
        const VisionTransformerOptions v = o.vit();
        const auto arch = v.resolve_arch(cfg);
        (void)VisionTransformerOptions::resolve_pair(v.as_config(cfg.where())["img_size"]);
        (void)VisionTransformerOptions::resolve_pair(v.as_config(cfg.where())["patch_size"]);
        (void)v.resolve_out_indices(v.as_config(cfg.where()), arch.num_layers);
        (void)v.resolve_layer_cfgs(v.as_config(cfg.where()), arch.num_layers);
      });
}

VisionTransformerOptions MAEViTOptions::vit() const {
  VisionTransformerOptions v;
  v.arch(arch_)
      .img_size(img_size_)
      .patch_size(patch_size_)
      .in_channels(in_channels_)
      .out_indices(out_indices_)
      .drop_rate(drop_rate_)
      .drop_path_rate(drop_path_rate_)
      .norm_cfg(norm_cfg_)
      .final_norm(final_norm_)
      .output_cls_token(output_cls_token_)
      .interpolate_mode(interpolate_mode_)
      .patch_cfg(patch_cfg_)
      .layer_cfgs(layer_cfgs_);
  return v;
}

MAEViT::MAEViT(const MAEViTOptions& options_)
    : VisionTransformer(options_.vit()), mae_options_(options_) {
  const auto patch =
      VisionTransformerOptions::resolve_pair(options.as_config("MAEViT")["patch_size"]);
  TORCH_CHECK(patch[0] == patch[1], "MAEViT: square patches only, got ", patch[0], "x", patch[1]);
  patch_size_ = patch[0];
  torch::NoGradGuard no_grad;
  // MAEViT.init_weights (after mmcls's): the fixed sin-cos embedding with a zero class row,
  // the patch projection xavier-uniform as a [D, C*p*p] matrix, the class token N(0, 0.02).
  pos_embed.copy_(backbones::build_2d_sincos_position_embedding(patch_resolution(), embed_dims(),
                                                                10000., true));
  pos_embed.set_requires_grad(false);
  auto w = patch_embed->projection->weight.view({patch_embed->projection->weight.size(0), -1});
  torch::nn::init::xavier_uniform_(w);
  torch::nn::init::normal_(cls_token, 0.0, 0.02);
}

std::tuple<torch::Tensor, torch::Tensor, torch::Tensor>
MAEViT::random_masking(const torch::Tensor& x, double mask_ratio, const torch::Tensor& noise_in) {
  TORCH_CHECK(x.dim() == 3, "MAEViT.random_masking: expected tokens [B, L, D], got ", x.sizes());
  const int64_t n = x.size(0), l = x.size(1), d = x.size(2);
  const auto len_keep = static_cast<int64_t>(double(l) * (1.0 - mask_ratio));
  torch::Tensor noise = noise_in;
  if (noise.defined()) {
    TORCH_CHECK(noise.sizes() == torch::IntArrayRef({n, l}), "MAEViT.random_masking: noise ",
                noise.sizes(), " is not [B, L] = [", n, ", ", l, "]");
  } else {
    noise = torch::rand({n, l}, x.options().dtype(torch::kFloat));
  }
  // Ascending noise: the first len_keep are kept, the rest hidden.
  const auto ids_shuffle = torch::argsort(noise.to(x.device()), /*dim=*/1, /*descending=*/false);
  const auto ids_restore = torch::argsort(ids_shuffle, /*dim=*/1, /*descending=*/false);
  const auto ids_keep = ids_shuffle.narrow(1, 0, len_keep);
  auto x_masked = torch::gather(x, 1, ids_keep.unsqueeze(-1).expand({n, len_keep, d}));
  auto mask = torch::ones({n, l}, x.options().dtype(torch::kFloat));
  mask.narrow(1, 0, len_keep).zero_();
  mask = torch::gather(mask, 1, ids_restore);
  return std::make_tuple(x_masked, mask, ids_restore);
}

MaskedTokens MAEViT::forward_masked(const torch::Tensor& x, const torch::Tensor& noise) {
  const int64_t b = x.size(0);
  auto [tokens, grid] = patch_embed(x);
  TORCH_CHECK(grid == patch_resolution(), "MAEViT: the input makes a ", grid[0], "x", grid[1],
              " patch grid, the position embedding is for ", patch_resolution()[0], "x",
              patch_resolution()[1], " (img_size)");
  tokens = tokens + pos_embed.narrow(1, 1, pos_embed.size(1) - 1).to(tokens.scalar_type());
  auto [kept, mask, ids_restore] = random_masking(tokens, mask_ratio(), noise);
  auto cls = (cls_token + pos_embed.narrow(1, 0, 1)).to(kept.scalar_type()).expand({b, -1, -1});
  auto h = torch::cat({cls, kept}, 1);
  for (const auto& layer : *layers) h = layer->as<TransformerEncoderLayerImpl>()->forward(h);
  if (ln1) h = ln1(h);
  return {h, mask, ids_restore};
}

std::vector<torch::Tensor> MAEViT::forward(const torch::Tensor& x) {
  auto out = forward_masked(x);
  return {out.latent, out.mask, out.ids_restore};
}

std::vector<torch::Tensor> MAEViT::forward_unmasked(const torch::Tensor& x) {
  return VisionTransformer::forward(x);
}

void MAEViT::pretty_print(std::ostream& stream) const {
  stream << "selfsup::plugins::mae::MAEViT(embed_dims=" << embed_dims()
         << ", num_layers=" << num_layers() << ", patch_size=" << patch_size_
         << ", patch_resolution=[" << patch_resolution()[0] << ", " << patch_resolution()[1]
         << "], mask_ratio=" << mask_ratio() << ")";
}

std::shared_ptr<selfsup::Backbone> make_mae_vit(const Config& cfg) {
  return std::make_shared<MAEViT>(MAEViTOptions::table().parse(cfg));
}

// ---- MAEPretrainDecoder ----------------------------------------------------------------

OptionTable<MAEPretrainDecoderOptions> MAEPretrainDecoderOptions::table() {
  using O = MAEPretrainDecoderOptions;
  using namespace selfsup::check;
  return OptionTable<O>("MMSelfSup's MAEPretrainDecoder: puts mask tokens in the hidden places, "
                        "adds the sin-cos position embedding, runs decoder_depth transformer "
                        "layers and predicts each patch's p*p*C pixels",
                        O())
      .optional("num_patches", &O::num_patches_, "patches per image (a square number)", gt(0))
      .optional("patch_size", &O::patch_size_, "patch size", gt(0))
      .optional("in_chans", &O::in_chans_, "image channels", gt(0))
      .optional("embed_dim", &O::embed_dim_, "the encoder's width", gt(0))
      .optional("decoder_embed_dim", &O::decoder_embed_dim_, "the decoder's width", gt(0))
      .optional("decoder_depth", &O::decoder_depth_, "decoder layers", gt(0))
      .optional("decoder_num_heads", &O::decoder_num_heads_, "decoder attention heads", gt(0))
      .optional("mlp_ratio", &O::mlp_ratio_, "FFN width / decoder_embed_dim", gt(0))
      .optional("norm_cfg", &O::norm_cfg_, "the LayerNorms (type 'LN')")
      .optional("predict_feature_dim", &O::predict_feature_dim_,
                "output per patch (default patch_size^2 * in_chans)", gt(0))
      .optional("init_cfg", &O::init_cfg_, "null")
      .rule([](const O& o, const Config& cfg) {
        fail_unless_null_init_cfg(o.init_cfg(), cfg);
        const auto side = static_cast<int64_t>(std::llround(std::sqrt(double(o.num_patches()))));
        if (side * side != o.num_patches())
          cfg.fail_key("num_patches", "expected a square number (the grid is square), got " +
                                          std::to_string(o.num_patches()));
        if (o.decoder_embed_dim() % 4 != 0)
          cfg.fail_key("decoder_embed_dim", "expected a multiple of 4 (sin-cos embedding), got " +
                                                std::to_string(o.decoder_embed_dim()));
        if (o.decoder_embed_dim() % o.decoder_num_heads() != 0)
          cfg.fail_key("decoder_num_heads", "decoder_embed_dim " +
                                                std::to_string(o.decoder_embed_dim()) +
                                                " is not divisible by it");
      });
}

MAEPretrainDecoder::MAEPretrainDecoder(const MAEPretrainDecoderOptions& options_)
    : options(options_) {
  const int64_t dd = options.decoder_embed_dim();
  const auto side = static_cast<int64_t>(std::llround(std::sqrt(double(options.num_patches()))));
  decoder_embed = register_module("decoder_embed", torch::nn::Linear(options.embed_dim(), dd));
  mask_token = register_parameter("mask_token", torch::zeros({1, 1, dd}));
  decoder_pos_embed = register_parameter("decoder_pos_embed",
                                         torch::zeros({1, options.num_patches() + 1, dd}), false);
  decoder_blocks = register_module("decoder_blocks", torch::nn::ModuleList());
  for (int64_t i = 0; i < options.decoder_depth(); ++i) {
    TransformerEncoderLayerOptions lo(dd, options.decoder_num_heads(),
                                      static_cast<int64_t>(options.mlp_ratio() * double(dd)));
    lo.qkv_bias(true).norm_cfg(options.norm_cfg());
    decoder_blocks->push_back(TransformerEncoderLayer(lo));
  }
  // build_norm_layer(norm_cfg, dims, postfix=1): the LayerNorm is named 'ln1'.
  decoder_norm = register_module("ln1", options.norm_cfg().make(dd));
  const int64_t out = options.predict_feature_dim().value_or(
      options.patch_size() * options.patch_size() * options.in_chans());
  decoder_pred = register_module("decoder_pred", torch::nn::Linear(dd, out));

  torch::NoGradGuard no_grad;
  decoder_pos_embed.copy_(
      backbones::build_2d_sincos_position_embedding({side, side}, dd, 10000., true));
  torch::nn::init::normal_(mask_token, 0.0, 0.02);
}

std::vector<torch::Tensor> MAEPretrainDecoder::forward(const std::vector<torch::Tensor>& in) {
  TORCH_CHECK(in.size() >= 2,
              "MAEPretrainDecoder: expected {latent, ids_restore} (MAEViT's outputs), got ",
              in.size(), " tensors");
  const auto& latent = in[0];
  const auto& ids_restore = in[1];
  TORCH_CHECK(ids_restore.dim() == 2 && ids_restore.size(1) == options.num_patches(),
              "MAEPretrainDecoder: ids_restore has ", ids_restore.sizes(), ", expected [B, ",
              options.num_patches(), "] (num_patches)");
  auto x = decoder_embed(latent);
  const int64_t b = x.size(0), d = x.size(2), l = ids_restore.size(1);
  auto mask_tokens = mask_token.to(x.scalar_type()).expand({b, l + 1 - x.size(1), d});
  auto rest = torch::cat({x.narrow(1, 1, x.size(1) - 1), mask_tokens}, 1);
  rest = torch::gather(rest, 1, ids_restore.unsqueeze(-1).expand({b, l, d}));
  x = torch::cat({x.narrow(1, 0, 1), rest}, 1);
  x = x + decoder_pos_embed.to(x.scalar_type());
  for (const auto& blk : *decoder_blocks) x = blk->as<TransformerEncoderLayerImpl>()->forward(x);
  x = decoder_pred(decoder_norm(x));
  return {x.narrow(1, 1, x.size(1) - 1)};
}

void MAEPretrainDecoder::pretty_print(std::ostream& stream) const {
  stream << "selfsup::plugins::mae::MAEPretrainDecoder(num_patches=" << options.num_patches()
         << ", decoder_embed_dim=" << options.decoder_embed_dim()
         << ", decoder_depth=" << options.decoder_depth() << ")";
}

std::shared_ptr<selfsup::Neck> make_mae_pretrain_decoder(const Config& cfg) {
  return std::make_shared<MAEPretrainDecoder>(MAEPretrainDecoderOptions::table().parse(cfg));
}

// ---- MAEReconstructionLoss, MAEPretrainHead --------------------------------------------

torch::Tensor MAEReconstructionLoss::forward(const torch::Tensor& pred, const torch::Tensor& target,
                                             const torch::Tensor& mask) {
  TORCH_CHECK(pred.sizes() == target.sizes(), "MAEReconstructionLoss: pred ", pred.sizes(),
              " and target ", target.sizes(), " differ");
  TORCH_CHECK(mask.dim() == 2 && mask.size(0) == pred.size(0) && mask.size(1) == pred.size(1),
              "MAEReconstructionLoss: mask ", mask.sizes(), " is not [B, L] of pred ",
              pred.sizes());
  const auto per_patch = (pred - target).pow(2).mean(-1);
  const auto m = mask.to(per_patch.scalar_type());
  return (per_patch * m).sum() / m.sum();
}

torch::Tensor MAEReconstructionLoss::forward(const torch::Tensor& pred,
                                             const torch::Tensor& target) {
  return forward(pred, target, torch::ones({pred.size(0), pred.size(1)}, pred.options()));
}

void MAEReconstructionLoss::pretty_print(std::ostream& stream) const {
  stream << "selfsup::plugins::mae::MAEReconstructionLoss";
}

OptionTable<MAEPretrainHeadOptions> MAEPretrainHeadOptions::table() {
  using O = MAEPretrainHeadOptions;
  using namespace selfsup::check;
  return OptionTable<O>("MMSelfSup's MAEPretrainHead: the patchified images (normalised per "
                        "patch with norm_pix) as target of the loss on the masked patches",
                        O())
      .required("loss", &O::loss_, "the loss, {type: 'MAEReconstructionLoss'}")
      .component("loss")
      .optional("norm_pix", &O::norm_pix_,
                "normalise each target patch by its mean and unbiased variance (+1e-6)")
      .optional("patch_size", &O::patch_size_, "patch size", gt(0));
}

MAEPretrainHead::MAEPretrainHead(const MAEPretrainHeadOptions& options_,
                                 std::shared_ptr<MAEReconstructionLoss> loss)
    : options(options_), loss_(register_module("loss", std::move(loss))) {}

torch::Tensor MAEPretrainHead::construct_target(const torch::Tensor& images) const {
  auto target = common::patchify(images, options.patch_size());
  return options.norm_pix() ? common::norm_pix_target(target) : target;
}

torch::Tensor MAEPretrainHead::loss(const std::vector<torch::Tensor>& inputs,
                                    const torch::Tensor& target) {
  TORCH_CHECK(inputs.size() == 2, "MAEPretrainHead: expected inputs {pred, mask}, got ",
              inputs.size(), " tensors");
  return loss_->forward(inputs[0], construct_target(target), inputs[1]);
}

void MAEPretrainHead::pretty_print(std::ostream& stream) const {
  stream << "selfsup::plugins::mae::MAEPretrainHead(norm_pix=" << options.norm_pix()
         << ", patch_size=" << options.patch_size() << ")";
}

std::shared_ptr<selfsup::Head> make_mae_pretrain_head(const Config& cfg) {
  const auto options = MAEPretrainHeadOptions::table().parse(cfg);
  auto loss =
      std::dynamic_pointer_cast<MAEReconstructionLoss>(build<selfsup::Loss>(options.loss()));
  if (!loss)
    cfg.fail_key("loss", "MAEPretrainHead needs a loss of the masked patches "
                         "({type: 'MAEReconstructionLoss'})");
  return std::make_shared<MAEPretrainHead>(options, std::move(loss));
}

// ---- MAE -------------------------------------------------------------------------------

namespace {

// mmengine's XavierInit (uniform, gain 1, bias 0) on every Linear and ConstantInit (1, bias
// 0) on every LayerNorm: the two initialisers upstream's MAE config names.
void apply_init_cfg(torch::nn::Module& model, const Config& init_cfg) {
  std::vector<Config> items;
  if (init_cfg.is_array())
    for (size_t i = 0; i < init_cfg.size(); ++i) items.push_back(init_cfg.at(i));
  else
    items.push_back(init_cfg);
  torch::NoGradGuard no_grad;
  for (const Config& item : items) {
    if (!item.is_object()) item.fail("expected an initialiser dict {type, layer, ...}");
    const auto type = item.get<std::string>("type");
    const auto layer = item.get<std::string>("layer");
    if (type == "Xavier" && layer == "Linear") {
      for (const auto& k : item.keys())
        if (k != "type" && k != "layer" &&
            !(k == "distribution" && item.get<std::string>(k) == "uniform"))
          item.fail_key(k, "only {type: 'Xavier', distribution: 'uniform', layer: 'Linear'} "
                           "is supported");
      for (auto& m : model.modules(false))
        if (auto* lin = m->as<torch::nn::Linear>()) {
          torch::nn::init::xavier_uniform_(lin->weight);
          if (lin->bias.defined()) lin->bias.zero_();
        }
    } else if (type == "Constant" && layer == "LayerNorm") {
      const double val = item.has("val") ? item.get<double>("val") : 0.0;
      const double bias = item.has("bias") ? item.get<double>("bias") : 0.0;
      for (const auto& k : item.keys())
        if (k != "type" && k != "layer" && k != "val" && k != "bias")
          item.fail_key(k, "unknown key of a Constant initialiser (val, bias)");
      for (auto& m : model.modules(false))
        if (auto* ln = m->as<torch::nn::LayerNorm>()) {
          if (ln->weight.defined()) ln->weight.fill_(val);
          if (ln->bias.defined()) ln->bias.fill_(bias);
        }
    } else {
      item.fail("unsupported initialiser; MAE accepts {type: 'Xavier', distribution: "
                "'uniform', layer: 'Linear'} and {type: 'Constant', layer: 'LayerNorm', val, "
                "bias}");
    }
  }
}

// What mmengine runs after the model-level init_cfg: the children's own init_weights (the
// FFN Linears' N(0, 1e-6) biases of mmcls's TransformerEncoderLayer, MAEViT's patch
// projection and class token, the decoder's mask token; the position embeddings are fixed).
void children_init_weights(MAEViT& vit, MAEPretrainDecoder* decoder) {
  torch::NoGradGuard no_grad;
  auto ffn_biases = [](torch::nn::Module& m) {
    for (const auto& item : m.named_modules("", false))
      if (item.key().find("ffn.layers") != std::string::npos)
        if (auto* lin = item.value()->as<torch::nn::Linear>())
          if (lin->bias.defined()) torch::nn::init::normal_(lin->bias, 0.0, 1e-6);
  };
  ffn_biases(vit);
  auto w =
      vit.patch_embed->projection->weight.view({vit.patch_embed->projection->weight.size(0), -1});
  torch::nn::init::xavier_uniform_(w);
  torch::nn::init::normal_(vit.cls_token, 0.0, 0.02);
  if (decoder) {
    ffn_biases(*decoder);
    torch::nn::init::normal_(decoder->mask_token, 0.0, 0.02);
  }
}

} // namespace

Schema MAE::schema() {
  return BaseModel::base_schema(
             "MAE: an MAEViT encodes a random quarter (1 - mask_ratio) of the patches, "
             "MAEPretrainDecoder predicts the pixels of all of them, MAEPretrainHead scores "
             "the hidden ones (mean squared error)")
      .optional("init_cfg", ArgType::Any, Json(),
                "model-level initialisers: [{type: 'Xavier', distribution: 'uniform', layer: "
                "'Linear'}, {type: 'Constant', layer: 'LayerNorm', val: 1.0, bias: 0.0}]");
}

MAE::MAE(const Config& cfg) : BaseModel(cfg) {
  vit_ = std::dynamic_pointer_cast<MAEViT>(backbone_);
  if (!vit_) cfg.fail_key("backbone", "MAE needs an MAEViT backbone");
  if (!neck_) cfg.fail_key("neck", "MAE needs a neck (MAEPretrainDecoder)");
  mae_head_ = std::dynamic_pointer_cast<MAEPretrainHead>(head_);
  if (!mae_head_) cfg.fail_key("head", "MAE needs an MAEPretrainHead");
  if (cfg.has("init_cfg") && !cfg["init_cfg"].is_null()) {
    apply_init_cfg(*this, cfg["init_cfg"]);
    children_init_weights(*vit_, dynamic_cast<MAEPretrainDecoder*>(neck_.get()));
  }
}

std::vector<torch::Tensor> MAE::extract_feat(const std::vector<torch::Tensor>& inputs) {
  TORCH_CHECK(!inputs.empty(), "MAE.extract_feat: no input views");
  return vit_->forward_unmasked(inputs[0]);
}

LossMap MAE::loss(const std::vector<torch::Tensor>& inputs, const DataSamples&) {
  TORCH_CHECK(!inputs.empty(), "MAE: no input views");
  const auto out = vit_->forward_masked(inputs[0]);
  const auto pred = neck_->forward({out.latent, out.ids_restore})[0];
  return {{"loss", mae_head_->loss({pred, out.mask}, inputs[0])}};
}

Reconstruction MAE::reconstruct(const std::vector<torch::Tensor>& inputs, const DataSamples&) {
  TORCH_CHECK(!inputs.empty(), "MAE.reconstruct: no input views");
  torch::NoGradGuard no_grad;
  const auto& images = inputs[0];
  const auto out = vit_->forward_masked(images);
  auto pred = neck_->forward({out.latent, out.ids_restore})[0];
  const int64_t p = mae_head_->options.patch_size(), c = images.size(1);
  const int64_t grid_h = images.size(2) / p;
  if (mae_head_->options.norm_pix()) {
    // Upstream's visualisation: pred * std + mean of each target patch.
    const auto patches = common::patchify(images, p);
    const auto mean = patches.mean(-1, true);
    const auto sd = (patches.var(-1, true, true) + 1e-6).sqrt();
    pred = pred * sd + mean;
  }
  return {images, common::patch_mask_to_pixels(out.mask, p, grid_h),
          common::unpatchify(pred, p, c, grid_h)};
}

void MAE::pretty_print(std::ostream& stream) const {
  stream << "selfsup::MAE";
}

} // namespace selfsup::plugins::mae
