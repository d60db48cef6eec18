#pragma once
// CAE (Chen et al., Context Autoencoder) as MMSelfSup 1.0: CAEViT, CAENeck (latent regressor
// and decoder), CAEHead, CAELoss, the CAE algorithm and CAEDataPreprocessor. The DALL-E
// target generator is dalle_encoder.h.
#include <cstdint>
#include <memory>
#include <optional>
#include <ostream>
#include <utility>
#include <vector>

#include <torch/arg.h>
#include <torch/nn/modules/container/modulelist.h>
#include <torch/types.h>

#include <selfsup/config.h>
#include <selfsup/interfaces/algorithm.h>
#include <selfsup/interfaces/modules.h>
#include <selfsup/options.h>
#include <selfsup/schema.h>

#include "../backbones/vit.h"
#include "cae_layers.h"

namespace selfsup::plugins::cae {

/// MMSelfSup's CAEViT: mmcls's VisionTransformer whose layers are MMSelfSup's encoder layers
/// (layer scale `init_values`, q/v biases without qkv_bias) and whose position embedding is
/// the fixed 2-D sin-cos one. `forward_mask(x, mask)` encodes the visible patches only
/// (mask true = hidden): [B, 1 + visible, D]; `forward(x)` encodes every patch and returns,
/// per out index, the patch map and the class token, as VisionTransformer.
class CAEViT final : public backbones::VisionTransformer {
public:
  CAEViT(const backbones::VisionTransformerOptions& options, double init_values);
  torch::Tensor forward_mask(const torch::Tensor& x, const torch::Tensor& mask);
  std::vector<torch::Tensor> forward(const torch::Tensor& x) override;
  void pretty_print(std::ostream& stream) const override;
  double init_values;

private:
  torch::Tensor encode(torch::Tensor tokens);
  std::vector<int64_t> cae_out_indices_;
};

struct CAENeckOptions {
  static OptionTable<CAENeckOptions> table();
  TORCH_ARG(int64_t, patch_size) = 16;
  TORCH_ARG(int64_t, num_classes) = 8192;
  TORCH_ARG(int64_t, embed_dims) = 768;
  TORCH_ARG(int64_t, regressor_depth) = 6;
  TORCH_ARG(int64_t, decoder_depth) = 8;
  TORCH_ARG(int64_t, num_heads) = 12;
  TORCH_ARG(int64_t, mlp_ratio) = 4;
  TORCH_ARG(bool, qkv_bias) = true;
  TORCH_ARG(std::optional<double>, qk_scale) = std::nullopt;
  TORCH_ARG(double, drop_rate) = 0.0;
  TORCH_ARG(double, attn_drop_rate) = 0.0;
  TORCH_ARG(double, drop_path_rate) = 0.0;
  TORCH_ARG(backbones::LayerNormCfg, norm_cfg) = backbones::LayerNormCfg{"LN", 1e-6, true};
  /// Required by upstream in practice (its layers compare it with 0).
  TORCH_ARG(double, init_values) = 0.0;
  TORCH_ARG(int64_t, mask_tokens_num) = 75;
  TORCH_ARG(Json, init_cfg) = Json();
};

/// CAENeck: regressors (cross attention of mask tokens over [visible, mask tokens], with
/// position embeddings on queries and keys) -> norm_regressor = latent prediction; + masked
/// position embeddings -> decoders -> norm_decoder -> head Linear -> logits.
/// forward({x_unmasked [B, V, D], pos_masked [B, M, D], pos_unmasked [B, V, D]}) ->
/// {logits [B, M, num_classes], latent_pred [B, M, D]}.
class CAENeck final : public selfsup::Neck {
public:
  explicit CAENeck(const CAENeckOptions& options);
  std::vector<torch::Tensor> forward(const std::vector<torch::Tensor>& x) override;
  void pretty_print(std::ostream& stream) const override;

