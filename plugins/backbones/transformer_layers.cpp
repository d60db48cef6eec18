#include "transformer_layers.h"

#include <cmath>

#include <torch/torch.h>

#include <selfsup/errors.h>

namespace selfsup::plugins::backbones {

// ---- small pieces ----------------------------------------------------------------------

OptionTable<LayerNormCfg> LayerNormCfg::table() {
  using O = LayerNormCfg;
  using namespace selfsup::check;
  return OptionTable<O>("norm layer of a transformer (mmcv's norm_cfg): LayerNorm", O())
      .required("type", &O::type, "'LN' (nn.LayerNorm over the embedding)", one_of({"LN"}))
      .optional("eps", &O::eps, "LayerNorm's eps", gt(0))
      .optional("requires_grad", &O::requires_grad, "train the norm's weight and bias");
}

torch::nn::LayerNorm LayerNormCfg::make(int64_t dims) const {
  torch::nn::LayerNorm ln(torch::nn::LayerNormOptions({dims}).eps(eps));
  for (auto& p : ln->parameters()) p.set_requires_grad(requires_grad);
  return ln;
}

torch::Tensor drop_path(const torch::Tensor& x, double p, bool training) {
  if (p == 0.0 || !training) return x;
  const double keep = 1.0 - p;
  std::vector<int64_t> shape(x.dim(), 1);
  shape[0] = x.size(0);
  auto mask = (torch::rand(shape, x.options()) + keep).floor_();
  return x.div(keep) * mask;
}

void trunc_normal_(torch::Tensor& t, double mean, double std, double a, double b) {
  torch::NoGradGuard no_grad;
  auto cdf = [](double v) { return (1.0 + std::erf(v / std::sqrt(2.0))) / 2.0; };
  const double l = cdf((a - mean) / std), u = cdf((b - mean) / std);
  t.uniform_(2 * l - 1, 2 * u - 1);
  t.erfinv_();
  t.mul_(std * std::sqrt(2.0));
  t.add_(mean);
  t.clamp_(a, b);
}

// ---- PatchEmbed ------------------------------------------------------------------------

OptionTable<PatchCfg> PatchCfg::table() {
  using O = PatchCfg;
  using namespace selfsup::check;
  return OptionTable<O>("mmcv PatchEmbed keys a ViT's patch_cfg may set", O())
      .optional("kernel_size", &O::kernel_size, "conv kernel (default: patch_size)", gt(0))
      .optional("stride", &O::stride, "conv stride (default: patch_size)", gt(0))
      .optional("dilation", &O::dilation, "conv dilation", gt(0))
      .optional("padding", &O::padding,
                "'corner' (pad bottom/right so the kernel tiles the input), 'same', or an int")
      .optional("bias", &O::bias, "conv bias (default: not pre_norm)")
      .optional("conv_type", &O::conv_type, "'Conv2d'", one_of({"Conv2d"}))
      .optional("norm_cfg", &O::norm_cfg, "a LayerNorm on the tokens after the conv")
      .rule([](const O& o, const Config& cfg) {
        const Json& p = o.padding;
        if (p.is_string() && (p.as_string() == "corner" || p.as_string() == "same")) return;
        if (p.is_int() && p.as_int() >= 0) return;
        cfg.fail_key("padding", "expected 'corner', 'same' or an int >= 0, got " + p.dump());
      });
}

PatchEmbedImpl::PatchEmbedImpl(const PatchEmbedOptions& options_) : options(options_) {
  const auto& o = options;
  projection = register_module(
      "projection", torch::nn::Conv2d(torch::nn::Conv2dOptions(o.in_channels, o.embed_dims,
                                                               {o.kernel_size[0], o.kernel_size[1]})
                                          .stride({o.stride[0], o.stride[1]})
                                          .padding({o.padding, o.padding})
                                          .dilation({o.dilation[0], o.dilation[1]})
                                          .bias(o.bias)));
  if (o.norm_cfg) norm = register_module("norm", o.norm_cfg->make(o.embed_dims));
  init_out_size_ = out_size(o.input_size);
  TORCH_CHECK(init_out_size_[0] > 0 && init_out_size_[1] > 0, "PatchEmbed: input size ",
              o.input_size[0], "x", o.input_size[1], " gives no patch");
}

std::array<int64_t, 4> PatchEmbedImpl::adaptive_pad(std::array<int64_t, 2> in) const {
  if (options.padding_mode.empty()) return {0, 0, 0, 0};
  std::array<int64_t, 2> pad{};
  for (int i = 0; i < 2; ++i) {
    const int64_t out = (in[i] + options.stride[i] - 1) / options.stride[i];
    pad[i] = std::max<int64_t>((out - 1) * options.stride[i] +
                                   (options.kernel_size[i] - 1) * options.dilation[i] + 1 - in[i],
                               0);
  }
  if (options.padding_mode == "corner") return {0, pad[1], 0, pad[0]};
  return {pad[1] / 2, pad[1] - pad[1] / 2, pad[0] / 2, pad[0] - pad[0] / 2};
}

std::array<int64_t, 2> PatchEmbedImpl::out_size(std::array<int64_t, 2> in) const {
  const auto pad = adaptive_pad(in);
  const std::array<int64_t, 2> padded{in[0] + pad[2] + pad[3], in[1] + pad[0] + pad[1]};
  std::array<int64_t, 2> out{};
  for (int i = 0; i < 2; ++i)
    out[i] =
        (padded[i] + 2 * options.padding - options.dilation[i] * (options.kernel_size[i] - 1) - 1) /
            options.stride[i] +
        1;
  return out;
}

std::pair<torch::Tensor, std::array<int64_t, 2>> PatchEmbedImpl::forward(const torch::Tensor& x) {
  TORCH_CHECK(x.dim() == 4 && x.size(1) == options.in_channels, "PatchEmbed: expected input [N, ",
              options.in_channels, ", H, W], got ", x.sizes());
  torch::Tensor h = x;
  const auto pad = adaptive_pad({x.size(2), x.size(3)});
  if (pad[0] || pad[1] || pad[2] || pad[3])
    h = torch::constant_pad_nd(h, {pad[0], pad[1], pad[2], pad[3]}, 0);
  h = projection(h);
  const std::array<int64_t, 2> grid{h.size(2), h.size(3)};
  h = h.flatten(2).transpose(1, 2);
  if (norm) h = norm(h);
  return {h, grid};
}

// ---- attention and feed-forward --------------------------------------------------------

MultiheadAttentionImpl::MultiheadAttentionImpl(int64_t embed_dims_, int64_t num_heads_,
                                               double attn_drop_, double proj_drop_,
                                               double drop_path_rate_, bool qkv_bias)
    : embed_dims(embed_dims_), num_heads(num_heads_), attn_drop(attn_drop_), proj_drop(proj_drop_),
      drop_path_rate(drop_path_rate_) {
  TORCH_CHECK(num_heads > 0 && embed_dims % num_heads == 0, "MultiheadAttention: embed_dims ",
              embed_dims, " is not divisible by num_heads ", num_heads);
  qkv = register_module(
      "qkv",
      torch::nn::Linear(torch::nn::LinearOptions(embed_dims, 3 * embed_dims).bias(qkv_bias)));
  proj = register_module("proj", torch::nn::Linear(embed_dims, embed_dims));
}

torch::Tensor MultiheadAttentionImpl::forward(const torch::Tensor& x) {
  const int64_t b = x.size(0), n = x.size(1), d = embed_dims / num_heads;
  auto qkv_ = qkv(x).reshape({b, n, 3, num_heads, d}).permute({2, 0, 3, 1, 4});
  auto q = qkv_[0], k = qkv_[1], v = qkv_[2];
  auto attn = torch::matmul(q, k.transpose(-2, -1)) * std::pow(double(d), -0.5);
  attn = attn.softmax(-1);
  attn = torch::dropout(attn, attn_drop, is_training());
  auto out = torch::matmul(attn, v).transpose(1, 2).reshape({b, n, embed_dims});
  out = torch::dropout(proj(out), proj_drop, is_training());
  return drop_path(out, drop_path_rate, is_training());
}

FFNImpl::FFNImpl(int64_t embed_dims, int64_t feedforward_channels, int64_t num_fcs, double ffn_drop,
                 double drop_path_rate_)
    : drop_path_rate(drop_path_rate_) {
  TORCH_CHECK(num_fcs >= 2, "FFN: num_fcs must be >= 2, got ", num_fcs);
  layers = torch::nn::Sequential();
  int64_t in = embed_dims;
  for (int64_t i = 0; i < num_fcs - 1; ++i) {
    layers->push_back(SequentialBlock(torch::nn::Linear(in, feedforward_channels),
                                      torch::nn::GELU(), torch::nn::Dropout(ffn_drop)));
    in = feedforward_channels;
  }
  layers->push_back(torch::nn::Linear(feedforward_channels, embed_dims));
  layers->push_back(torch::nn::Dropout(ffn_drop));
  register_module("layers", layers);
}

torch::Tensor FFNImpl::forward(const torch::Tensor& x, const torch::Tensor& identity) {
  return identity + drop_path(layers->forward(x), drop_path_rate, is_training());
}

TransformerEncoderLayerImpl::TransformerEncoderLayerImpl(
    const TransformerEncoderLayerOptions& options_)
    : options(options_) {
  const auto& o = options;
  ln1 = register_module("ln1", o.norm_cfg().make(o.embed_dims()));
  attn =
      register_module("attn", MultiheadAttention(o.embed_dims(), o.num_heads(), o.attn_drop_rate(),
                                                 o.drop_rate(), o.drop_path_rate(), o.qkv_bias()));
  ln2 = register_module("ln2", o.norm_cfg().make(o.embed_dims()));
  ffn = register_module("ffn", FFN(o.embed_dims(), o.feedforward_channels(), o.num_fcs(),
                                   o.drop_rate(), o.drop_path_rate()));
  // mmcls TransformerEncoderLayer.init_weights: the FFN's Linears.
  torch::NoGradGuard no_grad;
  for (const auto& m : ffn->modules(/*include_self=*/false))
    if (auto* linear = m->as<torch::nn::Linear>()) {
      torch::nn::init::xavier_uniform_(linear->weight);
      torch::nn::init::normal_(linear->bias, 0.0, 1e-6);
    }
}

torch::Tensor TransformerEncoderLayerImpl::forward(const torch::Tensor& x) {
  auto h = x + attn(ln1(x));
  return ffn(ln2(h), h);
}

// ---- position embeddings ---------------------------------------------------------------

torch::Tensor resize_pos_embed(const torch::Tensor& pos_embed, std::array<int64_t, 2> src,
                               std::array<int64_t, 2> dst, const std::string& mode,
                               int64_t num_extra_tokens) {
  if (src == dst) return pos_embed;
  TORCH_CHECK(pos_embed.dim() == 3, "resize_pos_embed: expected [1, L, C], got ",
              pos_embed.sizes());
  const int64_t c = pos_embed.size(2);
  TORCH_CHECK(pos_embed.size(1) == src[0] * src[1] + num_extra_tokens,
              "resize_pos_embed: the length of pos_embed (", pos_embed.size(1), ") does not match ",
              src[0], "*", src[1], "+", num_extra_tokens, "; check img_size");
  auto extra = pos_embed.narrow(1, 0, num_extra_tokens);
  auto grid = pos_embed.narrow(1, num_extra_tokens, src[0] * src[1])
                  .reshape({1, src[0], src[1], c})
                  .permute({0, 3, 1, 2})
                  .to(torch::kFloat32);
  torch::Tensor out;
  if (mode == "bicubic")
    out = torch::upsample_bicubic2d(grid, {dst[0], dst[1]}, false);
  else if (mode == "bilinear")
    out = torch::upsample_bilinear2d(grid, {dst[0], dst[1]}, false);
  else if (mode == "nearest")
    out = torch::upsample_nearest2d(grid, {dst[0], dst[1]});
  else
    throw ValueError("resize_pos_embed: mode must be 'bicubic', 'bilinear' or 'nearest', got '" +
                     mode + "'");
  out = out.flatten(2).transpose(1, 2).to(pos_embed.scalar_type());
  return torch::cat({extra, out}, 1);
}

torch::Tensor build_2d_sincos_position_embedding(std::array<int64_t, 2> patches_resolution,
                                                 int64_t embed_dims, double temperature,
                                                 bool cls_token) {
  TORCH_CHECK(embed_dims % 4 == 0,
              "2-D sin-cos position embedding: embed_dims must be divisible by 4, got ",
              embed_dims);
  const int64_t h = patches_resolution[0], w = patches_resolution[1];
  auto f32 = torch::TensorOptions().dtype(torch::kFloat32);
  // torch.meshgrid(grid_w, grid_h) with 'ij' indexing, flattened: position p holds
  // (w index p / h, h index p % h), as upstream (the same as (row, col) on a square grid).
  auto p = torch::arange(h * w, torch::TensorOptions().dtype(torch::kLong));
  auto gw = torch::div(p, h, "floor").to(torch::kFloat32);
  auto gh = torch::remainder(p, h).to(torch::kFloat32);
  const int64_t pos_dim = embed_dims / 4;
  auto omega = torch::arange(pos_dim, f32) / double(pos_dim);
  omega = 1.0 / torch::pow(torch::tensor(temperature, f32), omega);
  auto out_w = torch::outer(gw, omega), out_h = torch::outer(gh, omega);
  auto pe = torch::cat({out_w.sin(), out_w.cos(), out_h.sin(), out_h.cos()}, 1).unsqueeze(0);
  if (cls_token) pe = torch::cat({torch::zeros({1, 1, embed_dims}, f32), pe}, 1);
  return pe;
}

} // namespace selfsup::plugins::backbones
