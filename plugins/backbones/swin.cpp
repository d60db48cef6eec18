#include "swin.h"

#include <algorithm>
#include <cmath>
#include <sstream>

#include <torch/torch.h>

#include <selfsup/errors.h>

namespace selfsup::plugins::backbones {

namespace {

struct NamedSwinArch {
  std::vector<std::string> names;
  int64_t embed_dims;
  std::vector<int64_t> depths, num_heads;
};

// mmcls 1.0.0rc6's SwinTransformer.arch_zoo.
const std::vector<NamedSwinArch>& swin_arch_zoo() {
  static const std::vector<NamedSwinArch> kZoo{
      {{"t", "tiny"}, 96, {2, 2, 6, 2}, {3, 6, 12, 24}},
      {{"s", "small"}, 96, {2, 2, 18, 2}, {3, 6, 12, 24}},
      {{"b", "base"}, 128, {2, 2, 18, 2}, {4, 8, 16, 32}},
      {{"l", "large"}, 192, {2, 2, 18, 2}, {6, 12, 24, 48}},
  };
  return kZoo;
}

std::string join(const std::vector<int64_t>& v) {
  std::ostringstream s;
  s << "[";
  for (size_t i = 0; i < v.size(); ++i) s << (i ? ", " : "") << v[i];
  s << "]";
  return s.str();
}

std::string lower(std::string s) {
  std::transform(s.begin(), s.end(), s.begin(), [](unsigned char c) { return std::tolower(c); });
  return s;
}

std::array<int64_t, 2> resolve_size(const Config& value) {
  const Json& j = value.json();
  if (j.is_int() && j.as_int() > 0) return {j.as_int(), j.as_int()};
  if (j.is_array() && j.size() == 2 && j.at(0).is_int() && j.at(1).is_int() &&
      j.at(0).as_int() > 0 && j.at(1).as_int() > 0)
    return {j.at(0).as_int(), j.at(1).as_int()};
  value.fail("expected an int > 0 or [h, w], got " + j.dump());
}

/// A stage's entry of stage_cfgs (the SwinBlockSequence keys a config may set).
struct SwinStageCfg {
  Json block_cfgs = Json::object();
  std::optional<int64_t> window_size;
  Json downsample_cfg = Json::object();