  CAENeckOptions options;
  torch::nn::ModuleList regressors{nullptr}, decoders{nullptr};
  torch::nn::LayerNorm norm_regressor{nullptr}, norm_decoder{nullptr};
  torch::nn::Linear head{nullptr};
  torch::Tensor mask_token;
};

struct CAELossOptions {
  static OptionTable<CAELossOptions> table();
  TORCH_ARG(double, lambd) = 2.0;
};

/// CAELoss: main = cross-entropy(logits, target tokens) (mean), align = lambd * MSE(latent
/// prediction, latent target) (mean; the target is detached).
class CAELoss final : public selfsup::Loss {
public:
  explicit CAELoss(const CAELossOptions& options) : options(options) {}
  /// The main and the alignment losses.
  std::pair<torch::Tensor, torch::Tensor> losses(const torch::Tensor& logits,
                                                 const torch::Tensor& target,
                                                 const torch::Tensor& latent_pred,
                                                 const torch::Tensor& latent_target) const;
  /// Not usable alone (CAELoss takes four tensors): throws ValueError.
  torch::Tensor forward(const torch::Tensor& pred, const torch::Tensor& target) override;
  void pretty_print(std::ostream& stream) const override;
  CAELossOptions options;
};

struct CAEHeadOptions {
  static OptionTable<CAEHeadOptions> table();
  TORCH_ARG(Config, loss);
  TORCH_ARG(Json, init_cfg) = Json();
};

/// CAEHead: the target tokens are argmax over the DALL-E logits [B, V, h, w] at the masked
/// patches; then CAELoss.
class CAEHead final : public selfsup::Head {
public:
  explicit CAEHead(std::shared_ptr<CAELoss> loss);
  /// {main, align} of logits [M_total, V], DALL-E logits [B, V, h, w], latent_pred, latent
  /// target, mask [B, h * w] (bool).
  std::pair<torch::Tensor, torch::Tensor> losses(const torch::Tensor& logits,
                                                 const torch::Tensor& logits_target,
                                                 const torch::Tensor& latent_pred,
                                                 const torch::Tensor& latent_target,
                                                 const torch::Tensor& mask);
  /// inputs = {logits, latent_pred, latent_target, mask}, target = DALL-E logits: main +
  /// align.
  torch::Tensor loss(const std::vector<torch::Tensor>& inputs,
                     const torch::Tensor& target) override;
  void pretty_print(std::ostream& stream) const override;

private:
  std::shared_ptr<CAELoss> loss_;
};

/// CAE: the online CAEViT encodes the visible patches of view 0; a teacher (a copy of the
/// backbone, updated as teacher * m + online * (1 - m) after each target computation)
/// encodes the masked ones as the latent target; CAENeck regresses and decodes the masked
/// patches; the DALL-E tokens of view 1 are the targets. Losses: loss = main + align, and
/// main / align logged.
class CAE final : public BaseModel {
public:
  explicit CAE(const Config& cfg);
  static Schema schema();
  LossMap loss(const std::vector<torch::Tensor>& inputs, const DataSamples& samples) override;
  void pretty_print(std::ostream& stream) const override;
  /// teacher <- teacher * momentum + backbone * (1 - momentum), over the parameters.
  void momentum_update();

  double momentum;

private:
  std::shared_ptr<CAEViT> vit_, teacher_;
  std::shared_ptr<CAEHead> cae_head_;
  std::shared_ptr<selfsup::TargetGenerator> target_generator_;
};

/// CAEDataPreprocessor: view 0 as SelfSupDataPreprocessor; view 1 (the DALL-E input)
/// x / 255 * 0.8 + 0.1 (after the same channel swap) when mean/std are given, raw otherwise;
/// a single view (evaluation) is view 0 alone.
class CAEDataPreprocessor final : public selfsup::DataPreprocessor {
public:
  explicit CAEDataPreprocessor(const SelfSupDataPreprocessorOptions& options);
  std::vector<torch::Tensor> forward(const std::vector<torch::Tensor>& views,
                                     DataSamples& samples) const override;

private:
  SelfSupDataPreprocessor first_;
  bool bgr_to_rgb_, normalize_;
};

std::shared_ptr<selfsup::Backbone> make_cae_vit(const Config& cfg);
Schema cae_vit_schema();
std::shared_ptr<selfsup::Neck> make_cae_neck(const Config& cfg);
std::shared_ptr<selfsup::Head> make_cae_head(const Config& cfg);
std::shared_ptr<selfsup::Loss> make_cae_loss(const Config& cfg);

} // namespace selfsup::plugins::cae
