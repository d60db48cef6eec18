#pragma once
// SimMIM (Xie et al. 2022) as MMSelfSup 1.0 computes it: random 32-pixel blocks of the image
// are masked (SimMIMMaskGenerator), the masked patch embeddings of a Swin Transformer are
// replaced by a learned mask token (SimMIMSwinTransformer), a 1x1 conv + pixel shuffle
// (SimMIMNeck) maps the last stage back to pixels, and the loss is the L1 distance on the
// masked pixels only (SimMIMHead + SimMIMReconstructionLoss).
#include <cstdint>
#include <memory>
#include <ostream>
#include <vector>

#include <torch/arg.h>
#include <torch/nn/modules/container/sequential.h>
#include <torch/types.h>

#include <selfsup/config.h>
#include <selfsup/interfaces/algorithm.h>
#include <selfsup/interfaces/data.h>
#include <selfsup/interfaces/modules.h>
#include <selfsup/options.h>
#include <selfsup/schema.h>

#include "swin.h"

namespace selfsup::plugins::simmim {

// ---- SimMIMSwinTransformer -------------------------------------------------------------

/// MMSelfSup's SimMIMSwinTransformer: SwinTransformer plus `mask_token` [1, 1, C]; with a
/// mask [B, H', W'] (1 = masked, the patch grid) each masked patch embedding becomes the mask
/// token, x * (1 - m) + t * m; then stages with their downsample and norm<i> of the out
/// indices (the last stage only: upstream's norms do not fit the others). SimMIM's init: every
/// Linear trunc-normal std 0.02 with zero bias, LayerNorms 1 / 0, mask_token trunc-normal 0.02.
class SimMIMSwinTransformer final : public backbones::SwinTransformer {
public:
  explicit SimMIMSwinTransformer(const backbones::SwinTransformerOptions& options);
  /// The masked forward; an undefined mask is the plain (unmasked) forward.
  std::vector<torch::Tensor> forward_masked(const torch::Tensor& x, const torch::Tensor& mask);
  /// Features without masking (evaluation, kNN).
  std::vector<torch::Tensor> forward(const torch::Tensor& x) override;
  void pretty_print(std::ostream& stream) const override;

  torch::Tensor mask_token;
};

// ---- SimMIMNeck ------------------------------------------------------------------------

struct SimMIMNeckOptions {
  SimMIMNeckOptions(int64_t in_channels, int64_t encoder_stride)
      : in_channels_(in_channels), encoder_stride_(encoder_stride) {}
  static OptionTable<SimMIMNeckOptions> table();
  TORCH_ARG(int64_t, in_channels);
  TORCH_ARG(int64_t, encoder_stride);

private:
  SimMIMNeckOptions() = default;
};

/// `decoder` = Conv2d(in_channels, encoder_stride^2 * 3, 1) -> PixelShuffle(encoder_stride):
/// the first input map [B, C, h, w] -> an image [B, 3, h * s, w * s].
class SimMIMNeck final : public selfsup::Neck {
public:
  explicit SimMIMNeck(const SimMIMNeckOptions& options);
  std::vector<torch::Tensor> forward(const std::vector<torch::Tensor>& x) override;
  void pretty_print(std::ostream& stream) const override;

  SimMIMNeckOptions options;
  torch::nn::Sequential decoder{nullptr};
};

// ---- SimMIMReconstructionLoss ----------------------------------------------------------

struct SimMIMReconstructionLossOptions {
  explicit SimMIMReconstructionLossOptions(int64_t encoder_in_channels)
      : encoder_in_channels_(encoder_in_channels) {}
  static OptionTable<SimMIMReconstructionLossOptions> table();
  TORCH_ARG(int64_t, encoder_in_channels);

private:
  SimMIMReconstructionLossOptions() = default;
};

/// sum(|target - pred| * mask) / (sum(mask) + 1e-5) / encoder_in_channels: the L1 error of the
/// masked pixels, averaged over them and over the image channels (mask [B, 1, H, W]
/// broadcasts over the channels, target over pred's channels).
class SimMIMReconstructionLoss final : public selfsup::Loss {
public:
  explicit SimMIMReconstructionLoss(const SimMIMReconstructionLossOptions& options);
  torch::Tensor forward(const torch::Tensor& pred, const torch::Tensor& target,
                        const torch::Tensor& mask);
  /// Without a mask every pixel counts (a mask of ones [B, 1, H, W]).
  torch::Tensor forward(const torch::Tensor& pred, const torch::Tensor& target) override;
  void pretty_print(std::ostream& stream) const override;

