#include "simmim.h"

#include <algorithm>
#include <cmath>
#include <numeric>
#include <string>

#include <torch/torch.h>

#include <selfsup/errors.h>
#include <selfsup/registry.h>

#include "../common/mim.h"

namespace selfsup::plugins::simmim {

namespace bb = selfsup::plugins::backbones;

// ---- SimMIMSwinTransformer -------------------------------------------------------------

SimMIMSwinTransformer::SimMIMSwinTransformer(const bb::SwinTransformerOptions& options_)
    : bb::SwinTransformer(options_) {
  mask_token = register_parameter("mask_token", torch::zeros({1, 1, embed_dims()}));
  // SimMIMSwinTransformer.init_weights after mmcls's.
  torch::NoGradGuard no_grad;
  if (absolute_pos_embed.defined()) bb::trunc_normal_(absolute_pos_embed, 0.0, 0.02, -2.0, 2.0);
  bb::trunc_normal_(mask_token, 0.0, 0.02, -2.0, 2.0);
  for (const auto& m : modules(/*include_self=*/false)) {
    if (auto* linear = m->as<torch::nn::Linear>()) {
      bb::trunc_normal_(linear->weight, 0.0, 0.02, -2.0, 2.0);
      if (linear->bias.defined()) linear->bias.zero_();
    } else if (auto* ln = m->as<torch::nn::LayerNorm>()) {
      ln->weight.fill_(1.0);
      ln->bias.zero_();
    }
  }
}

std::vector<torch::Tensor> SimMIMSwinTransformer::forward_masked(const torch::Tensor& x,
                                                                 const torch::Tensor& mask) {
  auto [h, hw] = patch_embed(x);
  const int64_t b = h.size(0), l = h.size(1);
  if (mask.defined()) {
    TORCH_CHECK(mask.dim() == 3 && mask.size(0) == b && mask.size(1) * mask.size(2) == l,
                "SimMIMSwinTransformer: expected a mask [", b, ", ", hw[0], ", ", hw[1],
                "] (the patch grid), got ", mask.sizes());
    auto w = mask.flatten(1).unsqueeze(-1).to(h.scalar_type());
    h = h * (1.0 - w) + mask_token.expand({b, l, -1}).to(h.scalar_type()) * w;
  }
  if (absolute_pos_embed.defined()) h = h + absolute_pos_embed.to(h.scalar_type());
  h = torch::dropout(h, options.drop_rate(), is_training());
  std::vector<torch::Tensor> outs;
  for (int64_t i = 0; i < int64_t(stages->size()); ++i) {
    std::tie(h, hw) = stages[i]->as<bb::SwinBlockSequenceImpl>()->forward(h, hw, true);
    if (std::binary_search(out_indices().begin(), out_indices().end(), i))
      outs.push_back(to_map(norm_of(i)(h), hw));
  }
  return outs;
}

std::vector<torch::Tensor> SimMIMSwinTransformer::forward(const torch::Tensor& x) {
  return forward_masked(x, torch::Tensor());
}

void SimMIMSwinTransformer::pretty_print(std::ostream& stream) const {
  stream << "selfsup::plugins::simmim::SimMIMSwinTransformer(embed_dims=" << embed_dims()
         << ", patch_resolution=[" << patch_resolution()[0] << ", " << patch_resolution()[1]
         << "])";
}

std::shared_ptr<selfsup::Backbone> make_simmim_swin(const Config& cfg) {
  return std::make_shared<SimMIMSwinTransformer>(
      bb::SwinTransformerOptions::table("simmim").parse(cfg));
}

// ---- SimMIMNeck ------------------------------------------------------------------------

OptionTable<SimMIMNeckOptions> SimMIMNeckOptions::table() {
  using O = SimMIMNeckOptions;
  using namespace selfsup::check;
  return OptionTable<O>("SimMIM's decoder: 1x1 conv to encoder_stride^2 * 3 channels, then "
                        "PixelShuffle(encoder_stride): the last map back to an RGB image",
                        O())
      .required("in_channels", &O::in_channels_, "channels of the backbone's map", gt(0))
      .required("encoder_stride", &O::encoder_stride_,
                "total stride of the backbone (image size / map size)", gt(0));
}

SimMIMNeck::SimMIMNeck(const SimMIMNeckOptions& options_) : options(options_) {
  const int64_t s = options.encoder_stride();
  decoder =
      register_module("decoder", torch::nn::Sequential(torch::nn::Conv2d(torch::nn::Conv2dOptions(
                                                           options.in_channels(), s * s * 3, 1)),
                                                       torch::nn::PixelShuffle(s)));
}

std::vector<torch::Tensor> SimMIMNeck::forward(const std::vector<torch::Tensor>& x) {
  TORCH_CHECK(!x.empty() && x[0].dim() == 4 && x[0].size(1) == options.in_channels(),
              "SimMIMNeck: expected a map [B, ", options.in_channels(), ", h, w] first, got ",
              x.empty() ? std::string("nothing") : c10::str(x[0].sizes()));
  return {decoder->forward(x[0])};
}

void SimMIMNeck::pretty_print(std::ostream& stream) const {
  stream << "selfsup::plugins::simmim::SimMIMNeck(in_channels=" << options.in_channels()
         << ", encoder_stride=" << options.encoder_stride() << ")";
}

std::shared_ptr<selfsup::Neck> make_simmim_neck(const Config& cfg) {
  return std::make_shared<SimMIMNeck>(SimMIMNeckOptions::table().parse(cfg));
}

// ---- SimMIMReconstructionLoss ----------------------------------------------------------

OptionTable<SimMIMReconstructionLossOptions> SimMIMReconstructionLossOptions::table() {
  using O = SimMIMReconstructionLossOptions;
  using namespace selfsup::check;
  return OptionTable<O>("SimMIM's L1 loss on the masked pixels: sum(|x - x'| * m) / (sum(m) + "
                        "1e-5) / encoder_in_channels",
                        O())
      .required("encoder_in_channels", &O::encoder_in_channels_,
                "channels of the image (the mean over them)", gt(0));
}

SimMIMReconstructionLoss::SimMIMReconstructionLoss(const SimMIMReconstructionLossOptions& o)
    : options(o) {}

torch::Tensor SimMIMReconstructionLoss::forward(const torch::Tensor& pred,
                                                const torch::Tensor& target,
                                                const torch::Tensor& mask) {
  auto l1 = (target - pred).abs();
  return (l1 * mask).sum() / (mask.sum() + 1e-5) / double(options.encoder_in_channels());
}

torch::Tensor SimMIMReconstructionLoss::forward(const torch::Tensor& pred,
                                                const torch::Tensor& target) {
  TORCH_CHECK(pred.dim() == 4, "SimMIMReconstructionLoss: expected pred [B, C, H, W], got ",
              pred.sizes());
  return forward(pred, target,
                 torch::ones({pred.size(0), 1, pred.size(2), pred.size(3)}, pred.options()));
}

void SimMIMReconstructionLoss::pretty_print(std::ostream& stream) const {
  stream << "selfsup::plugins::simmim::SimMIMReconstructionLoss(encoder_in_channels="
         << options.encoder_in_channels() << ")";
}

std::shared_ptr<selfsup::Loss> make_simmim_loss(const Config& cfg) {
  return std::make_shared<SimMIMReconstructionLoss>(
      SimMIMReconstructionLossOptions::table().parse(cfg));
}

// ---- SimMIMHead ------------------------------------------------------------------------

OptionTable<SimMIMHeadOptions> SimMIMHeadOptions::table() {
  using O = SimMIMHeadOptions;
  using namespace selfsup::check;
  return OptionTable<O>("SimMIM's head: the patch mask repeated to pixels, then the loss on "
                        "the reconstruction, the image and that pixel mask",
                        O())
      .required("patch_size", &O::patch_size_, "pixels per mask cell (the model's patch size)",
                gt(0))
      .required("loss", &O::loss_, "the loss: {type: 'SimMIMReconstructionLoss', ...}")
      .component("loss");
}

SimMIMHead::SimMIMHead(int64_t patch_size, std::shared_ptr<SimMIMReconstructionLoss> loss)
    : patch_size_(patch_size), loss_(std::move(loss)) {
  register_module("loss", loss_);
}

torch::Tensor SimMIMHead::pixel_mask(const torch::Tensor& mask) const {
  TORCH_CHECK(mask.dim() == 3, "SimMIMHead: expected a patch mask [B, h, w], got ", mask.sizes());
  return mask.repeat_interleave(patch_size_, 1).repeat_interleave(patch_size_, 2).unsqueeze(1);
}

torch::Tensor SimMIMHead::forward(const torch::Tensor& pred, const torch::Tensor& target,
                                  const torch::Tensor& mask) {
  auto m = pixel_mask(mask).to(pred.scalar_type());
  TORCH_CHECK(m.size(2) == pred.size(2) && m.size(3) == pred.size(3), "SimMIMHead: the mask ",
              mask.sizes(), " repeated by patch_size ", patch_size_, " gives ", m.sizes(),
              ", not the reconstruction's pixels ", pred.sizes());
  return loss_->forward(pred, target, m);
}

torch::Tensor SimMIMHead::loss(const std::vector<torch::Tensor>& inputs,
                               const torch::Tensor& target) {
  TORCH_CHECK(inputs.size() == 2, "SimMIMHead: expected {reconstruction, mask}, got ",
              inputs.size(), " tensors");
  return forward(inputs[0], target, inputs[1]);
}

void SimMIMHead::pretty_print(std::ostream& stream) const {
  stream << "selfsup::plugins::simmim::SimMIMHead(patch_size=" << patch_size_ << ")";
}

std::shared_ptr<selfsup::Head> make_simmim_head(const Config& cfg) {
  const auto options = SimMIMHeadOptions::table().parse(cfg);
  auto loss =
      std::dynamic_pointer_cast<SimMIMReconstructionLoss>(build<selfsup::Loss>(options.loss()));
  if (!loss)
    cfg.fail_key("loss", "SimMIMHead needs a loss that takes the pixel mask "
                         "(SimMIMReconstructionLoss), got type " +
                             options.loss().json().find("type")->dump());
  return std::make_shared<SimMIMHead>(options.patch_size(), loss);
}

// ---- SimMIMMaskGenerator ---------------------------------------------------------------

OptionTable<SimMIMMaskGeneratorOptions> SimMIMMaskGeneratorOptions::table() {
  using O = SimMIMMaskGeneratorOptions;
  using namespace selfsup::check;
  return OptionTable<O>("SimMIM's mask: ceil(ratio * cells) random mask_patch_size blocks of an "
                        "input_size image, written as the sample's 'mask' [input_size / "
                        "model_patch_size]^2 (int64, 1 = masked)",
                        O())
      .optional("input_size", &O::input_size, "image size", gt(0))
      .optional("mask_patch_size", &O::mask_patch_size, "size of a masked block", gt(0))
      .optional("model_patch_size", &O::model_patch_size, "the model's patch size", gt(0))
      .optional("mask_ratio", &O::mask_ratio, "fraction of blocks masked", in(0, 1))
      .rule([](const O& o, const Config& cfg) {
        if (o.input_size % o.mask_patch_size != 0)
          cfg.fail_key("mask_patch_size", "must divide input_size " + std::to_string(o.input_size) +
                                              ", got " + std::to_string(o.mask_patch_size));
        if (o.mask_patch_size % o.model_patch_size != 0)
          cfg.fail_key("model_patch_size", "must divide mask_patch_size " +
                                               std::to_string(o.mask_patch_size) + ", got " +
                                               std::to_string(o.model_patch_size));
      });
}

SimMIMMaskGenerator::SimMIMMaskGenerator(const SimMIMMaskGeneratorOptions& options)
    : options_(options), rand_size_(options.input_size / options.mask_patch_size),
      scale_(options.mask_patch_size / options.model_patch_size),
      token_count_(rand_size_ * rand_size_),
      mask_count_(int64_t(std::ceil(double(token_count_) * options.mask_ratio))) {}

torch::Tensor SimMIMMaskGenerator::generate(Rng& rng) const {
  // A uniform random subset of mask_count_ cells: the first mask_count_ entries of a
  // Fisher-Yates shuffle.
  std::vector<int64_t> cells(static_cast<size_t>(token_count_));
  std::iota(cells.begin(), cells.end(), 0);
  auto grid = torch::zeros({token_count_}, torch::kLong);
  auto* g = grid.data_ptr<int64_t>();
  for (int64_t i = 0; i < mask_count_; ++i) {
    const int64_t j = rng.randint(i, token_count_ - 1);
    std::swap(cells[size_t(i)], cells[size_t(j)]);
    g[cells[size_t(i)]] = 1;
  }
  return grid.view({rand_size_, rand_size_})
      .repeat_interleave(scale_, 0)
      .repeat_interleave(scale_, 1)
      .contiguous();
}

void SimMIMMaskGenerator::apply(Sample& sample, Rng& rng) const {
  sample.tensors["mask"] = generate(rng);
}

std::shared_ptr<selfsup::Transform> make_simmim_mask_generator(const Config& cfg) {
  return std::make_shared<SimMIMMaskGenerator>(SimMIMMaskGeneratorOptions::table().parse(cfg));
}

// ---- SimMIM ----------------------------------------------------------------------------

Schema SimMIM::schema() {
  return BaseModel::base_schema(
      "SimMIM: masked image modeling with a Swin Transformer; the L1 loss of the masked pixels "
      "reconstructed by a linear decoder (needs the pipeline's SimMIMMaskGenerator 'mask' in "
      "PackSelfSupInputs algorithm_keys)");
}

SimMIM::SimMIM(const Config& cfg) : BaseModel(cfg) {
  if (!neck_) cfg.fail_key("neck", "SimMIM needs a neck (SimMIMNeck)");
  if (!head_) cfg.fail_key("head", "SimMIM needs a head (SimMIMHead)");
  swin_ = std::dynamic_pointer_cast<SimMIMSwinTransformer>(backbone_);
  if (!swin_)
    cfg.fail_key("backbone", "SimMIM needs a backbone that takes the mask "
                             "(SimMIMSwinTransformer), got type " +
                                 cfg["backbone"].json().find("type")->dump());
}

torch::Tensor SimMIM::reconstruct_images(const torch::Tensor& img, const torch::Tensor& mask) {
  return neck_->forward({swin_->forward_masked(img, mask)[0]})[0];
}

LossMap SimMIM::loss(const std::vector<torch::Tensor>& inputs, const DataSamples& samples) {
  TORCH_CHECK(!inputs.empty(), "SimMIM: expected one view, got none");
  const auto& mask = samples.data_at("mask");
  const auto& img = inputs[0];
  auto rec = reconstruct_images(img, mask);
  return {{"loss", head_->loss({rec, mask}, img)}};
}

Reconstruction SimMIM::reconstruct(const std::vector<torch::Tensor>& inputs,
                                   const DataSamples& samples) {
  TORCH_CHECK(!inputs.empty(), "SimMIM: expected one view, got none");
  const auto& mask = samples.data_at("mask");
  const auto& img = inputs[0];
  TORCH_CHECK(mask.dim() == 3 && img.size(2) % mask.size(1) == 0, "SimMIM: the mask ", mask.sizes(),
              " is no patch grid of the image ", img.sizes());
  const int64_t patch = img.size(2) / mask.size(1);
  Reconstruction out;
  out.original = img;
  out.mask = common::patch_mask_to_pixels(mask.flatten(1), patch, mask.size(1));
  out.reconstruction = reconstruct_images(img, mask);
  return out;
}

void SimMIM::pretty_print(std::ostream& stream) const {
  stream << "selfsup::plugins::simmim::SimMIM";
}

} // namespace selfsup::plugins::simmim
