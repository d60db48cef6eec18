#pragma once
// SwinTransformer as mmcls 1.0.0rc6 (`mmcls.models.backbones.SwinTransformer`), under mmcls's
// parameter names: patch_embed.{projection, norm}.*, absolute_pos_embed (use_abs_pos_embed),
// stages.<i>.blocks.<j>.{norm1, attn.w_msa.{relative_position_bias_table,
// relative_position_index, qkv, proj}, norm2, ffn.layers.0.0, ffn.layers.1}.*,
// stages.<i>.downsample.{norm, reduction}.* and norm<i>.* for each out index.
//
// Windows of window_size x window_size tokens attend within themselves with a learned relative
// position bias; every second block of a stage shifts the windows by window_size / 2 (a cyclic
// roll) and masks the pairs of tokens that the roll brought together from different image
// regions (-100 added to their logits). Each stage but the last ends with PatchMerging
// (2 x 2 neighbours -> LayerNorm -> Linear 4C -> 2C, no bias).
//
// MMSelfSup's SimMIMSwinTransformer (plugins/simmim) derives from this class: that plugin
// compiles this file into itself (plugins share code by source, never by linking).
#include <array>
#include <cstdint>
#include <memory>
#include <optional>
#include <ostream>
#include <string>
#include <utility>
#include <vector>

#include <torch/arg.h>
#include <torch/nn/module.h>
#include <torch/nn/modules/container/modulelist.h>
#include <torch/nn/modules/linear.h>
#include <torch/nn/modules/normalization.h>
#include <torch/types.h>

#include <selfsup/config.h>
#include <selfsup/interfaces/modules.h>
#include <selfsup/json.h>
#include <selfsup/options.h>

#include "transformer_layers.h"

namespace selfsup::plugins::backbones {

// ---- window helpers --------------------------------------------------------------------

/// [B, H, W, C] -> [B * (H/w) * (W/w), w, w, C], windows in row-major order per image
/// (mmcls's ShiftWindowMSA.window_partition); H and W must be multiples of `window_size`.
torch::Tensor window_partition(const torch::Tensor& x, int64_t window_size);
/// The inverse of window_partition: [B * nW, w, w, C] -> [B, H, W, C].
torch::Tensor window_reverse(const torch::Tensor& windows, int64_t h, int64_t w,
                             int64_t window_size);
/// The shifted-window attention mask of a padded grid [nW, w*w, w*w] (0 where two tokens of a
/// window come from the same region of the un-rolled image, -100 elsewhere), or an undefined
/// tensor when `shift_size` is 0 (mmcls's ShiftWindowMSA.get_attn_mask).
torch::Tensor shifted_window_attn_mask(std::array<int64_t, 2> hw, int64_t window_size,
                                       int64_t shift_size,
                                       const torch::TensorOptions& options = {});
/// WindowMSA's relative_position_index of a (wh, ww) window: [wh*ww, wh*ww] int64 indices
/// into the (2wh-1)(2ww-1) rows of the bias table.
torch::Tensor relative_position_index(int64_t wh, int64_t ww);

// ---- blocks ----------------------------------------------------------------------------

/// mmcls's WindowMSA: multi-head attention inside a window with a relative position bias
/// (`relative_position_bias_table` [(2w-1)^2, heads], trunc-normal std 0.02).
class WindowMSAImpl : public torch::nn::Module {
public:
  WindowMSAImpl(int64_t embed_dims, int64_t window_size, int64_t num_heads, bool qkv_bias);
  /// x [B * nW, w*w, C]; mask [nW, w*w, w*w] or undefined.
  torch::Tensor forward(const torch::Tensor& x, const torch::Tensor& mask);

  int64_t embed_dims, window_size, num_heads;
  double scale;
  torch::Tensor relative_position_bias_table, relative_position_index;
  torch::nn::Linear qkv{nullptr}, proj{nullptr};
};
TORCH_MODULE(WindowMSA);

/// mmcls's ShiftWindowMSA: pad to whole windows, roll by -shift, window attention with the
/// shift mask, roll back, crop, then drop-path. A feature map of exactly window_size does not
/// shift unless pad_small_map; a smaller one needs pad_small_map.
class ShiftWindowMSAImpl : public torch::nn::Module {
public:
  ShiftWindowMSAImpl(int64_t embed_dims, int64_t num_heads, int64_t window_size, int64_t shift_size,
                     double drop_path_rate, bool pad_small_map, bool qkv_bias);
  torch::Tensor forward(const torch::Tensor& x, std::array<int64_t, 2> hw);

