#pragma once
// MAE (He et al. 2022) as MMSelfSup 1.0 defines it: MAEViT (a ViT that keeps a random subset
// of the patch tokens per sample), MAEPretrainDecoder (the neck: mask tokens put back in
// place, a small transformer, a per-patch pixel prediction), MAEPretrainHead (patchified,
// optionally per-patch normalised target) and MAEReconstructionLoss (mean squared error of the
// masked patches only).
#include <cstdint>
#include <memory>
#include <optional>
#include <ostream>
#include <vector>

#include <torch/arg.h>
#include <torch/nn/modules/container/modulelist.h>
#include <torch/nn/modules/linear.h>
#include <torch/nn/modules/normalization.h>
#include <torch/types.h>

#include <selfsup/config.h>
#include <selfsup/interfaces/algorithm.h>
#include <selfsup/interfaces/modules.h>
#include <selfsup/json.h>
#include <selfsup/options.h>
#include <selfsup/schema.h>

#include "../backbones/transformer_layers.h"
#include "../backbones/vit.h"

namespace selfsup::plugins::mae {

// ---- MAEViT ----------------------------------------------------------------------------

/// MAEViT's keys (upstream's signature), plus `in_channels` (not upstream's: its MAEViT is
/// RGB only; 1 for Fashion-MNIST).
struct MAEViTOptions {
  static OptionTable<MAEViTOptions> table();
  TORCH_ARG(Json, arch) = "b";
  TORCH_ARG(Json, img_size) = 224;
  TORCH_ARG(Json, patch_size) = 16;
  TORCH_ARG(int64_t, in_channels) = 3;
  TORCH_ARG(Json, out_indices) = -1;
  TORCH_ARG(double, drop_rate) = 0.0;
  TORCH_ARG(double, drop_path_rate) = 0.0;
  TORCH_ARG(backbones::LayerNormCfg, norm_cfg) = backbones::LayerNormCfg{"LN", 1e-6, true};
  TORCH_ARG(bool, final_norm) = true;
  TORCH_ARG(bool, output_cls_token) = true;
  TORCH_ARG(std::string, interpolate_mode) = "bicubic";
  TORCH_ARG(backbones::PatchCfg, patch_cfg) = {};
  TORCH_ARG(Json, layer_cfgs) = Json::object();
  TORCH_ARG(double, mask_ratio) = 0.75;
  TORCH_ARG(Json, init_cfg) = Json();

public:
  /// The VisionTransformer these make.
  [[nodiscard]] backbones::VisionTransformerOptions vit() const;
};

/// The visible tokens of a masked forward and what the decoder needs to put them back.
struct MaskedTokens {
  torch::Tensor latent;      // [B, 1 + keep, D]: class token, then the kept patches
  torch::Tensor mask;        // [B, L] float, 1 = hidden
  torch::Tensor ids_restore; // [B, L] int64: the position of each patch in the shuffled order
};

/// MMSelfSup's MAEViT: patch embedding + the fixed 2-D sin-cos position embedding, then per
/// sample the `len_keep = int(L * (1 - mask_ratio))` patches of smallest noise are kept (noise
/// U[0, 1) by argsort), the class token prepended, the layers and the final norm run on them.
/// forward() is that masked forward (upstream's tuple, flattened: {latent, mask,
/// ids_restore}); forward_unmasked() is the plain ViT (for features).
class MAEViT final : public backbones::VisionTransformer {
public:
  explicit MAEViT(const MAEViTOptions& options);
  std::vector<torch::Tensor> forward(const torch::Tensor& x) override;
  /// The masked forward; `noise` [B, L] replaces the random draw when given.
  MaskedTokens forward_masked(const torch::Tensor& x, const torch::Tensor& noise = {});
  /// VisionTransformer's forward over every patch (no masking).
  std::vector<torch::Tensor> forward_unmasked(const torch::Tensor& x);
  /// Upstream's random_masking of tokens [B, L, D]: {kept tokens [B, keep, D], mask [B, L],
  /// ids_restore [B, L]}.
  static std::tuple<torch::Tensor, torch::Tensor, torch::Tensor>
  random_masking(const torch::Tensor& x, double mask_ratio, const torch::Tensor& noise = {});
  void pretty_print(std::ostream& stream) const override;

