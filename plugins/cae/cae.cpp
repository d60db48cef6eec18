#include "cae.h"

#include <algorithm>
#include <cmath>
#include <string>

#include <torch/torch.h>

#include <selfsup/errors.h>
#include <selfsup/registry.h>

namespace selfsup::plugins::cae {

namespace bb = selfsup::plugins::backbones;

// ---- CAEViT ----------------------------------------------------------------------------

CAEViT::CAEViT(const bb::VisionTransformerOptions& options_, double init_values_)
    : VisionTransformer(options_), init_values(init_values_) {
  const Config where = options.as_config("CAEViT");
  const bb::ViTArch arch = options.resolve_arch(where);
  const auto layer_cfgs = options.resolve_layer_cfgs(where, arch.num_layers);
  cae_out_indices_ = options.resolve_out_indices(where, arch.num_layers);
  auto cae_layers = torch::nn::ModuleList();
  for (int64_t i = 0; i < arch.num_layers; ++i) {
    const bb::ViTLayerCfg& lc = layer_cfgs[i];
    TORCH_CHECK(lc.num_fcs.value_or(2) == 2, "CAEViT: layer_cfgs num_fcs must be 2");
    EncoderLayerOptions lo;
    lo.embed_dims = arch.embed_dims;
    lo.num_heads = lc.num_heads.value_or(arch.num_heads);
    lo.feedforward_channels = lc.feedforward_channels.value_or(arch.feedforward_channels);
    lo.drop_rate = lc.drop_rate.value_or(options.drop_rate());
    lo.attn_drop_rate = lc.attn_drop_rate.value_or(0.0);
    const double dpr = arch.num_layers > 1
                           ? options.drop_path_rate() * double(i) / double(arch.num_layers - 1)
                           : 0.0;
    lo.drop_path_rate = lc.drop_path_rate.value_or(dpr);
    lo.qkv_bias = lc.qkv_bias.value_or(options.qkv_bias());
    lo.init_values = init_values;
    lo.norm_cfg = lc.norm_cfg.value_or(options.norm_cfg());
    cae_layers->push_back(EncoderLayer(lo));
  }
  layers = replace_module("layers", cae_layers);

  torch::NoGradGuard no_grad;
  // Upstream's init_weights: the fixed sin-cos position embedding, cls_token
  // trunc-normal(0.02), Linears xavier-uniform with zero biases, LayerNorms 1 / 0, Conv2d
  // trunc-normal(0.02) with zero biases (layer-scale gammas and q/v biases keep their start).
  pos_embed.copy_(
      bb::build_2d_sincos_position_embedding(patch_resolution(), embed_dims(), 10000., true));
  pos_embed.set_requires_grad(false);
  bb::trunc_normal_(cls_token, 0.0, 0.02, -2.0, 2.0);
  xavier_init_linears_and_norms(*this);
  for (const auto& m : modules(/*include_self=*/false))
    if (auto* conv = m->as<torch::nn::Conv2d>()) {
      bb::trunc_normal_(conv->weight, 0.0, 0.02, -2.0, 2.0);
      if (conv->bias.defined()) conv->bias.zero_();
    }
}

torch::Tensor CAEViT::encode(torch::Tensor h) {
  h = torch::dropout(h, options.drop_rate(), is_training());
  const auto n = static_cast<int64_t>(layers->size());
  for (int64_t i = 0; i < n; ++i) {
    h = layers[i]->as<EncoderLayerImpl>()->forward(h);
    if (i == n - 1 && ln1) h = ln1(h);
  }
  return h;
}

torch::Tensor CAEViT::forward_mask(const torch::Tensor& x, const torch::Tensor& mask) {
  auto [tokens, grid] = patch_embed(x);
  const int64_t b = tokens.size(0), l = tokens.size(1), d = tokens.size(2);
  TORCH_CHECK(mask.numel() == b * l, "CAEViT: the mask ", mask.sizes(), " does not match ", b,
              " images of ", l, " patches");
  TORCH_CHECK(pos_embed.size(1) == l + 1, "CAEViT: ", l,
              " patches, but the position embedding was made for ", pos_embed.size(1) - 1);
  const auto visible = mask.reshape({b, l}).to(torch::kBool).logical_not();
  auto x_visible = tokens.index({visible}).reshape({b, -1, d});
  x_visible = torch::cat({cls_token.expand({b, -1, -1}).to(tokens.scalar_type()), x_visible}, 1);
  const auto pos = pos_embed.expand({b, -1, -1});
  const auto pos_visible = torch::cat(
      {pos.narrow(1, 0, 1), pos.narrow(1, 1, l).index({visible}).reshape({b, -1, d})}, 1);
  return encode(x_visible + pos_visible.to(x_visible.scalar_type()));
}

std::vector<torch::Tensor> CAEViT::forward(const torch::Tensor& x) {
  const int64_t b = x.size(0);
  auto [tokens, grid] = patch_embed(x);
  auto h = torch::cat({cls_token.expand({b, -1, -1}).to(tokens.scalar_type()), tokens}, 1);
  h = h + bb::resize_pos_embed(pos_embed, patch_resolution(), grid, options.interpolate_mode(),
                               kNumExtraTokens)
              .to(h.scalar_type());
  h = torch::dropout(h, options.drop_rate(), is_training());
  std::vector<torch::Tensor> outs;
  const auto n = static_cast<int64_t>(layers->size());
  for (int64_t i = 0; i < n; ++i) {
    h = layers[i]->as<EncoderLayerImpl>()->forward(h);
    if (i == n - 1 && ln1) h = ln1(h);
    if (!std::binary_search(cae_out_indices_.begin(), cae_out_indices_.end(), i)) continue;
    const int64_t c = h.size(2);
    outs.push_back(
        h.narrow(1, 1, h.size(1) - 1).reshape({b, grid[0], grid[1], c}).permute({0, 3, 1, 2}));
    if (options.output_cls_token()) outs.push_back(h.select(1, 0));
  }
  return outs;
}

void CAEViT::pretty_print(std::ostream& stream) const {
  stream << "selfsup::plugins::cae::CAEViT(embed_dims=" << embed_dims()
         << ", num_layers=" << num_layers() << ", patch_resolution=[" << patch_resolution()[0]
         << ", " << patch_resolution()[1] << "], init_values=" << init_values << ")";
}

Schema cae_vit_schema() {
  return bb::VisionTransformerOptions::table("mmcls").schema().optional(
      "init_values", ArgType::Float, Json(),
      "layer-scale start of every layer (null or 0: no layer scale)");
}

std::shared_ptr<selfsup::Backbone> make_cae_vit(const Config& cfg) {
  double init_values = 0.0;
  Json rest = cfg.json();
  if (cfg.has("init_values") && !cfg["init_values"].json().is_null()) {
    init_values = cfg.get<double>("init_values");
    if (init_values < 0) cfg.fail_key("init_values", "expected >= 0 or null");
  }
  rest.erase("init_values");
  const auto options =
      bb::VisionTransformerOptions::table("mmcls").parse(cfg.derive(rest, cfg.path()));
  if (!options.with_cls_token()) cfg.fail_key("with_cls_token", "CAEViT needs true");
  if (options.avg_token()) cfg.fail_key("avg_token", "CAEViT needs false");
  if (options.pre_norm()) cfg.fail_key("pre_norm", "CAEViT has no pre_norm (needs false)");
  if (options.frozen_stages() > 0) cfg.fail_key("frozen_stages", "CAEViT has none (needs -1)");
  return std::make_shared<CAEViT>(options, init_values);
}

// ---- CAENeck ---------------------------------------------------------------------------

OptionTable<CAENeckOptions> CAENeckOptions::table() {
  using O = CAENeckOptions;
  using namespace selfsup::check;
  return OptionTable<O>("CAE's latent regressor (cross-attention layers) and decoder "
                        "(self-attention layers) over the masked patches, then a Linear to "
                        "the DALL-E vocabulary",
                        O())
      .optional("patch_size", &O::patch_size_, "the backbone's patch size (recorded)", gt(0))
      .optional("num_classes", &O::num_classes_, "vocabulary size (logits)", gt(0))
      .optional("embed_dims", &O::embed_dims_, "token width", gt(0))
      .optional("regressor_depth", &O::regressor_depth_, "regressor layers", ge(0))
      .optional("decoder_depth", &O::decoder_depth_, "decoder layers", ge(0))
      .optional("num_heads", &O::num_heads_, "attention heads", gt(0))
      .optional("mlp_ratio", &O::mlp_ratio_, "FFN width / embed_dims", gt(0))
      .optional("qkv_bias", &O::qkv_bias_, "q/v biases of the regressor, qkv bias of the decoder")
      .optional("qk_scale", &O::qk_scale_, "attention scale of the regressor (null: d^-0.5)")
      .optional("drop_rate", &O::drop_rate_, "dropout", in(0, 1))
      .optional("attn_drop_rate", &O::attn_drop_rate_, "attention dropout", in(0, 1))
      .optional("drop_path_rate", &O::drop_path_rate_, "stochastic depth (linear per depth)",
                in(0, 1))
      .optional("norm_cfg", &O::norm_cfg_, "the LayerNorms")
      .optional("init_values", &O::init_values_, "layer-scale start (0: none)", ge(0))
      .optional("mask_tokens_num", &O::mask_tokens_num_, "masked patches per image", gt(0))
      .optional("init_cfg", &O::init_cfg_, "null (upstream's own init)")
      .rule([](const O& o, const Config& cfg) {
        if (o.embed_dims() % o.num_heads() != 0)
          cfg.fail_key("num_heads", "embed_dims " + std::to_string(o.embed_dims()) +
                                        " is not divisible by " + std::to_string(o.num_heads()));
        if (!o.init_cfg().is_null())
          cfg.fail_key("init_cfg", "expected null, got " + o.init_cfg().dump());
      });
}

namespace {
std::vector<double> linspace(double hi, int64_t n) {
  std::vector<double> v;
  for (int64_t i = 0; i < n; ++i) v.push_back(n > 1 ? hi * double(i) / double(n - 1) : 0.0);
  return v;
}
} // namespace

CAENeck::CAENeck(const CAENeckOptions& o) : options(o) {
  const int64_t d = o.embed_dims(), ff = o.mlp_ratio() * o.embed_dims();
  regressors = register_module("regressors", torch::nn::ModuleList());
  const auto reg_dpr = linspace(o.drop_path_rate(), o.regressor_depth());
  for (int64_t i = 0; i < o.regressor_depth(); ++i)
    regressors->push_back(RegressorLayer(d, o.num_heads(), ff, o.qkv_bias(), o.qk_scale(),
                                         o.drop_rate(), o.attn_drop_rate(), reg_dpr[i],
                                         o.init_values(), o.norm_cfg()));
  decoders = register_module("decoders", torch::nn::ModuleList());
  const auto dec_dpr = linspace(o.drop_path_rate(), o.decoder_depth());
  for (int64_t i = 0; i < o.decoder_depth(); ++i) {
    EncoderLayerOptions lo;
    lo.embed_dims = d;
    lo.num_heads = o.num_heads();
    lo.feedforward_channels = ff;
    lo.drop_rate = o.drop_rate();
    lo.attn_drop_rate = o.attn_drop_rate();
    lo.drop_path_rate = dec_dpr[i];
    lo.qkv_bias = o.qkv_bias();
    lo.init_values = o.init_values();
    lo.norm_cfg = o.norm_cfg();
    decoders->push_back(EncoderLayer(lo));
  }
  norm_regressor = register_module("norm_regressor", o.norm_cfg().make(d));
  norm_decoder = register_module("norm_decoder", o.norm_cfg().make(d));
  head = register_module("head", torch::nn::Linear(d, o.num_classes()));
  mask_token = register_parameter("mask_token", torch::zeros({1, 1, d}));
  // Upstream's init_weights: xavier Linears with zero biases, LayerNorms 1 / 0, then
  // mask_token and head.weight trunc-normal(0.02).
  xavier_init_linears_and_norms(*this);
  bb::trunc_normal_(mask_token, 0.0, 0.02, -2.0, 2.0);
  bb::trunc_normal_(head->weight, 0.0, 0.02, -2.0, 2.0);
}

std::vector<torch::Tensor> CAENeck::forward(const std::vector<torch::Tensor>& x) {
  TORCH_CHECK(x.size() == 3,
              "CAENeck: expected {x_unmasked, pos_embed_masked, "
              "pos_embed_unmasked}, got ",
              x.size(), " tensors");
  const auto &x_unmasked = x[0], &pos_masked = x[1], &pos_unmasked = x[2];
  TORCH_CHECK(pos_masked.size(1) == options.mask_tokens_num(), "CAENeck: ", pos_masked.size(1),
              " masked patches, but mask_tokens_num is ", options.mask_tokens_num(),
              " (the mask generator's num_masking_patches)");
  auto x_masked = mask_token.expand({x_unmasked.size(0), options.mask_tokens_num(), -1});
  const auto pos_all = torch::cat({pos_unmasked, pos_masked}, 1);
  for (const auto& layer : *regressors)
    x_masked = layer->as<RegressorLayerImpl>()->forward(
        x_masked, torch::cat({x_unmasked, x_masked}, 1), pos_masked, pos_all);
  x_masked = norm_regressor(x_masked);
  const auto latent_pred = x_masked;
  x_masked = x_masked + pos_masked;
  for (const auto& layer : *decoders) x_masked = layer->as<EncoderLayerImpl>()->forward(x_masked);
  x_masked = norm_decoder(x_masked);
  return {head(x_masked), latent_pred};
}

void CAENeck::pretty_print(std::ostream& stream) const {
  stream << "selfsup::plugins::cae::CAENeck(embed_dims=" << options.embed_dims()
         << ", regressor_depth=" << options.regressor_depth()
         << ", decoder_depth=" << options.decoder_depth()
         << ", num_classes=" << options.num_classes() << ")";
}

std::shared_ptr<selfsup::Neck> make_cae_neck(const Config& cfg) {
  return std::make_shared<CAENeck>(CAENeckOptions::table().parse(cfg));
}

// ---- CAELoss and CAEHead ---------------------------------------------------------------

OptionTable<CAELossOptions> CAELossOptions::table() {
  using O = CAELossOptions;
  return OptionTable<O>("CAE's losses: cross-entropy to the DALL-E tokens and lambd * MSE of "
                        "the latent alignment",
                        O())
      .required("lambd", &O::lambd_, "weight of the alignment loss");
}

std::pair<torch::Tensor, torch::Tensor> CAELoss::losses(const torch::Tensor& logits,
                                                        const torch::Tensor& target,
                                                        const torch::Tensor& latent_pred,
                                                        const torch::Tensor& latent_target) const {
  const auto main_loss = torch::nn::functional::cross_entropy(logits, target);
  const auto align = torch::mse_loss(latent_pred, latent_target.detach()) * options.lambd();
  return {main_loss, align};
}

torch::Tensor CAELoss::forward(const torch::Tensor&, const torch::Tensor&) {
  throw ValueError("CAELoss takes logits, target tokens, latent prediction and latent target: "
                   "use it inside CAEHead");
}

void CAELoss::pretty_print(std::ostream& stream) const {
  stream << "selfsup::plugins::cae::CAELoss(lambd=" << options.lambd() << ")";
}

std::shared_ptr<selfsup::Loss> make_cae_loss(const Config& cfg) {
  return std::make_shared<CAELoss>(CAELossOptions::table().parse(cfg));
}

OptionTable<CAEHeadOptions> CAEHeadOptions::table() {
  using O = CAEHeadOptions;
  return OptionTable<O>("CAE's head: argmax DALL-E tokens of the masked patches as targets, "
                        "then CAELoss",
                        O())
      .required("loss", &O::loss_, "{type: 'CAELoss', lambd}")
      .component("loss")
      .optional("init_cfg", &O::init_cfg_, "null (the head has no weights)")
      .rule([](const O& o, const Config& cfg) {
        if (!o.init_cfg().is_null())
          cfg.fail_key("init_cfg", "expected null, got " + o.init_cfg().dump());
      });
}

CAEHead::CAEHead(std::shared_ptr<CAELoss> loss) : loss_(register_module("loss", std::move(loss))) {}

std::pair<torch::Tensor, torch::Tensor> CAEHead::losses(const torch::Tensor& logits,
                                                        const torch::Tensor& logits_target,
                                                        const torch::Tensor& latent_pred,
                                                        const torch::Tensor& latent_target,
                                                        const torch::Tensor& mask) {
  torch::Tensor target;
  {
    torch::NoGradGuard no_grad;
    target = logits_target.argmax(1).flatten(1);
    TORCH_CHECK(target.sizes() == mask.sizes(), "CAEHead: DALL-E tokens ", target.sizes(),
                " and the mask ", mask.sizes(),
                " differ (the tokenizer's grid must be the "
                "mask's)");
    target = target.index({mask.to(torch::kBool)});
  }
  return loss_->losses(logits, target, latent_pred, latent_target);
}

torch::Tensor CAEHead::loss(const std::vector<torch::Tensor>& inputs, const torch::Tensor& target) {
  TORCH_CHECK(inputs.size() == 4,
              "CAEHead: expected {logits, latent_pred, latent_target, "
              "mask}, got ",
              inputs.size(), " tensors");
  const auto [main_loss, align_loss] = losses(inputs[0], target, inputs[1], inputs[2], inputs[3]);
  return main_loss + align_loss;
}

void CAEHead::pretty_print(std::ostream& stream) const {
  stream << "selfsup::plugins::cae::CAEHead";
}

std::shared_ptr<selfsup::Head> make_cae_head(const Config& cfg) {
  const auto options = CAEHeadOptions::table().parse(cfg);
  auto loss = std::dynamic_pointer_cast<CAELoss>(selfsup::build<selfsup::Loss>(options.loss()));
  if (!loss) cfg.fail_key("loss", "CAEHead needs a CAELoss");
  return std::make_shared<CAEHead>(std::move(loss));
}

// ---- CAE -------------------------------------------------------------------------------

Schema CAE::schema() {
  return BaseModel::base_schema(
             "CAE: a context autoencoder; the visible patches are encoded, a latent regressor "
             "predicts the masked ones (aligned with a momentum teacher's encoding of them) "
             "and a decoder predicts their DALL-E tokens")
      .required("target_generator", ArgType::Dict, "the tokenizer, {type: 'DALL-E', ...}")
      .component("target_generator", "target_generator")
      .optional("base_momentum", ArgType::Float, 0.0,
                "teacher <- teacher * m + online * (1 - m) each iteration")
      .optional("init_cfg", ArgType::Any, Json(), "null");
}

CAE::CAE(const Config& cfg) : BaseModel(cfg) {
  momentum = cfg.has("base_momentum") ? cfg.get<double>("base_momentum") : 0.0;
  if (momentum < 0 || momentum > 1)
    cfg.fail_key("base_momentum", "expected a number in [0, 1], got " + std::to_string(momentum));
  if (cfg.has("init_cfg") && !cfg["init_cfg"].json().is_null())
    cfg.fail_key("init_cfg", "expected null");
  vit_ = std::dynamic_pointer_cast<CAEViT>(backbone_);
  if (!vit_) cfg.fail_key("backbone", "CAE needs a CAEViT backbone");
  if (!neck_) cfg.fail_key("neck", "CAE needs a neck (CAENeck)");
  cae_head_ = std::dynamic_pointer_cast<CAEHead>(head_);
  if (!cae_head_) cfg.fail_key("head", "CAE needs a CAEHead");
  if (!cfg.has("target_generator"))
    cfg.fail_key("target_generator", "CAE needs a target generator (DALL-E)");
  target_generator_ = register_module(
      "target_generator", selfsup::build<selfsup::TargetGenerator>(cfg["target_generator"]));
  teacher_ = std::dynamic_pointer_cast<CAEViT>(selfsup::build<selfsup::Backbone>(cfg["backbone"]));
  register_module("teacher", teacher_);
  // The teacher starts as a copy of the backbone and is never trained.
  torch::NoGradGuard no_grad;
  const auto online = backbone_->parameters();
  auto teacher = teacher_->parameters();
  for (size_t i = 0; i < online.size(); ++i) {
    teacher[i].copy_(online[i]);
    teacher[i].set_requires_grad(false);
  }
}

void CAE::momentum_update() {
  torch::NoGradGuard no_grad;
  const auto online = backbone_->parameters();
  auto teacher = teacher_->parameters();
  for (size_t i = 0; i < online.size(); ++i)
    teacher[i].copy_(teacher[i] * momentum + online[i] * (1.0 - momentum));
}

LossMap CAE::loss(const std::vector<torch::Tensor>& inputs, const DataSamples& samples) {
  TORCH_CHECK(inputs.size() == 2, "CAE: expected 2 views (the image and the DALL-E input), got ",
              inputs.size());
  const auto& img = inputs[0];
  const int64_t b = img.size(0);
  const auto mask = samples.data_at("mask").to(img.device()).reshape({b, -1}).to(torch::kBool);
  const auto unmasked = vit_->forward_mask(img, mask);
  torch::Tensor latent_target;
  {
    torch::NoGradGuard no_grad;
    latent_target = teacher_->forward_mask(img, mask.logical_not());
    latent_target = latent_target.narrow(1, 1, latent_target.size(1) - 1);
    momentum_update();
  }
  const int64_t d = vit_->pos_embed.size(2);
  const auto pos = vit_->pos_embed.expand({b, -1, -1}).narrow(1, 1, mask.size(1));
  const auto pos_masked = pos.index({mask}).reshape({b, -1, d});
  const auto pos_unmasked = pos.index({mask.logical_not()}).reshape({b, -1, d});
  const auto out =
      neck_->forward({unmasked.narrow(1, 1, unmasked.size(1) - 1), pos_masked, pos_unmasked});
  const auto logits = out.at(0).reshape({-1, out.at(0).size(-1)});
  const auto logits_target = target_generator_->forward(inputs[1]);
  const auto [main_loss, align_loss] =
      cae_head_->losses(logits, logits_target, out.at(1), latent_target, mask);
  return {{"loss", main_loss + align_loss}, {"main", main_loss}, {"align", align_loss}};
}

void CAE::pretty_print(std::ostream& stream) const {
  stream << "selfsup::plugins::cae::CAE(base_momentum=" << momentum << ")";
}

// ---- CAEDataPreprocessor ---------------------------------------------------------------

CAEDataPreprocessor::CAEDataPreprocessor(const SelfSupDataPreprocessorOptions& o)
    : first_(o), bgr_to_rgb_(o.bgr_to_rgb || o.rgb_to_bgr),
      normalize_(o.mean.has_value() && o.std.has_value()) {}

std::vector<torch::Tensor> CAEDataPreprocessor::forward(const std::vector<torch::Tensor>& views,
                                                        DataSamples&) const {
  TORCH_CHECK(views.size() == 1 || views.size() == 2,
              "CAEDataPreprocessor: expected 2 views (or 1 for evaluation), got ", views.size());
  if (views.size() == 1) return {first_.normalize(views[0])};
  auto second = views[1];
  if (bgr_to_rgb_ && second.size(1) == 3) second = second.flip({1});
  second = second.to(torch::kFloat);
  if (normalize_) second = second / 255.0 * 0.8 + 0.1;
  return {first_.normalize(views[0]), second};
}

} // namespace selfsup::plugins::cae
