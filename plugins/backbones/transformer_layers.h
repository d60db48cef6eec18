#pragma once
// Transformer building blocks as mmcv 2.0 / mmcls 1.0.0rc6 define them, under their parameter
// names so state_dicts line up: PatchEmbed (`projection`), MultiheadAttention (`qkv`, `proj`),
// FFN (`layers.0.0`, `layers.1`), TransformerEncoderLayer (`ln1`, `attn`, `ln2`, `ffn`), plus
// drop-path, mmcls's resize_pos_embed and MMSelfSup's 2-D sin-cos position embedding.
//
// VisionTransformer and MoCoV3ViT (vit.h) are made of these; the masked-image-modeling
// backbones and decoders (MAEViT, MAEPretrainDecoder, ...) reuse them: a backbone in this
// plugin includes this header, a module in another plugin compiles transformer_layers.cpp
// into itself (plugins share code by source or SDK bricks, never by linking each other).
#include <array>
#include <cstdint>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include <torch/arg.h>
#include <torch/nn/module.h>
#include <torch/nn/modules/conv.h>
#include <torch/nn/modules/container/sequential.h>
#include <torch/nn/modules/linear.h>
#include <torch/nn/modules/normalization.h>
#include <torch/types.h>

#include <selfsup/config.h>
#include <selfsup/json.h>
#include <selfsup/options.h>

namespace selfsup::plugins::backbones {

/// mmcv's `norm_cfg` for transformers: {type: 'LN', eps, requires_grad}. nn.LayerNorm's eps
/// (1e-5) unless given; VisionTransformer's default norm_cfg sets 1e-6.
struct LayerNormCfg {
  std::string type = "LN";
  double eps = 1e-5;
  bool requires_grad = true;
  static OptionTable<LayerNormCfg> table();
  /// A LayerNorm over the last `dims` features, weight 1 and bias 0.
  [[nodiscard]] torch::nn::LayerNorm make(int64_t dims) const;
};

/// Stochastic depth as mmcv's drop_path: in training, each sample's branch is zeroed with
/// probability `p` and the kept ones scaled by 1 / (1 - p); the identity otherwise.
torch::Tensor drop_path(const torch::Tensor& x, double p, bool training);

/// PyTorch's trunc_normal_ (mmengine's): N(mean, std) truncated to [a, b] (absolute bounds)
/// by inverse-CDF sampling, in place, without gradient.
void trunc_normal_(torch::Tensor& t, double mean, double std, double a, double b);

// ---- PatchEmbed ------------------------------------------------------------------------

/// The keys of mmcv's PatchEmbed that `patch_cfg` may set (VisionTransformer fills the rest:
/// in_channels, embed_dims, kernel_size = stride = patch_size, input_size = img_size).
struct PatchCfg {
  std::optional<int64_t> kernel_size, stride;
  int64_t dilation = 1;
  /// 'corner' (pad bottom/right so the kernel tiles the input), 'same', or an int.
  Json padding = "corner";
  std::optional<bool> bias;
  std::string conv_type = "Conv2d";
  std::optional<LayerNormCfg> norm_cfg;
  static OptionTable<PatchCfg> table();
};

struct PatchEmbedOptions {
  int64_t in_channels = 3;
  int64_t embed_dims = 768;
  std::array<int64_t, 2> kernel_size{16, 16};
  std::array<int64_t, 2> stride{16, 16};
  std::array<int64_t, 2> dilation{1, 1};
  std::string padding_mode = "corner"; // 'corner', 'same' or '' (fixed `padding`)
  int64_t padding = 0;
  bool bias = true;
  std::optional<LayerNormCfg> norm_cfg;
  std::array<int64_t, 2> input_size{224, 224};
};

/// mmcv's PatchEmbed: (adaptive padding) -> Conv2d `projection` -> flatten to [B, N, C]
/// -> optional `norm`. `init_out_size()` is the token grid of `input_size`.
class PatchEmbedImpl : public torch::nn::Module {
public:
  explicit PatchEmbedImpl(const PatchEmbedOptions& options);
  /// Tokens [B, H'W', C] and the grid (H', W').
  std::pair<torch::Tensor, std::array<int64_t, 2>> forward(const torch::Tensor& x);
  [[nodiscard]] std::array<int64_t, 2> init_out_size() const { return init_out_size_; }
  [[nodiscard]] std::array<int64_t, 2> out_size(std::array<int64_t, 2> in) const;

