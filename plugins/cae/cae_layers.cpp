#include "cae_layers.h"

#include <cmath>

#include <torch/torch.h>

namespace selfsup::plugins::cae {

namespace {
// [B, N, D] -> [B, heads, N, D / heads]
torch::Tensor split_heads(const torch::Tensor& x, int64_t heads) {
  return x.reshape({x.size(0), x.size(1), heads, -1}).permute({0, 2, 1, 3});
}
} // namespace

SelfAttentionImpl::SelfAttentionImpl(int64_t embed_dims_, int64_t num_heads_, double attn_drop_,
                                     double proj_drop_, bool qkv_bias)
    : embed_dims(embed_dims_), num_heads(num_heads_), attn_drop(attn_drop_), proj_drop(proj_drop_) {
  if (!qkv_bias) {
    q_bias = register_parameter("q_bias", torch::zeros({embed_dims}));
    v_bias = register_parameter("v_bias", torch::zeros({embed_dims}));
  }
  qkv = register_module(
      "qkv",
      torch::nn::Linear(torch::nn::LinearOptions(embed_dims, 3 * embed_dims).bias(qkv_bias)));
  proj = register_module("proj", torch::nn::Linear(embed_dims, embed_dims));
}

torch::Tensor SelfAttentionImpl::forward(const torch::Tensor& x) {
  const int64_t b = x.size(0), n = x.size(1);
  torch::Tensor h;
  if (q_bias.defined()) {
    const auto bias = torch::cat({q_bias, torch::zeros_like(v_bias), v_bias});
    h = torch::nn::functional::linear(x, qkv->weight, bias);
  } else {
    h = qkv(x);
  }
  h = h.reshape({b, n, 3, num_heads, -1}).permute({2, 0, 3, 1, 4});
  const auto q = h[0], k = h[1], v = h[2];
  auto attn = torch::matmul(q, k.transpose(-2, -1)) * std::pow(double(q.size(-1)), -0.5);
  attn = torch::dropout(attn.softmax(-1), attn_drop, is_training());
  auto out = torch::matmul(attn, v).transpose(1, 2).reshape({b, n, embed_dims});
  return torch::dropout(proj(out), proj_drop, is_training());
}

EncoderLayerImpl::EncoderLayerImpl(const EncoderLayerOptions& o) : options(o) {
  if (o.init_values > 0) {
    gamma_1 = register_parameter("gamma_1", torch::full({o.embed_dims}, o.init_values));
    gamma_2 = register_parameter("gamma_2", torch::full({o.embed_dims}, o.init_values));
  }
  ln1 = register_module("ln1", o.norm_cfg.make(o.embed_dims));
  attn = register_module(
      "attn", SelfAttention(o.embed_dims, o.num_heads, o.attn_drop_rate, o.drop_rate, o.qkv_bias));
  ln2 = register_module("ln2", o.norm_cfg.make(o.embed_dims));
  ffn = register_module("ffn",
                        backbones::FFN(o.embed_dims, o.feedforward_channels, 2, o.drop_rate, 0.0));
}

torch::Tensor EncoderLayerImpl::forward(const torch::Tensor& x) {
  auto a = attn(ln1(x));
  if (gamma_1.defined()) a = gamma_1 * a;
  auto h = x + backbones::drop_path(a, options.drop_path_rate, is_training());
  auto f = ffn->layers->forward(ln2(h));
  if (gamma_2.defined()) f = gamma_2 * f;
  return h + backbones::drop_path(f, options.drop_path_rate, is_training());
}

CrossAttentionImpl::CrossAttentionImpl(int64_t embed_dims, int64_t num_heads_, bool qkv_bias,
                                       std::optional<double> qk_scale, double attn_drop_,
                                       double proj_drop_)
    : num_heads(num_heads_),
      scale(qk_scale.value_or(std::pow(double(embed_dims / num_heads_), -0.5))),
      attn_drop(attn_drop_), proj_drop(proj_drop_) {
  auto no_bias = [&] { return torch::nn::LinearOptions(embed_dims, embed_dims).bias(false); };
  q = register_module("q", torch::nn::Linear(no_bias()));
  k = register_module("k", torch::nn::Linear(no_bias()));
  v = register_module("v", torch::nn::Linear(no_bias()));
  if (qkv_bias) {
    q_bias = register_parameter("q_bias", torch::zeros({embed_dims}));
    v_bias = register_parameter("v_bias", torch::zeros({embed_dims}));
  }
  proj = register_module("proj", torch::nn::Linear(embed_dims, embed_dims));
}

torch::Tensor CrossAttentionImpl::forward(const torch::Tensor& x, const torch::Tensor& key,
                                          const torch::Tensor& value) {
  namespace F = torch::nn::functional;
  const int64_t b = x.size(0), n = x.size(1);
  auto qq = q_bias.defined() ? F::linear(x, q->weight, q_bias) : q(x);
  auto kk = k(key);
  auto vv = v_bias.defined() ? F::linear(value, v->weight, v_bias) : v(value);
  qq = split_heads(qq, num_heads) * scale;
  kk = split_heads(kk, num_heads);
  vv = split_heads(vv, num_heads);
  auto attn = torch::matmul(qq, kk.transpose(-2, -1)).softmax(-1);
  attn = torch::dropout(attn, attn_drop, is_training());
  auto out = torch::matmul(attn, vv).transpose(1, 2).reshape({b, n, -1});
  return torch::dropout(proj(out), proj_drop, is_training());
}

RegressorLayerImpl::RegressorLayerImpl(int64_t embed_dims, int64_t num_heads,
                                       int64_t feedforward_channels, bool qkv_bias,
                                       std::optional<double> qk_scale, double drop_rate,
                                       double attn_drop_rate, double drop_path_rate_,
                                       double init_values, const backbones::LayerNormCfg& norm_cfg)
    : drop_path_rate(drop_path_rate_) {
  norm1_q_cross = register_module("norm1_q_cross", norm_cfg.make(embed_dims));
  norm1_k_cross = register_module("norm1_k_cross", norm_cfg.make(embed_dims));
  norm1_v_cross = register_module("norm1_v_cross", norm_cfg.make(embed_dims));
  norm2_cross = register_module("norm2_cross", norm_cfg.make(embed_dims));
  cross_attn = register_module("cross_attn", CrossAttention(embed_dims, num_heads, qkv_bias,
                                                            qk_scale, attn_drop_rate, drop_rate));
  ffn = register_module("ffn", backbones::FFN(embed_dims, feedforward_channels, 2, drop_rate, 0.0));
  const bool learned = init_values > 0;
  const double start = learned ? init_values : 1.0;
  gamma_1_cross = register_parameter("gamma_1_cross", torch::full({embed_dims}, start), learned);
  gamma_2_cross = register_parameter("gamma_2_cross", torch::full({embed_dims}, start), learned);
}

torch::Tensor RegressorLayerImpl::forward(const torch::Tensor& x_q, const torch::Tensor& x_kv,
                                          const torch::Tensor& pos_q, const torch::Tensor& pos_k) {
  auto a = cross_attn(norm1_q_cross(x_q + pos_q), norm1_k_cross(x_kv + pos_k), norm1_v_cross(x_kv));
  auto x = x_q + backbones::drop_path(gamma_1_cross * a, drop_path_rate, is_training());
  x = norm2_cross(x);
  return x + backbones::drop_path(gamma_2_cross * ffn->layers->forward(x), drop_path_rate,
                                  is_training());
}

void xavier_init_linears_and_norms(torch::nn::Module& m) {
  torch::NoGradGuard no_grad;
  for (const auto& sub : m.modules(/*include_self=*/false)) {
    if (auto* linear = sub->as<torch::nn::Linear>()) {
      torch::nn::init::xavier_uniform_(linear->weight);
      if (linear->bias.defined()) linear->bias.zero_();
    } else if (auto* ln = sub->as<torch::nn::LayerNorm>()) {
      if (ln->weight.defined()) ln->weight.fill_(1.0);
      if (ln->bias.defined()) ln->bias.zero_();
    }
  }
}

} // namespace selfsup::plugins::cae