  [[nodiscard]] double mask_ratio() const { return mae_options_.mask_ratio(); }
  [[nodiscard]] int64_t patch_size() const { return patch_size_; }

private:
  MAEViTOptions mae_options_;
  int64_t patch_size_;
};

// ---- MAEPretrainDecoder ----------------------------------------------------------------

struct MAEPretrainDecoderOptions {
  static OptionTable<MAEPretrainDecoderOptions> table();
  TORCH_ARG(int64_t, num_patches) = 196;
  TORCH_ARG(int64_t, patch_size) = 16;
  TORCH_ARG(int64_t, in_chans) = 3;
  TORCH_ARG(int64_t, embed_dim) = 1024;
  TORCH_ARG(int64_t, decoder_embed_dim) = 512;
  TORCH_ARG(int64_t, decoder_depth) = 8;
  TORCH_ARG(int64_t, decoder_num_heads) = 16;
  TORCH_ARG(double, mlp_ratio) = 4.0;
  TORCH_ARG(backbones::LayerNormCfg, norm_cfg) = backbones::LayerNormCfg{"LN", 1e-6, true};
  TORCH_ARG(std::optional<int64_t>, predict_feature_dim) = std::nullopt;
  TORCH_ARG(Json, init_cfg) = Json();
};

/// MMSelfSup's MAEPretrainDecoder: decoder_embed Linear, mask tokens appended and every token
/// moved back to its place by ids_restore, + the fixed sin-cos decoder_pos_embed, the
/// decoder_blocks, the norm `ln1`, decoder_pred Linear to p*p*C per patch; the class token's
/// row is dropped. forward({latent, ids_restore}) -> {pred [B, L, p*p*C]}.
class MAEPretrainDecoder final : public selfsup::Neck {
public:
  explicit MAEPretrainDecoder(const MAEPretrainDecoderOptions& options);
  std::vector<torch::Tensor> forward(const std::vector<torch::Tensor>& x) override;
  void pretty_print(std::ostream& stream) const override;

  MAEPretrainDecoderOptions options;
  torch::nn::Linear decoder_embed{nullptr}, decoder_pred{nullptr};
  torch::Tensor mask_token, decoder_pos_embed;
  torch::nn::ModuleList decoder_blocks{nullptr};
  torch::nn::LayerNorm decoder_norm{nullptr};
};

// ---- MAEReconstructionLoss, MAEPretrainHead --------------------------------------------

/// MMSelfSup's MAEReconstructionLoss: the squared error averaged over each patch, then over
/// the masked patches: sum(mean_d((pred - target)^2) * mask) / sum(mask).
class MAEReconstructionLoss final : public selfsup::Loss {
public:
  /// Every patch counts (a mask of ones).
  torch::Tensor forward(const torch::Tensor& pred, const torch::Tensor& target) override;
  torch::Tensor forward(const torch::Tensor& pred, const torch::Tensor& target,
                        const torch::Tensor& mask);
  void pretty_print(std::ostream& stream) const override;
};

struct MAEPretrainHeadOptions {
  static OptionTable<MAEPretrainHeadOptions> table();
  TORCH_ARG(Config, loss);
  TORCH_ARG(bool, norm_pix) = false;
  TORCH_ARG(int64_t, patch_size) = 16;
};

/// MMSelfSup's MAEPretrainHead: target = patchify(images) (each patch normalised by its own
/// mean and unbiased variance with norm_pix), loss = MAEReconstructionLoss(pred, target, mask).
/// loss({pred [B, L, p*p*C], mask [B, L]}, images [B, C, H, W]).
class MAEPretrainHead final : public selfsup::Head {
public:
  MAEPretrainHead(const MAEPretrainHeadOptions& options,
                  std::shared_ptr<MAEReconstructionLoss> loss);
  torch::Tensor loss(const std::vector<torch::Tensor>& inputs,
                     const torch::Tensor& target) override;
  /// Upstream's construct_target.
  [[nodiscard]] torch::Tensor construct_target(const torch::Tensor& images) const;
  void pretty_print(std::ostream& stream) const override;

  MAEPretrainHeadOptions options;

private:
  std::shared_ptr<MAEReconstructionLoss> loss_;
};

// ---- MAE -------------------------------------------------------------------------------

/// MMSelfSup's MAE: loss = head(decoder(MAEViT masked forward), images, mask). Features for
/// evaluation (extract_feat) come from the encoder without masking (the class token last).
/// The model-level init_cfg (upstream: Xavier-uniform Linears, LayerNorms 1/0) is applied
/// after the parts are built, the parts' own initialisations (position embeddings, patch
/// projection, class and mask tokens, FFN biases) after it, as mmengine orders them.
class MAE final : public BaseModel {
public:
  explicit MAE(const Config& cfg);
  static Schema schema();

  std::vector<torch::Tensor> extract_feat(const std::vector<torch::Tensor>& inputs) override;
  LossMap loss(const std::vector<torch::Tensor>& inputs, const DataSamples& samples) override;
  /// {images, pixel mask, reconstruction}; with norm_pix the prediction is mapped back with
  /// each patch's own mean and standard deviation of the target.
  Reconstruction reconstruct(const std::vector<torch::Tensor>& inputs,
                             const DataSamples& samples) override;
  void pretty_print(std::ostream& stream) const override;

  [[nodiscard]] MAEViT& vit() const { return *vit_; }
  [[nodiscard]] MAEPretrainHead& mae_head() const { return *mae_head_; }

private:
  std::shared_ptr<MAEViT> vit_;
  std::shared_ptr<MAEPretrainHead> mae_head_;
};

std::shared_ptr<selfsup::Backbone> make_mae_vit(const Config& cfg);
std::shared_ptr<selfsup::Neck> make_mae_pretrain_decoder(const Config& cfg);
std::shared_ptr<selfsup::Head> make_mae_pretrain_head(const Config& cfg);

} // namespace selfsup::plugins::mae