  static OptionTable<SwinStageCfg> table() {
    using O = SwinStageCfg;
    using namespace selfsup::check;
    return OptionTable<O>("SwinBlockSequence keys of a stage", O())
        .optional("block_cfgs", &O::block_cfgs,
                  "SwinBlock keys {window_size, ffn_ratio, norm_cfg}: one dict for every block "
                  "or a list of one dict per block")
        .optional("window_size", &O::window_size, "window size of the stage's blocks", gt(0))
        .optional("downsample_cfg", &O::downsample_cfg,
                  "PatchMerging keys over the defaults: only {} (2 x 2, LN, no bias)")
        .rule([](const O& o, const Config& cfg) {
          if (!o.downsample_cfg.is_object() || o.downsample_cfg.size() != 0)
            cfg.fail_key("downsample_cfg", "only {} is supported (PatchMerging 2 x 2 with "
                                           "LayerNorm and no bias), got " +
                                               o.downsample_cfg.dump());
        });
  }
};

} // namespace

// ---- window helpers --------------------------------------------------------------------

torch::Tensor window_partition(const torch::Tensor& x, int64_t w) {
  TORCH_CHECK(x.dim() == 4 && x.size(1) % w == 0 && x.size(2) % w == 0,
              "window_partition: expected [B, H, W, C] with H and W multiples of ", w, ", got ",
              x.sizes());
  const int64_t b = x.size(0), h = x.size(1), wd = x.size(2), c = x.size(3);
  return x.view({b, h / w, w, wd / w, w, c})
      .permute({0, 1, 3, 2, 4, 5})
      .contiguous()
      .view({-1, w, w, c});
}

torch::Tensor window_reverse(const torch::Tensor& windows, int64_t h, int64_t wd, int64_t w) {
  TORCH_CHECK(h % w == 0 && wd % w == 0 && windows.size(0) % ((h / w) * (wd / w)) == 0,
              "window_reverse: ", windows.sizes(), " are not whole ", w, "x", w, " windows of a ",
              h, "x", wd, " grid");
  const int64_t b = windows.size(0) / ((h / w) * (wd / w));
  return windows.view({b, h / w, wd / w, w, w, -1})
      .permute({0, 1, 3, 2, 4, 5})
      .contiguous()
      .view({b, h, wd, -1});
}

torch::Tensor shifted_window_attn_mask(std::array<int64_t, 2> hw, int64_t w, int64_t shift,
                                       const torch::TensorOptions& options) {
  if (shift <= 0) return {};
  TORCH_CHECK(shift < w && hw[0] >= w && hw[1] >= w, "shifted_window_attn_mask: shift ", shift,
              " and window ", w, " do not fit a ", hw[0], "x", hw[1], " grid");
  // Label the three bands of each axis (before the last window, the last window up to the
  // shift, the shifted-in strip); tokens of a window attend only to tokens of the same label.
  auto img = torch::zeros({1, hw[0], hw[1], 1}, options.dtype(torch::kFloat32));
  const std::array<std::array<int64_t, 2>, 3> hs{
      {{0, hw[0] - w}, {hw[0] - w, hw[0] - shift}, {hw[0] - shift, hw[0]}}};
  const std::array<std::array<int64_t, 2>, 3> ws{
      {{0, hw[1] - w}, {hw[1] - w, hw[1] - shift}, {hw[1] - shift, hw[1]}}};
  int64_t label = 0;
  for (const auto& hr : hs)
    for (const auto& wr : ws) {
      img.narrow(1, hr[0], hr[1] - hr[0]).narrow(2, wr[0], wr[1] - wr[0]).fill_(double(label));
      ++label;
    }
  auto windows = window_partition(img, w).view({-1, w * w});
  auto diff = windows.unsqueeze(1) - windows.unsqueeze(2);
  return torch::where(diff != 0, torch::full_like(diff, -100.0), torch::zeros_like(diff))
      .to(options.dtype());
}

torch::Tensor relative_position_index(int64_t wh, int64_t ww) {
  auto lopt = torch::TensorOptions().dtype(torch::kLong);
  auto seq1 = torch::arange(0, (2 * ww - 1) * wh, 2 * ww - 1, lopt);
  auto seq2 = torch::arange(0, ww, 1, lopt);
  auto coords = (seq1.unsqueeze(1) + seq2.unsqueeze(0)).reshape({1, -1});
  return (coords + coords.t()).flip({1}).contiguous();
}

// ---- blocks ----------------------------------------------------------------------------

WindowMSAImpl::WindowMSAImpl(int64_t embed_dims_, int64_t window_size_, int64_t num_heads_,
                             bool qkv_bias)
    : embed_dims(embed_dims_), window_size(window_size_), num_heads(num_heads_) {
  TORCH_CHECK(num_heads > 0 && embed_dims % num_heads == 0, "WindowMSA: embed_dims ", embed_dims,
              " is not divisible by num_heads ", num_heads);
  scale = std::pow(double(embed_dims / num_heads), -0.5);
  relative_position_bias_table =
      register_parameter("relative_position_bias_table",
                         torch::zeros({(2 * window_size - 1) * (2 * window_size - 1), num_heads}));
  relative_position_index = register_buffer(
      "relative_position_index", backbones::relative_position_index(window_size, window_size));
  qkv = register_module(
      "qkv",
      torch::nn::Linear(torch::nn::LinearOptions(embed_dims, 3 * embed_dims).bias(qkv_bias)));
  proj = register_module("proj", torch::nn::Linear(embed_dims, embed_dims));
  // WindowMSA.init_weights.
  trunc_normal_(relative_position_bias_table, 0.0, 0.02, -2.0, 2.0);
}

torch::Tensor WindowMSAImpl::forward(const torch::Tensor& x, const torch::Tensor& mask) {
  const int64_t b = x.size(0), n = x.size(1), c = x.size(2);
  TORCH_CHECK(n == window_size * window_size && c == embed_dims, "WindowMSA: expected [B, ",
              window_size * window_size, ", ", embed_dims, "], got ", x.sizes());
  auto qkv_ = qkv(x).reshape({b, n, 3, num_heads, c / num_heads}).permute({2, 0, 3, 1, 4});
  auto q = qkv_[0] * scale, k = qkv_[1], v = qkv_[2];
  auto attn = torch::matmul(q, k.transpose(-2, -1));
  auto bias = relative_position_bias_table.index_select(0, relative_position_index.view({-1}))
                  .view({n, n, -1})
                  .permute({2, 0, 1});
  attn = attn + bias.unsqueeze(0).to(attn.scalar_type());
  if (mask.defined()) {
    const int64_t nw = mask.size(0);
    attn = attn.view({b / nw, nw, num_heads, n, n}) +
           mask.unsqueeze(1).unsqueeze(0).to(attn.scalar_type());
    attn = attn.view({-1, num_heads, n, n});
  }
  attn = attn.softmax(-1);
  auto out = torch::matmul(attn, v).transpose(1, 2).reshape({b, n, c});
  return proj(out);
}

ShiftWindowMSAImpl::ShiftWindowMSAImpl(int64_t embed_dims, int64_t num_heads, int64_t window_size_,
                                       int64_t shift_size_, double drop_path_rate_,
                                       bool pad_small_map_, bool qkv_bias)
    : window_size(window_size_), shift_size(shift_size_), drop_path_rate(drop_path_rate_),
      pad_small_map(pad_small_map_) {
  TORCH_CHECK(shift_size >= 0 && shift_size < window_size, "ShiftWindowMSA: shift_size ",
              shift_size, " must be in [0, window_size ", window_size, ")");
  w_msa = register_module("w_msa", WindowMSA(embed_dims, window_size, num_heads, qkv_bias));
}

torch::Tensor ShiftWindowMSAImpl::forward(const torch::Tensor& x, std::array<int64_t, 2> hw) {
  const int64_t b = x.size(0), l = x.size(1), c = x.size(2);
  const int64_t h = hw[0], wd = hw[1], w = window_size;
  TORCH_CHECK(l == h * wd, "ShiftWindowMSA: ", l, " tokens do not match the grid ", h, "x", wd);
  int64_t shift = shift_size;
  if (std::min(h, wd) == w)
    shift = pad_small_map ? shift : 0; // a single window: no shift, as the original Swin
  else
    TORCH_CHECK(std::min(h, wd) > w || pad_small_map, "ShiftWindowMSA: the feature map ", h, "x",
                wd, " is smaller than the window size ", w,
                "; set pad_small_map true or decrease the window size");
  auto q = x.view({b, h, wd, c});
  const int64_t pad_r = (w - wd % w) % w, pad_b = (w - h % w) % w;
  if (pad_r || pad_b) q = torch::constant_pad_nd(q, {0, 0, 0, pad_r, 0, pad_b}, 0);
  const int64_t hp = q.size(1), wp = q.size(2);
  if (shift > 0) q = torch::roll(q, {-shift, -shift}, {1, 2});
  auto mask = shifted_window_attn_mask({hp, wp}, w, shift, q.options());
  auto windows = window_partition(q, w).view({-1, w * w, c});
  auto attn = w_msa(windows, mask).view({-1, w, w, c});
  auto out = window_reverse(attn, hp, wp, w);
  if (shift > 0) out = torch::roll(out, {shift, shift}, {1, 2});
  if (hp != h || wp != wd) out = out.narrow(1, 0, h).narrow(2, 0, wd).contiguous();
  return drop_path(out.view({b, h * wd, c}), drop_path_rate, is_training());
}

SwinBlockImpl::SwinBlockImpl(int64_t embed_dims, int64_t num_heads, int64_t window_size, bool shift,
                             double ffn_ratio, double drop_path_rate, bool pad_small_map,
                             const LayerNormCfg& norm_cfg) {
  norm1 = register_module("norm1", norm_cfg.make(embed_dims));
  attn = register_module("attn", ShiftWindowMSA(embed_dims, num_heads, window_size,
                                                shift ? window_size / 2 : 0, drop_path_rate,
                                                pad_small_map, /*qkv_bias=*/true));
  norm2 = register_module("norm2", norm_cfg.make(embed_dims));
  ffn = register_module(
      "ffn", FFN(embed_dims, int64_t(double(embed_dims) * ffn_ratio), 2, 0.0, drop_path_rate));
}

torch::Tensor SwinBlockImpl::forward(const torch::Tensor& x, std::array<int64_t, 2> hw) {
  auto h = x + attn(norm1(x), hw);
  return ffn(norm2(h), h);
}

PatchMergingImpl::PatchMergingImpl(int64_t in_channels_, int64_t out_channels_)
    : in_channels(in_channels_), out_channels(out_channels_) {
  norm =
      register_module("norm", torch::nn::LayerNorm(torch::nn::LayerNormOptions({4 * in_channels})));
  reduction = register_module(
      "reduction",
      torch::nn::Linear(torch::nn::LinearOptions(4 * in_channels, out_channels).bias(false)));
}

std::pair<torch::Tensor, std::array<int64_t, 2>>
PatchMergingImpl::forward(const torch::Tensor& x, std::array<int64_t, 2> hw) {
  const int64_t b = x.size(0), l = x.size(1), c = x.size(2);
  TORCH_CHECK(l == hw[0] * hw[1], "PatchMerging: ", l, " tokens do not match the grid ", hw[0], "x",
              hw[1]);
  auto m = x.view({b, hw[0], hw[1], c}).permute({0, 3, 1, 2});
  // 'corner' adaptive padding: odd sizes get one zero row / column at the bottom / right.
  const int64_t pad_b = hw[0] % 2, pad_r = hw[1] % 2;
  if (pad_b || pad_r) m = torch::constant_pad_nd(m, {0, pad_r, 0, pad_b}, 0);
  const std::array<int64_t, 2> out{(hw[0] + pad_b) / 2, (hw[1] + pad_r) / 2};
  // nn.Unfold's layout: feature c * 4 + kh * 2 + kw.
  auto u = torch::nn::functional::unfold(
               m, torch::nn::functional::UnfoldFuncOptions({2, 2}).stride({2, 2}))
               .transpose(1, 2);
  return {reduction(norm(u)), out};
}

OptionTable<SwinBlockCfg> SwinBlockCfg::table() {
  using O = SwinBlockCfg;
  using namespace selfsup::check;
  return OptionTable<O>("SwinBlock keys of a stage's blocks", O())
      .optional("window_size", &O::window_size, "window size of the block", gt(0))
      .optional("ffn_ratio", &O::ffn_ratio, "FFN hidden width / embed_dims", gt(0))
      .optional("norm_cfg", &O::norm_cfg, "the block's LayerNorms");
}

SwinBlockSequenceImpl::SwinBlockSequenceImpl(int64_t embed_dims_, int64_t num_heads,
                                             const std::vector<SwinBlockCfg>& block_cfgs,
                                             int64_t window_size, bool with_downsample,
                                             const std::vector<double>& drop_paths,
                                             bool pad_small_map)
    : embed_dims(embed_dims_) {
  blocks = register_module("blocks", torch::nn::ModuleList());
  for (size_t i = 0; i < block_cfgs.size(); ++i) {
    const auto& bc = block_cfgs[i];
    blocks->push_back(SwinBlock(embed_dims, num_heads, bc.window_size.value_or(window_size),
                                i % 2 == 1, bc.ffn_ratio.value_or(4.0), drop_paths[i],
                                pad_small_map, bc.norm_cfg.value_or(LayerNormCfg{})));
  }
  if (with_downsample)
    downsample = register_module("downsample", PatchMerging(embed_dims, 2 * embed_dims));
}

std::pair<torch::Tensor, std::array<int64_t, 2>>
SwinBlockSequenceImpl::forward(torch::Tensor x, std::array<int64_t, 2> hw, bool do_downsample) {
  for (const auto& block : *blocks) x = block->as<SwinBlockImpl>()->forward(x, hw);
  if (downsample && do_downsample) return downsample(x, hw);
  return {x, hw};
}

int64_t SwinBlockSequenceImpl::out_channels() const {
  return downsample ? downsample->out_channels : embed_dims;
}

// ---- options ---------------------------------------------------------------------------

OptionTable<SwinTransformerOptions> SwinTransformerOptions::table(const std::string& variant) {
  using O = SwinTransformerOptions;
  using namespace selfsup::check;
  const bool simmim = variant == "simmim";
  O prototype;
  prototype.variant(variant);
  if (simmim) prototype.arch("T");
  const std::string doc =
      simmim ? "MMSelfSup's SimMIMSwinTransformer: a Swin Transformer whose masked patch "
               "embeddings (the batch's 'mask', 1 = masked) are replaced by a learned "
               "mask_token; outputs the maps of out_indices after each stage's downsample"
             : "Swin Transformer as mmcls 1.0.0rc6's SwinTransformer: patch embedding, stages "
               "of (shifted-)window attention blocks with a relative position bias, patch "
               "merging between stages; one normed map [B, C, H, W] per out index";
  auto table =
      OptionTable<O>(doc, prototype)
          .optional("arch", &O::arch_,
                    "tiny, small, base, large (t, s, b, l) or {embed_dims, depths, num_heads}")
          .optional("img_size", &O::img_size_, "input size: int or [h, w]");
  if (!simmim) table.optional("patch_size", &O::patch_size_, "patch size", gt(0));
  table.optional("in_channels", &O::in_channels_, "channels of the input image", gt(0));
  if (!simmim) table.optional("window_size", &O::window_size_, "attention window size", gt(0));
  table.optional("drop_rate", &O::drop_rate_, "dropout after the patch embedding", in(0, 1))
      .optional("drop_path_rate", &O::drop_path_rate_,
                "stochastic depth, rising linearly over all blocks from 0", in(0, 1))
      .optional("out_indices", &O::out_indices_, "stages whose output is returned (0-based)",
                non_empty());
  if (!simmim)
    table.optional("out_after_downsample", &O::out_after_downsample_,
                   "return a stage's map after its downsample");
  table.optional("use_abs_pos_embed", &O::use_abs_pos_embed_,
                 "add a learned absolute position embedding to the patch embedding");
  if (!simmim)
    table.optional("interpolate_mode", &O::interpolate_mode_,
                   "how absolute_pos_embed is resized for another input size",
                   one_of({"bicubic", "bilinear", "nearest"}));
  table
      .optional("with_cp", &O::with_cp_,
                "gradient checkpointing: false only (LibTorch's C++ API has no checkpoint)")
      .optional("frozen_stages", &O::frozen_stages_,
                "-1: none; n >= 0 freezes patch_embed and stages 0..n (and their norms)", ge(-1))
      .optional("norm_eval", &O::norm_eval_,
                "keep BatchNorm layers in eval mode (a Swin has none: no effect, as upstream)")
      .optional("pad_small_map", &O::pad_small_map_,
                "pad a feature map smaller than a window (and shift windows of one-window maps)")
      .optional("norm_cfg", &O::norm_cfg_, "the output norms norm<i> (type 'LN')")
      .optional("stage_cfgs", &O::stage_cfgs_,
                "SwinBlockSequence keys {block_cfgs, window_size, downsample_cfg}: one dict for "
                "every stage or a list of one dict per stage")
      .optional("patch_cfg", &O::patch_cfg_, "PatchEmbed keys over the defaults")
      .optional("init_cfg", &O::init_cfg_, "null (load pretrained weights with load_from instead)");
  return table.rule([](const O& o, const Config& cfg) {
    const SwinArch arch = o.resolve_arch(cfg);
    (void)resolve_size(cfg["img_size"]);
    const auto outs = o.resolve_out_indices(cfg, int64_t(arch.depths.size()));
    // SimMIMSwinTransformer returns maps after the downsample through norms sized for the
    // maps before it: only the last stage (no downsample) fits, upstream as here.
    if (o.variant() == "simmim" && (outs.size() != 1 || outs[0] != int64_t(arch.depths.size()) - 1))
      cfg.fail_key("out_indices", "SimMIMSwinTransformer outputs the last stage only: expected [" +
                                      std::to_string(arch.depths.size() - 1) + "], got " +
                                      join(o.out_indices()));
    (void)o.resolve_block_cfgs(cfg, arch);
    if (o.with_cp())
      cfg.fail_key("with_cp", "expected false: gradient checkpointing is not available in "
                              "LibTorch's C++ API");
    if (o.frozen_stages() >= int64_t(arch.depths.size()))
      cfg.fail_key("frozen_stages", "expected an int in [-1, " +
                                        std::to_string(arch.depths.size() - 1) + "], got " +
                                        std::to_string(o.frozen_stages()));
    if (!o.init_cfg().is_null())
      cfg.fail_key("init_cfg", "expected null: load pretrained weights with load_from (got " +
                                   o.init_cfg().dump() + ")");
  });
}

SwinArch SwinTransformerOptions::resolve_arch(const Config& where) const {
  const Config arch = where.has("arch") ? where["arch"] : Config(arch_, where.path_of("arch"));
  const Json& j = arch.json();
  if (j.is_string()) {
    const std::string name = lower(j.as_string());
    std::string names;
    for (const auto& a : swin_arch_zoo())
      for (const auto& n : a.names) {
        if (n == name) return SwinArch{a.embed_dims, a.depths, a.num_heads};
        names += (names.empty() ? "" : ", ") + n;
      }
    arch.fail("unknown arch '" + j.as_string() + "'; expected one of " + names +
              " or a dict {embed_dims, depths, num_heads}");
  }
  if (!j.is_object())
    arch.fail("expected an arch name or a dict {embed_dims, depths, num_heads}, got " + j.dump());
  for (const auto& k : arch.keys())
    if (k != "embed_dims" && k != "depths" && k != "num_heads")
      arch.fail_key(k, "unknown key; a custom arch has exactly embed_dims, depths, num_heads");
  for (const char* k : {"embed_dims", "depths", "num_heads"})
    if (!arch.has(k)) arch.fail_key(k, "required key of a custom arch is missing");
  SwinArch out;
  out.embed_dims = arch.get<int64_t>("embed_dims");
  out.depths = arch.get<std::vector<int64_t>>("depths");
  out.num_heads = arch.get<std::vector<int64_t>>("num_heads");
  if (out.embed_dims <= 0)
    arch.fail_key("embed_dims", "expected an int > 0, got " + std::to_string(out.embed_dims));
  if (out.depths.empty() ||
      std::any_of(out.depths.begin(), out.depths.end(), [](int64_t d) { return d <= 0; }))
    arch.fail_key("depths", "expected a non-empty list of ints > 0, got " + join(out.depths));
  if (out.num_heads.size() != out.depths.size())
    arch.fail_key("num_heads", "expected one entry per stage (" +
                                   std::to_string(out.depths.size()) + "), got " +
                                   join(out.num_heads));
  for (size_t i = 0; i < out.num_heads.size(); ++i) {
    const int64_t dims = out.embed_dims << i;
    if (out.num_heads[i] <= 0 || dims % out.num_heads[i] != 0)
      arch.fail_key("num_heads", "stage " + std::to_string(i) + " has " + std::to_string(dims) +
                                     " channels, not divisible by " +
                                     std::to_string(out.num_heads[i]) + " heads");
  }
  return out;
}

std::vector<int64_t> SwinTransformerOptions::resolve_out_indices(const Config& where,
                                                                 int64_t num_stages) const {
  const Config c = where.has("out_indices")
                       ? where["out_indices"]
                       : Config(OptionCodec<std::vector<int64_t>>::to_json(out_indices_),
                                where.path_of("out_indices"));
  auto out = out_indices_;
  for (auto i : out)
    if (i < 0 || i >= num_stages)
      c.fail("stage " + std::to_string(i) + " is out of range for " + std::to_string(num_stages) +
             " stages (expected 0.." + std::to_string(num_stages - 1) + "), got " +
             join(out_indices_));
  std::sort(out.begin(), out.end());
  if (std::adjacent_find(out.begin(), out.end()) != out.end())
    c.fail("duplicate stage in " + join(out_indices_));
  return out;
}

std::vector<std::vector<SwinBlockCfg>>
SwinTransformerOptions::resolve_block_cfgs(const Config& where, const SwinArch& arch) const {
  const Config c = where.has("stage_cfgs") ? where["stage_cfgs"]
                                           : Config(stage_cfgs_, where.path_of("stage_cfgs"));
  const size_t n = arch.depths.size();
  std::vector<Config> stage_cfgs;
  if (c.is_object()) {
    stage_cfgs.assign(n, c);
  } else if (c.is_array()) {
    if (c.size() != n)
      c.fail("expected " + std::to_string(n) + " dicts (one per stage), got " +
             std::to_string(c.size()));
    for (size_t i = 0; i < n; ++i) stage_cfgs.push_back(c.at(i));
  } else {
    c.fail("expected a dict (every stage) or a list of one dict per stage, got " + c.json().dump());
  }
  std::vector<std::vector<SwinBlockCfg>> out;
  for (size_t s = 0; s < n; ++s) {
    const auto stage = SwinStageCfg::table().parse(stage_cfgs[s]);
    const Config blocks = stage_cfgs[s].has("block_cfgs")
                              ? stage_cfgs[s]["block_cfgs"]
                              : Config(Json::object(), stage_cfgs[s].path_of("block_cfgs"));
    const auto depth = size_t(arch.depths[s]);
    std::vector<SwinBlockCfg> cfgs;
    if (blocks.is_object()) {
      cfgs.assign(depth, SwinBlockCfg::table().parse(blocks));
    } else if (blocks.is_array()) {
      if (blocks.size() != depth)
        blocks.fail("expected " + std::to_string(depth) + " dicts (one per block of stage " +
                    std::to_string(s) + "), got " + std::to_string(blocks.size()));
      for (size_t i = 0; i < depth; ++i) cfgs.push_back(SwinBlockCfg::table().parse(blocks.at(i)));
    } else {
      blocks.fail("expected a dict (every block) or a list of one dict per block, got " +
                  blocks.json().dump());
    }
    for (auto& bc : cfgs)
      if (!bc.window_size) bc.window_size = stage.window_size.value_or(window_size_);
    out.push_back(std::move(cfgs));
  }
  return out;
}

Config SwinTransformerOptions::as_config(const std::string& path) const {
  return Config(table(variant_).to_json(*this), path);
}

// ---- SwinTransformer -------------------------------------------------------------------

SwinTransformer::SwinTransformer(const SwinTransformerOptions& options_) : options(options_) {
  const Config where = options.as_config(options.variant() == "simmim" ? "SimMIMSwinTransformer"
                                                                       : "SwinTransformer");
  arch_ = options.resolve_arch(where);
  img_size_ = resolve_size(where["img_size"]);
  const auto num_stages = int64_t(arch_.depths.size());
  out_indices_ = options.resolve_out_indices(where, num_stages);
  const auto block_cfgs = options.resolve_block_cfgs(where, arch_);
  TORCH_CHECK(!options.with_cp(), "SwinTransformer: with_cp is not supported");

  // patch_embed: Conv2d kernel = stride = patch_size, LayerNorm, over patch_cfg.
  PatchEmbedOptions pe;
  const PatchCfg& pc = options.patch_cfg();
  const int64_t p = options.patch_size();
  pe.in_channels = options.in_channels();
  pe.embed_dims = arch_.embed_dims;
  pe.kernel_size = {pc.kernel_size.value_or(p), pc.kernel_size.value_or(p)};
  pe.stride = {pc.stride.value_or(p), pc.stride.value_or(p)};
  pe.dilation = {pc.dilation, pc.dilation};
  if (pc.padding.is_string()) {
    pe.padding_mode = pc.padding.as_string();
  } else {
    pe.padding_mode = "";
    pe.padding = pc.padding.as_int();
  }
  pe.bias = pc.bias.value_or(true);
  pe.norm_cfg = pc.norm_cfg.value_or(LayerNormCfg{});
  pe.input_size = img_size_;
  patch_embed = register_module("patch_embed", PatchEmbed(pe));
  patch_resolution_ = patch_embed->init_out_size();

  if (options.use_abs_pos_embed())
    absolute_pos_embed = register_parameter(
        "absolute_pos_embed",
        torch::zeros({1, patch_resolution_[0] * patch_resolution_[1], arch_.embed_dims}));

  // torch.linspace(0, drop_path_rate, total_depth) (float32, as upstream).
  int64_t total = 0;
  for (auto d : arch_.depths) total += d;
  const auto dpr_t = torch::linspace(0.0, options.drop_path_rate(), total, torch::kFloat32);
  std::vector<double> dpr;
  for (int64_t i = 0; i < total; ++i) dpr.push_back(dpr_t[i].item<double>());

  stages = register_module("stages", torch::nn::ModuleList());
  stage_channels_ = {arch_.embed_dims};
  size_t next = 0;
  for (int64_t i = 0; i < num_stages; ++i) {
    const auto depth = size_t(arch_.depths[i]);
    std::vector<double> drop_paths(dpr.begin() + long(next), dpr.begin() + long(next + depth));
    next += depth;
    auto stage = SwinBlockSequence(stage_channels_.back(), arch_.num_heads[i], block_cfgs[i],
                                   options.window_size(), i < num_stages - 1, drop_paths,
                                   options.pad_small_map());
    stages->push_back(stage);
    stage_channels_.push_back(stage->out_channels());
  }
  for (auto i : out_indices_) {
    const int64_t c = options.out_after_downsample() ? stage_channels_[i + 1] : stage_channels_[i];
    norms.push_back(register_module("norm" + std::to_string(i), options.norm_cfg().make(c)));
  }
  if (options.use_abs_pos_embed()) trunc_normal_(absolute_pos_embed, 0.0, 0.02, -2.0, 2.0);
  if (options.frozen_stages() >= 0) freeze_stages();
}

std::vector<int64_t> SwinTransformer::out_channels() const {
  std::vector<int64_t> out;
  for (auto i : out_indices_)
    out.push_back(options.out_after_downsample() ? stage_channels_[i + 1] : stage_channels_[i]);
  return out;
}

torch::nn::LayerNorm& SwinTransformer::norm_of(int64_t stage) {
  const auto it = std::find(out_indices_.begin(), out_indices_.end(), stage);
  TORCH_CHECK(it != out_indices_.end(), "SwinTransformer: stage ", stage, " is no out index");
  return norms[size_t(it - out_indices_.begin())];
}

torch::Tensor SwinTransformer::to_map(const torch::Tensor& out, std::array<int64_t, 2> hw) {
  return out.view({-1, hw[0], hw[1], out.size(2)}).permute({0, 3, 1, 2}).contiguous();
}

std::vector<torch::Tensor> SwinTransformer::forward(const torch::Tensor& x) {
  auto [h, hw] = patch_embed(x);
  if (absolute_pos_embed.defined())
    h = h +
        resize_pos_embed(absolute_pos_embed, patch_resolution_, hw, options.interpolate_mode(), 0)
            .to(h.scalar_type());
  h = torch::dropout(h, options.drop_rate(), is_training());
  std::vector<torch::Tensor> outs;
  for (int64_t i = 0; i < int64_t(stages->size()); ++i) {
    auto* stage = stages[i]->as<SwinBlockSequenceImpl>();
    std::tie(h, hw) = stage->forward(h, hw, options.out_after_downsample());
    if (std::binary_search(out_indices_.begin(), out_indices_.end(), i))
      outs.push_back(to_map(norm_of(i)(h), hw));
    if (stage->downsample && !options.out_after_downsample())
      std::tie(h, hw) = stage->downsample(h, hw);
  }
  return outs;
}

void SwinTransformer::freeze_stages() {
  frozen_modules_.clear();
  frozen_modules_.push_back(patch_embed.get());
  for (auto& p : patch_embed->parameters()) p.set_requires_grad(false);
  for (int64_t i = 0; i <= options.frozen_stages(); ++i) {
    auto* m = stages[i].get();
    frozen_modules_.push_back(m);
    for (auto& p : m->parameters()) p.set_requires_grad(false);
    if (std::binary_search(out_indices_.begin(), out_indices_.end(), i))
      for (auto& p : norm_of(i)->parameters()) p.set_requires_grad(false);
  }
  for (auto* m : frozen_modules_) m->eval();
}

void SwinTransformer::train(bool on) {
  torch::nn::Module::train(on);
  for (auto* m : frozen_modules_) m->eval();
}

void SwinTransformer::pretty_print(std::ostream& stream) const {
  stream << "selfsup::plugins::backbones::SwinTransformer(embed_dims=" << arch_.embed_dims
         << ", depths=" << join(arch_.depths) << ", num_heads=" << join(arch_.num_heads)
         << ", patch_resolution=[" << patch_resolution_[0] << ", " << patch_resolution_[1]
         << "], out_indices=" << join(out_indices_) << ")";
}

std::shared_ptr<selfsup::Backbone> make_swin_transformer(const Config& cfg) {
  return std::make_shared<SwinTransformer>(SwinTransformerOptions::table("mmcls").parse(cfg));
}

} // namespace selfsup::plugins::backbones
