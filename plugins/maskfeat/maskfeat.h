#pragma once
// MaskFeat (Wei et al. 2022) as MMSelfSup 1.0: MaskFeatViT, MaskFeatPretrainHead and the
// MaskFeat algorithm (the HOG target is hog_generator.h).
#include <memory>
#include <ostream>
#include <vector>

#include <torch/arg.h>
#include <torch/types.h>

#include <selfsup/config.h>
#include <selfsup/interfaces/algorithm.h>
#include <selfsup/interfaces/modules.h>
#include <selfsup/options.h>
#include <selfsup/schema.h>

#include "../backbones/vit.h"

namespace selfsup::plugins::maskfeat {

/// MMSelfSup's MaskFeatViT: mmcls's VisionTransformer plus a learned `mask_token` that
/// replaces the embeddings of masked patches. Init (upstream's init_weights): cls_token,
/// mask_token, pos_embed ~ trunc-normal(0.02); every Linear and Conv2d weight trunc-normal
/// (0.02), Linear biases 0; LayerNorms 1 / 0. `forward(x)` is the plain ViT (no mask), as
/// the evaluators use it; `forward_mask` is the pre-training forward.
class MaskFeatViT final : public backbones::VisionTransformer {
public:
  explicit MaskFeatViT(const backbones::VisionTransformerOptions& options);
  /// x [B, C, H, W], mask [B, h, w] (true / 1 = masked) -> all tokens [B, 1 + h * w, D]
  /// after the final norm (class token first).
  torch::Tensor forward_mask(const torch::Tensor& x, const torch::Tensor& mask);
  void pretty_print(std::ostream& stream) const override;

  torch::Tensor mask_token;
};

struct MaskFeatPretrainHeadOptions {
  static OptionTable<MaskFeatPretrainHeadOptions> table();
  /// The loss, built by type name (PixelReconstructionLoss L2 upstream).
  TORCH_ARG(Config, loss);
};

/// MMSelfSup's MaskFeatPretrainHead: the loss between the predictions of the masked patches
/// (class token dropped) and their HOG targets. The loss sees the masked rows only
/// ([M, C]), which for PixelReconstructionLoss is upstream's masked mean.
class MaskFeatPretrainHead final : public selfsup::Head {
public:
  explicit MaskFeatPretrainHead(std::shared_ptr<selfsup::Loss> loss);
  /// inputs = {pred [B, 1 + L, C], mask [B, h, w] with h * w = L}; target [B, L, C].
  torch::Tensor loss(const std::vector<torch::Tensor>& inputs,
                     const torch::Tensor& target) override;
  void pretty_print(std::ostream& stream) const override;

private:
  std::shared_ptr<selfsup::Loss> loss_;
};

/// MaskFeat: masked patches of view 0 (the sample's `mask`, [h, w]) are replaced by the mask
/// token in a MaskFeatViT; a LinearNeck maps every token to the HOG dimension; the head
/// regresses the HOG features (target_generator) of the masked patches.
class MaskFeat final : public BaseModel {
public:
  explicit MaskFeat(const Config& cfg);
  static Schema schema();

  LossMap loss(const std::vector<torch::Tensor>& inputs, const DataSamples& samples) override;
  void pretty_print(std::ostream& stream) const override;
  [[nodiscard]] std::shared_ptr<selfsup::TargetGenerator> target_generator() const {
    return target_generator_;
  }

private:
  std::shared_ptr<MaskFeatViT> vit_;
  std::shared_ptr<selfsup::TargetGenerator> target_generator_;
};

std::shared_ptr<selfsup::Backbone> make_maskfeat_vit(const Config& cfg);
std::shared_ptr<selfsup::Head> make_maskfeat_pretrain_head(const Config& cfg);

} // namespace selfsup::plugins::maskfeat