  int64_t window_size, shift_size;
  double drop_path_rate;
  bool pad_small_map;
  WindowMSA w_msa{nullptr};
};
TORCH_MODULE(ShiftWindowMSA);

/// mmcls's SwinBlock: x + attn(norm1(x)), then x + ffn(norm2(x)).
class SwinBlockImpl : public torch::nn::Module {
public:
  SwinBlockImpl(int64_t embed_dims, int64_t num_heads, int64_t window_size, bool shift,
                double ffn_ratio, double drop_path_rate, bool pad_small_map,
                const LayerNormCfg& norm_cfg);
  torch::Tensor forward(const torch::Tensor& x, std::array<int64_t, 2> hw);

  torch::nn::LayerNorm norm1{nullptr}, norm2{nullptr};
  ShiftWindowMSA attn{nullptr};
  FFN ffn{nullptr};
};
TORCH_MODULE(SwinBlock);

/// mmcv's PatchMerging with its Swin defaults: 2 x 2 unfold ('corner' padding of odd sizes),
/// LayerNorm `norm` over 4C, Linear `reduction` 4C -> out_channels without bias.
class PatchMergingImpl : public torch::nn::Module {
public:
  PatchMergingImpl(int64_t in_channels, int64_t out_channels);
  std::pair<torch::Tensor, std::array<int64_t, 2>> forward(const torch::Tensor& x,
                                                           std::array<int64_t, 2> hw);

  int64_t in_channels, out_channels;
  torch::nn::LayerNorm norm{nullptr};
  torch::nn::Linear reduction{nullptr};
};
TORCH_MODULE(PatchMerging);

/// The keys of a stage's `block_cfgs` (mmcls's SwinBlock arguments) that a config may set.
struct SwinBlockCfg {
  std::optional<int64_t> window_size;
  std::optional<double> ffn_ratio;
  std::optional<LayerNormCfg> norm_cfg;
  static OptionTable<SwinBlockCfg> table();
};

/// mmcls's SwinBlockSequence: `blocks` (every second one shifted) then `downsample`.
class SwinBlockSequenceImpl : public torch::nn::Module {
public:
  SwinBlockSequenceImpl(int64_t embed_dims, int64_t num_heads,
                        const std::vector<SwinBlockCfg>& block_cfgs, int64_t window_size,
                        bool downsample, const std::vector<double>& drop_paths, bool pad_small_map);
  /// The blocks, then the downsample when `do_downsample` (tokens and their grid).
  std::pair<torch::Tensor, std::array<int64_t, 2>>
  forward(torch::Tensor x, std::array<int64_t, 2> hw, bool do_downsample = true);
  /// Channels after the stage (2C with a downsample).
  [[nodiscard]] int64_t out_channels() const;

  int64_t embed_dims;
  torch::nn::ModuleList blocks{nullptr};
  PatchMerging downsample{nullptr};
};
TORCH_MODULE(SwinBlockSequence);

// ---- SwinTransformer -------------------------------------------------------------------

/// The three entries of an arch.
struct SwinArch {
  int64_t embed_dims = 0;
  std::vector<int64_t> depths, num_heads;
};

struct SwinTransformerOptions {
  /// The declaration of `SwinTransformer` (variant "mmcls") or MMSelfSup's
  /// `SimMIMSwinTransformer` (variant "simmim": no patch_size, window_size,
  /// out_after_downsample or interpolate_mode keys, arch 'T' by default).
  static OptionTable<SwinTransformerOptions> table(const std::string& variant = "mmcls");

