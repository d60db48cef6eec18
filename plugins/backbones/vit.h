#pragma once
// VisionTransformer as mmcls 1.0.0rc6 (`mmcls.models.backbones.VisionTransformer`) and
// MMSelfSup's MoCoV3ViT, under mmcls's parameter names: cls_token, pos_embed,
// patch_embed.projection.*, layers.<i>.{ln1, attn.qkv, attn.proj, ln2, ffn.layers.0.0,
// ffn.layers.1}.*, pre_norm.* (with pre_norm), ln1.* (final_norm), ln2.* (avg_token).
//
// rc6 has no `out_type`: its outputs are chosen by with_cls_token, output_cls_token and
// avg_token. Each entry of out_indices gives, in order, the patch tokens [B, C, H', W'] (or
// with avg_token their LayerNorm'd mean [B, C]) and, with output_cls_token, the class token
// [B, C]: upstream's tuple of [patch_token, cls_token] pairs, flattened. A neck with
// vit_backbone (NonLinearNeck) takes the last tensor, the class token, as upstream's x[0][-1].
#include <array>
#include <cstdint>
#include <memory>
#include <ostream>
#include <string>
#include <vector>

#include <torch/arg.h>
#include <torch/nn/module.h>
#include <torch/nn/modules/container/modulelist.h>
#include <torch/types.h>

#include <selfsup/config.h>
#include <selfsup/interfaces/modules.h>
#include <selfsup/json.h>
#include <selfsup/options.h>

#include "transformer_layers.h"

namespace selfsup::plugins::backbones {

/// An entry of `layer_cfgs`: TransformerEncoderLayer keys that override the backbone's.
struct ViTLayerCfg {
  std::optional<int64_t> num_heads, feedforward_channels, num_fcs;
  std::optional<double> drop_rate, attn_drop_rate, drop_path_rate;
  std::optional<bool> qkv_bias;
  std::optional<LayerNormCfg> norm_cfg;
  /// {type: 'GELU'} only (mmcls's default act_cfg).
  Json act_cfg = Json::object({{"type", "GELU"}});
  static OptionTable<ViTLayerCfg> table();
};

/// The four numbers of an arch.
struct ViTArch {
  int64_t embed_dims, num_layers, num_heads, feedforward_channels;
};

struct VisionTransformerOptions {
  /// The declaration of `VisionTransformer` (variant "mmcls") or `MoCoV3ViT` (variant
  /// "mocov3": adds the 'mocov3-small' arch, stop_grad_conv1 and norm_eval).
  static OptionTable<VisionTransformerOptions> table(const std::string& variant = "mmcls");