  SimMIMReconstructionLossOptions options;
};

// ---- SimMIMHead ------------------------------------------------------------------------

struct SimMIMHeadOptions {
  SimMIMHeadOptions(int64_t patch_size, Config loss)
      : patch_size_(patch_size), loss_(std::move(loss)) {}
  static OptionTable<SimMIMHeadOptions> table();
  TORCH_ARG(int64_t, patch_size);
  /// The loss, built by type name: a SimMIMReconstructionLoss.
  TORCH_ARG(Config, loss);

private:
  SimMIMHeadOptions() = default;
};

/// The patch mask [B, h, w] repeated patch_size times along both axes -> pixel mask
/// [B, 1, h p, w p], then the loss on (reconstruction, image, pixel mask).
class SimMIMHead final : public selfsup::Head {
public:
  SimMIMHead(int64_t patch_size, std::shared_ptr<SimMIMReconstructionLoss> loss);
  /// The pixel mask of a patch mask.
  [[nodiscard]] torch::Tensor pixel_mask(const torch::Tensor& mask) const;
  torch::Tensor forward(const torch::Tensor& pred, const torch::Tensor& target,
                        const torch::Tensor& mask);
  /// inputs = {reconstruction [B, 3, H, W], patch mask [B, h, w]}; target = the image.
  torch::Tensor loss(const std::vector<torch::Tensor>& inputs,
                     const torch::Tensor& target) override;
  void pretty_print(std::ostream& stream) const override;

private:
  int64_t patch_size_;
  std::shared_ptr<SimMIMReconstructionLoss> loss_;
};

// ---- SimMIMMaskGenerator ---------------------------------------------------------------

struct SimMIMMaskGeneratorOptions {
  int64_t input_size = 192;
  int64_t mask_patch_size = 32;
  int64_t model_patch_size = 4;
  double mask_ratio = 0.6;
  static OptionTable<SimMIMMaskGeneratorOptions> table();
};

/// Writes the sample's 'mask': an int64 [input_size / model_patch_size]^2 map of whole
/// mask_patch_size blocks, exactly ceil((input_size / mask_patch_size)^2 * mask_ratio) of them
/// 1 (masked), chosen uniformly from the sample's Rng.
class SimMIMMaskGenerator final : public selfsup::Transform {
public:
  explicit SimMIMMaskGenerator(const SimMIMMaskGeneratorOptions& options);
  void apply(Sample& sample, Rng& rng) const override;
  /// The mask itself.
  [[nodiscard]] torch::Tensor generate(Rng& rng) const;
  [[nodiscard]] int64_t mask_count() const { return mask_count_; }

private:
  SimMIMMaskGeneratorOptions options_;
  int64_t rand_size_, scale_, token_count_, mask_count_;
};

// ---- SimMIM ----------------------------------------------------------------------------

/// The algorithm: loss = head(neck(backbone(img, mask)[0]), img, mask) with the batch's 'mask'
/// (PackSelfSupInputs algorithm_keys ['mask']); features for evaluation are the backbone's
/// without masking.
class SimMIM final : public BaseModel {
public:
  explicit SimMIM(const Config& cfg);
  static Schema schema();

  LossMap loss(const std::vector<torch::Tensor>& inputs, const DataSamples& samples) override;
  /// The reconstruction [B, 3, H, W] of the masked images.
  torch::Tensor reconstruct_images(const torch::Tensor& img, const torch::Tensor& mask);
  /// {inputs[0], the batch's mask as pixels [B, 1, H, W], the reconstruction} for
  /// `selfsup visualize` (MMSelfSup's SimMIM.reconstruct).
  Reconstruction reconstruct(const std::vector<torch::Tensor>& inputs,
                             const DataSamples& samples) override;
  void pretty_print(std::ostream& stream) const override;

private:
  std::shared_ptr<SimMIMSwinTransformer> swin_;
};

std::shared_ptr<selfsup::Backbone> make_simmim_swin(const Config& cfg);
std::shared_ptr<selfsup::Neck> make_simmim_neck(const Config& cfg);
std::shared_ptr<selfsup::Head> make_simmim_head(const Config& cfg);
std::shared_ptr<selfsup::Loss> make_simmim_loss(const Config& cfg);
std::shared_ptr<selfsup::Transform> make_simmim_mask_generator(const Config& cfg);

} // namespace selfsup::plugins::simmim
