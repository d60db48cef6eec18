#pragma once
// The transformer layers of CAE as MMSelfSup 1.0 writes them (models/utils/
// transformer_blocks.py): a pre-norm encoder layer with optional layer scale and BEiT's
// q/v-only biases, the cross attention and the latent regressor layer.
#include <cstdint>
#include <optional>

#include <torch/nn/module.h>
#include <torch/nn/modules/linear.h>
#include <torch/nn/modules/normalization.h>
#include <torch/types.h>

#include "../backbones/transformer_layers.h"

namespace selfsup::plugins::cae {

/// Self-attention: `qkv` Linear (with a bias when qkv_bias; otherwise learned `q_bias` and
/// `v_bias` with a zero k bias, as BEiT), softmax(q k^T / sqrt(d_head)), dropout, `proj`,
/// dropout.
class SelfAttentionImpl : public torch::nn::Module {
public:
  SelfAttentionImpl(int64_t embed_dims, int64_t num_heads, double attn_drop, double proj_drop,
                    bool qkv_bias);
  torch::Tensor forward(const torch::Tensor& x);
  int64_t embed_dims, num_heads;
  double attn_drop, proj_drop;
  torch::Tensor q_bias, v_bias; // undefined with qkv_bias
  torch::nn::Linear qkv{nullptr}, proj{nullptr};
};
TORCH_MODULE(SelfAttention);

struct EncoderLayerOptions {
  int64_t embed_dims = 768, num_heads = 12, feedforward_channels = 3072;
  double drop_rate = 0.0, attn_drop_rate = 0.0, drop_path_rate = 0.0;
  bool qkv_bias = true;
  /// Layer scale: gamma_1 / gamma_2 start at this value when > 0; none otherwise.
  double init_values = 0.0;
  backbones::LayerNormCfg norm_cfg{"LN", 1e-6, true};
};

/// MMSelfSup's TransformerEncoderLayer: x + drop_path(gamma_1 * attn(ln1(x))), then
/// + drop_path(gamma_2 * ffn(ln2(x))) (gammas omitted when init_values is 0). Parameters
/// gamma_1, gamma_2, ln1, attn.{q_bias, v_bias, qkv, proj}, ln2, ffn.layers.{0.0, 1}.
class EncoderLayerImpl : public torch::nn::Module {
public:
  explicit EncoderLayerImpl(const EncoderLayerOptions& options);
  torch::Tensor forward(const torch::Tensor& x);
  EncoderLayerOptions options;
  torch::Tensor gamma_1, gamma_2;
  torch::nn::LayerNorm ln1{nullptr}, ln2{nullptr};
  SelfAttention attn{nullptr};
  backbones::FFN ffn{nullptr};
};
TORCH_MODULE(EncoderLayer);

/// CrossMultiheadAttention: q, k, v bias-free Linears (plus `q_bias`, `v_bias` with
/// qkv_bias), softmax(q k^T * scale) v, `proj`. scale = qk_scale or d_head^-0.5.
class CrossAttentionImpl : public torch::nn::Module {
public:
  CrossAttentionImpl(int64_t embed_dims, int64_t num_heads, bool qkv_bias,
                     std::optional<double> qk_scale, double attn_drop, double proj_drop);
  torch::Tensor forward(const torch::Tensor& x, const torch::Tensor& k, const torch::Tensor& v);
  int64_t num_heads;
  double scale, attn_drop, proj_drop;
  torch::Tensor q_bias, v_bias;
  torch::nn::Linear q{nullptr}, k{nullptr}, v{nullptr}, proj{nullptr};
};
TORCH_MODULE(CrossAttention);

/// CAETransformerRegressorLayer: x = x_q + drop_path(gamma_1_cross * cross_attn(
/// norm1_q_cross(x_q + pos_q), norm1_k_cross(x_kv + pos_k), norm1_v_cross(x_kv))); x =
/// norm2_cross(x); x + drop_path(gamma_2_cross * ffn(x)). The gammas are init_values (learned)
/// when init_values > 0, else fixed ones.
class RegressorLayerImpl : public torch::nn::Module {
public:
  RegressorLayerImpl(int64_t embed_dims, int64_t num_heads, int64_t feedforward_channels,
                     bool qkv_bias, std::optional<double> qk_scale, double drop_rate,
                     double attn_drop_rate, double drop_path_rate, double init_values,
                     const backbones::LayerNormCfg& norm_cfg);
  torch::Tensor forward(const torch::Tensor& x_q, const torch::Tensor& x_kv,
                        const torch::Tensor& pos_q, const torch::Tensor& pos_k);
  double drop_path_rate;
  torch::Tensor gamma_1_cross, gamma_2_cross;
  torch::nn::LayerNorm norm1_q_cross{nullptr}, norm1_k_cross{nullptr}, norm1_v_cross{nullptr},
      norm2_cross{nullptr};
  CrossAttention cross_attn{nullptr};
  backbones::FFN ffn{nullptr};
};
TORCH_MODULE(RegressorLayer);

/// xavier-uniform weights and zero biases for every Linear of `m`, LayerNorms 1 / 0
/// (MMSelfSup's CAE `_init_weights`).
void xavier_init_linears_and_norms(torch::nn::Module& m);

} // namespace selfsup::plugins::cae