  /// A name of the arch zoo ('small', 'base', 'large', 'huge', 'eva-giant', 'deit-tiny',
  /// 'deit-small', 'deit-base' and their short forms; 'mocov3-small' for MoCoV3ViT) or a
  /// dict {embed_dims, num_layers, num_heads, feedforward_channels}.
  TORCH_ARG(Json, arch) = "base";
  /// int or [h, w].
  TORCH_ARG(Json, img_size) = 224;
  /// int or [h, w].
  TORCH_ARG(Json, patch_size) = 16;
  TORCH_ARG(int64_t, in_channels) = 3;
  /// int or list; negative counts from the end (-1: the last layer).
  TORCH_ARG(Json, out_indices) = -1;
  TORCH_ARG(double, drop_rate) = 0.0;
  TORCH_ARG(double, drop_path_rate) = 0.0;
  TORCH_ARG(bool, qkv_bias) = true;
  TORCH_ARG(LayerNormCfg, norm_cfg) = LayerNormCfg{"LN", 1e-6, true};
  TORCH_ARG(bool, final_norm) = true;
  TORCH_ARG(bool, with_cls_token) = true;
  TORCH_ARG(bool, avg_token) = false;
  TORCH_ARG(int64_t, frozen_stages) = -1;
  TORCH_ARG(bool, output_cls_token) = true;
  TORCH_ARG(std::string, interpolate_mode) = "bicubic";
  TORCH_ARG(PatchCfg, patch_cfg) = {};
  /// A dict for every layer or a list of one dict per layer.
  TORCH_ARG(Json, layer_cfgs) = Json::object();
  TORCH_ARG(bool, pre_norm) = false;
  /// null, or {type: 'Pretrained', ...} (the weights come from load_from / a checkpoint;
  /// here it only skips the initialisation upstream's init_weights would do).
  TORCH_ARG(Json, init_cfg) = Json();
  /// MoCoV3ViT: freeze the patch projection (stays at its random init).
  TORCH_ARG(bool, stop_grad_conv1) = false;
  /// MoCoV3ViT: keep BatchNorm layers in eval mode (a ViT has none; accepted as upstream).
  TORCH_ARG(bool, norm_eval) = false;
  /// "mmcls" or "mocov3" (not a config key: the registered name chooses it).
  TORCH_ARG(std::string, variant) = "mmcls";

public:
  /// The arch's numbers; errors name `where` (the options' config).
  [[nodiscard]] ViTArch resolve_arch(const Config& where) const;
  /// One layer config per layer (layer_cfgs spread or checked against num_layers).
  [[nodiscard]] std::vector<ViTLayerCfg> resolve_layer_cfgs(const Config& where,
                                                            int64_t num_layers) const;
  /// Sorted non-negative out indices.
  [[nodiscard]] std::vector<int64_t> resolve_out_indices(const Config& where,
                                                         int64_t num_layers) const;
  [[nodiscard]] static std::array<int64_t, 2> resolve_pair(const Config& value);
  /// This struct's config keys as a config at `path` (for resolve_* outside a parse).
  [[nodiscard]] Config as_config(const std::string& path) const;
};

class VisionTransformer : public selfsup::Backbone {
public:
  explicit VisionTransformer(const VisionTransformerOptions& options);

  std::vector<torch::Tensor> forward(const torch::Tensor& x) override;
  [[nodiscard]] std::vector<int64_t> out_channels() const override { return out_channels_; }
  /// Module::train plus the frozen stages' eval mode.
  void train(bool on = true) override;
  void pretty_print(std::ostream& stream) const override;

  [[nodiscard]] int64_t embed_dims() const { return arch_.embed_dims; }
  [[nodiscard]] int64_t num_layers() const { return arch_.num_layers; }
  [[nodiscard]] std::array<int64_t, 2> patch_resolution() const { return patch_resolution_; }
  /// Upstream's num_extra_tokens (the class token).
  static constexpr int64_t kNumExtraTokens = 1;

  VisionTransformerOptions options;
  PatchEmbed patch_embed{nullptr};
  torch::Tensor cls_token, pos_embed;
  torch::nn::ModuleList layers{nullptr};
  torch::nn::LayerNorm pre_norm_ln{nullptr}, ln1{nullptr}, ln2{nullptr};

protected:
  /// mmcls's _freeze_stages (frozen_stages > 0).
  virtual void freeze_stages();
  std::vector<torch::nn::Module*> frozen_modules_; // kept in eval mode by train()

private:
  ViTArch arch_{};
  std::array<int64_t, 2> patch_resolution_{};
  std::vector<int64_t> out_indices_;
  std::vector<int64_t> out_channels_;
};

/// MMSelfSup's MoCoV3ViT: a VisionTransformer whose position embedding is the fixed 2-D
/// sin-cos one (no gradient), whose patch projection starts U(+-sqrt(6 / (3 p^2 + D))) and
/// may be frozen (stop_grad_conv1), qkv Linears U(+-sqrt(6 / (out/3 + in))), other Linears
/// xavier-uniform with zero biases, class token N(0, 1e-6); frozen_stages >= 0 also freezes
/// patch_embed, cls_token and pos_embed.
class MoCoV3ViT final : public VisionTransformer {
public:
  explicit MoCoV3ViT(const VisionTransformerOptions& options);
  void pretty_print(std::ostream& stream) const override;

protected:
  void freeze_stages() override;
};

std::shared_ptr<selfsup::Backbone> make_vision_transformer(const Config& cfg);
std::shared_ptr<selfsup::Backbone> make_mocov3_vit(const Config& cfg);

} // namespace selfsup::plugins::backbones