  /// 'tiny', 'small', 'base', 'large' (or t, s, b, l) or {embed_dims, depths, num_heads}.
  TORCH_ARG(Json, arch) = "tiny";
  /// int or [h, w].
  TORCH_ARG(Json, img_size) = 224;
  TORCH_ARG(int64_t, patch_size) = 4;
  TORCH_ARG(int64_t, in_channels) = 3;
  TORCH_ARG(int64_t, window_size) = 7;
  TORCH_ARG(double, drop_rate) = 0.0;
  TORCH_ARG(double, drop_path_rate) = 0.1;
  /// Stages whose output is returned (0-based, negative from the end).
  TORCH_ARG(std::vector<int64_t>, out_indices) = std::vector<int64_t>{3};
  TORCH_ARG(bool, out_after_downsample) = false;
  TORCH_ARG(bool, use_abs_pos_embed) = false;
  TORCH_ARG(std::string, interpolate_mode) = "bicubic";
  TORCH_ARG(bool, with_cp) = false;
  TORCH_ARG(int64_t, frozen_stages) = -1;
  TORCH_ARG(bool, norm_eval) = false;
  TORCH_ARG(bool, pad_small_map) = false;
  TORCH_ARG(LayerNormCfg, norm_cfg) = LayerNormCfg{};
  /// A dict for every stage or a list of one dict per stage: {block_cfgs, downsample_cfg}.
  TORCH_ARG(Json, stage_cfgs) = Json::object();
  TORCH_ARG(PatchCfg, patch_cfg) = {};
  TORCH_ARG(Json, init_cfg) = Json();
  /// "mmcls" or "simmim" (not a config key: the registered name chooses it).
  TORCH_ARG(std::string, variant) = "mmcls";

public:
  /// The arch's numbers; errors name `where` (the options' config).
  [[nodiscard]] SwinArch resolve_arch(const Config& where) const;
  /// Per stage, one SwinBlockCfg per block (stage_cfgs spread and checked).
  [[nodiscard]] std::vector<std::vector<SwinBlockCfg>>
  resolve_block_cfgs(const Config& where, const SwinArch& arch) const;
  /// Sorted non-negative out indices.
  [[nodiscard]] std::vector<int64_t> resolve_out_indices(const Config& where,
                                                         int64_t num_stages) const;
  /// This struct's config keys as a config at `path`.
  [[nodiscard]] Config as_config(const std::string& path) const;
};

class SwinTransformer : public selfsup::Backbone {
public:
  explicit SwinTransformer(const SwinTransformerOptions& options);

  /// One map [B, C_i, H_i, W_i] per out index, each through its norm<i>.
  std::vector<torch::Tensor> forward(const torch::Tensor& x) override;
  [[nodiscard]] std::vector<int64_t> out_channels() const override;
  /// Module::train plus the frozen stages' eval mode.
  void train(bool on = true) override;
  void pretty_print(std::ostream& stream) const override;

  [[nodiscard]] int64_t embed_dims() const { return arch_.embed_dims; }
  [[nodiscard]] const SwinArch& arch() const { return arch_; }
  [[nodiscard]] std::array<int64_t, 2> patch_resolution() const { return patch_resolution_; }
  /// The image size patch_embed was made for (img_size).
  [[nodiscard]] std::array<int64_t, 2> img_size() const { return img_size_; }
  [[nodiscard]] const std::vector<int64_t>& out_indices() const { return out_indices_; }
  /// Channels of each stage's output before / after its downsample (mmcls's num_features
  /// for out_after_downsample false / true).
  [[nodiscard]] const std::vector<int64_t>& stage_channels() const { return stage_channels_; }

  SwinTransformerOptions options;
  PatchEmbed patch_embed{nullptr};
  torch::Tensor absolute_pos_embed; // undefined without use_abs_pos_embed
  torch::nn::ModuleList stages{nullptr};
  /// norm<i> of out index i, by position in out_indices().
  std::vector<torch::nn::LayerNorm> norms;

protected:
  /// mmcls's _freeze_stages.
  void freeze_stages();
  /// The norm of out index `stage`.
  [[nodiscard]] torch::nn::LayerNorm& norm_of(int64_t stage);
  /// `out` [B, H*W, C] -> [B, C, H, W].
  [[nodiscard]] static torch::Tensor to_map(const torch::Tensor& out, std::array<int64_t, 2> hw);
  std::vector<torch::nn::Module*> frozen_modules_; // kept in eval mode by train()

private:
  SwinArch arch_;
  std::array<int64_t, 2> patch_resolution_{}, img_size_{};
  std::vector<int64_t> out_indices_;
  std::vector<int64_t> stage_channels_; // embed_dims list [C, 2C, ..., last, last]
};

std::shared_ptr<selfsup::Backbone> make_swin_transformer(const Config& cfg);

} // namespace selfsup::plugins::backbones