  PatchEmbedOptions options;
  torch::nn::Conv2d projection{nullptr};
  torch::nn::LayerNorm norm{nullptr};

private:
  /// The (left, right, top, bottom) padding of an input of `in` (adaptive modes).
  [[nodiscard]] std::array<int64_t, 4> adaptive_pad(std::array<int64_t, 2> in) const;
  std::array<int64_t, 2> init_out_size_{};
};
TORCH_MODULE(PatchEmbed);

// ---- attention and feed-forward --------------------------------------------------------

/// mmcls's MultiheadAttention: qkv Linear (bias per qkv_bias), softmax(q k^T * d^-0.5)
/// with dropout `attn_drop`, proj Linear, dropout `proj_drop`, then drop-path.
class MultiheadAttentionImpl : public torch::nn::Module {
public:
  MultiheadAttentionImpl(int64_t embed_dims, int64_t num_heads, double attn_drop, double proj_drop,
                         double drop_path_rate, bool qkv_bias);
  torch::Tensor forward(const torch::Tensor& x);

  int64_t embed_dims, num_heads;
  double attn_drop, proj_drop, drop_path_rate;
  torch::nn::Linear qkv{nullptr}, proj{nullptr};
};
TORCH_MODULE(MultiheadAttention);

/// A Sequential with a plain forward, so that it can sit inside another Sequential (the
/// FFN's `layers.0` = Linear -> GELU -> Dropout).
class SequentialBlockImpl : public torch::nn::SequentialImpl {
public:
  using SequentialImpl::SequentialImpl;
  torch::Tensor forward(torch::Tensor x) { return SequentialImpl::forward(x); }
};
TORCH_MODULE(SequentialBlock);

/// mmcv's FFN with GELU: layers = [Linear(D, F) -> GELU -> Dropout] x (num_fcs - 1) ->
/// Linear(F, D) -> Dropout; forward(x, identity) = identity + drop_path(layers(x)).
class FFNImpl : public torch::nn::Module {
public:
  FFNImpl(int64_t embed_dims, int64_t feedforward_channels, int64_t num_fcs, double ffn_drop,
          double drop_path_rate);
  torch::Tensor forward(const torch::Tensor& x, const torch::Tensor& identity);

  double drop_path_rate;
  torch::nn::Sequential layers{nullptr};
};
TORCH_MODULE(FFN);

struct TransformerEncoderLayerOptions {
  TransformerEncoderLayerOptions(int64_t embed_dims, int64_t num_heads,
                                 int64_t feedforward_channels)
      : embed_dims_(embed_dims), num_heads_(num_heads),
        feedforward_channels_(feedforward_channels) {}
  TORCH_ARG(int64_t, embed_dims);
  TORCH_ARG(int64_t, num_heads);
  TORCH_ARG(int64_t, feedforward_channels);
  TORCH_ARG(double, drop_rate) = 0.0;
  TORCH_ARG(double, attn_drop_rate) = 0.0;
  TORCH_ARG(double, drop_path_rate) = 0.0;
  TORCH_ARG(int64_t, num_fcs) = 2;
  TORCH_ARG(bool, qkv_bias) = true;
  TORCH_ARG(LayerNormCfg, norm_cfg) = {};
};

/// mmcls's pre-norm TransformerEncoderLayer: x + attn(ln1(x)), then + ffn(ln2(x)). Its FFN
/// Linears start xavier-uniform with N(0, 1e-6) biases (mmcls's init_weights); attention
/// Linears keep PyTorch's default init.
class TransformerEncoderLayerImpl : public torch::nn::Module {
public:
  explicit TransformerEncoderLayerImpl(const TransformerEncoderLayerOptions& options);
  torch::Tensor forward(const torch::Tensor& x);

  TransformerEncoderLayerOptions options;
  torch::nn::LayerNorm ln1{nullptr}, ln2{nullptr};
  MultiheadAttention attn{nullptr};
  FFN ffn{nullptr};
};
TORCH_MODULE(TransformerEncoderLayer);

// ---- position embeddings ---------------------------------------------------------------

/// mmcls's resize_pos_embed: [1, extra + sh*sw, C] -> [1, extra + dh*dw, C], the grid part
/// interpolated (align_corners false, in float32) with `mode` ('bicubic', 'bilinear',
/// 'nearest'), the extra tokens kept. The input itself when the shapes are equal.
torch::Tensor resize_pos_embed(const torch::Tensor& pos_embed, std::array<int64_t, 2> src,
                               std::array<int64_t, 2> dst, const std::string& mode,
                               int64_t num_extra_tokens);

/// MMSelfSup's build_2d_sincos_position_embedding: [1, h*w (+1), D] float32 of
/// [sin(a*w), cos(a*w), sin(a*h), cos(a*h)], a = temperature^(-k / (D/4)), with the grid
/// as upstream builds it (torch.meshgrid(w, h), 'ij'); a zero row first with `cls_token`.
torch::Tensor build_2d_sincos_position_embedding(std::array<int64_t, 2> patches_resolution,
                                                 int64_t embed_dims, double temperature = 10000.,
                                                 bool cls_token = false);

} // namespace selfsup::plugins::backbones
