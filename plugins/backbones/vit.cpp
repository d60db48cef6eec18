#include "vit.h"

#include <algorithm>
#include <cmath>
#include <sstream>

#include <torch/torch.h>

#include <selfsup/errors.h>

namespace selfsup::plugins::backbones {

namespace {

struct NamedArch {
  std::vector<std::string> names;
  ViTArch arch;
};

// mmcls 1.0.0rc6's VisionTransformer.arch_zoo; MoCoV3ViT adds 'mocov3-small'.
const std::vector<NamedArch>& arch_zoo() {
  static const std::vector<NamedArch> kZoo{
      {{"s", "small"}, {768, 8, 8, 768 * 3}},
      {{"b", "base"}, {768, 12, 12, 3072}},
      {{"l", "large"}, {1024, 24, 16, 4096}},
      {{"h", "huge"}, {1280, 32, 16, 5120}},
      {{"eva-g", "eva-giant"}, {1408, 40, 16, 6144}},
      {{"deit-t", "deit-tiny"}, {192, 12, 3, 192 * 4}},
      {{"deit-s", "deit-small"}, {384, 12, 6, 384 * 4}},
      {{"deit-b", "deit-base"}, {768, 12, 12, 768 * 4}},
  };
  return kZoo;
}
const NamedArch kMoCoV3Small{{"mocov3-s", "mocov3-small"}, {384, 12, 12, 1536}};

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

} // namespace

// ---- options ---------------------------------------------------------------------------

OptionTable<ViTLayerCfg> ViTLayerCfg::table() {
  using O = ViTLayerCfg;
  using namespace selfsup::check;
  return OptionTable<O>("TransformerEncoderLayer keys overriding the backbone's for a layer", O())
      .optional("num_heads", &O::num_heads, "attention heads", gt(0))
      .optional("feedforward_channels", &O::feedforward_channels, "FFN hidden width", gt(0))
      .optional("num_fcs", &O::num_fcs, "FFN Linear layers", ge(2))
      .optional("drop_rate", &O::drop_rate, "dropout after attention proj and FFN", in(0, 1))
      .optional("attn_drop_rate", &O::attn_drop_rate, "dropout of the attention weights", in(0, 1))
      .optional("drop_path_rate", &O::drop_path_rate, "stochastic depth of this layer", in(0, 1))
      .optional("qkv_bias", &O::qkv_bias, "bias of the qkv Linear")
      .optional("norm_cfg", &O::norm_cfg, "the layer's LayerNorms")
      .optional("act_cfg", &O::act_cfg, "FFN activation: {type: 'GELU'} only")
      .rule([](const O& o, const Config& cfg) {
        const Json* type = o.act_cfg.is_object() ? o.act_cfg.find("type") : nullptr;
        if (!type || o.act_cfg.size() != 1 || !type->is_string() || type->as_string() != "GELU")
          cfg.fail_key("act_cfg", "expected {\"type\": \"GELU\"}, got " + o.act_cfg.dump());
      });
}

OptionTable<VisionTransformerOptions> VisionTransformerOptions::table(const std::string& variant) {
  using O = VisionTransformerOptions;
  using namespace selfsup::check;
  const bool mocov3 = variant == "mocov3";
  O prototype;
  prototype.variant(variant);
  std::string doc =
      mocov3 ? "MMSelfSup's MoCoV3ViT: a ViT with a fixed 2-D sin-cos position embedding and "
               "MoCo v3's init (optionally a frozen random patch projection)"
             : "Vision Transformer as mmcls 1.0.0rc6's VisionTransformer (pre-norm blocks, "
               "class token, learned position embedding resized by interpolation); outputs per "
               "out index: patch tokens [B, C, H, W] (or their normed mean with avg_token), "
               "then the class token [B, C] with output_cls_token";
  auto table =
      OptionTable<O>(doc, prototype)
          .optional("arch", &O::arch_,
                    std::string("arch name (small, base, large, huge, eva-giant, deit-tiny, "
                                "deit-small, deit-base, short forms s, b, l, h, ...") +
                        (mocov3 ? ", mocov3-small" : "") +
                        ") or {embed_dims, num_layers, num_heads, feedforward_channels}")
          .optional("img_size", &O::img_size_,
                    "input size the position embedding is made for: "
                    "int or [h, w]")
          .optional("patch_size", &O::patch_size_, "patch size: int or [h, w]")
          .optional("in_channels", &O::in_channels_, "channels of the input image", gt(0))
          .optional("out_indices", &O::out_indices_,
                    "layers whose output is returned: int or list, negative from the end")
          .optional("drop_rate", &O::drop_rate_,
                    "dropout after the position embedding and in "
                    "the blocks",
                    in(0, 1))
          .optional("drop_path_rate", &O::drop_path_rate_,
                    "stochastic depth, rising linearly from 0 at the first layer", in(0, 1))
          .optional("qkv_bias", &O::qkv_bias_, "bias of the qkv Linears")
          .optional("norm_cfg", &O::norm_cfg_, "the LayerNorms (type 'LN')")
          .optional("final_norm", &O::final_norm_, "LayerNorm 'ln1' after the last layer")
          .optional("with_cls_token", &O::with_cls_token_,
                    "feed the class token through the layers")
          .optional("avg_token", &O::avg_token_,
                    "return the LayerNorm'd ('ln2') mean of the patch tokens instead of the map")
          .optional("frozen_stages", &O::frozen_stages_,
                    mocov3 ? "-1: none; >= 0 freezes patch_embed, cls_token and pos_embed; n also "
                             "layers 1..n (and the final norm at n = num_layers)"
                           : "-1 or 0: none; n > 0 freezes pos_embed, patch_embed, cls_token and "
                             "layers 1..n (and the final norm at n = num_layers)",
                    ge(-1))
          .optional("output_cls_token", &O::output_cls_token_,
                    "also return the class token (needs with_cls_token)")
          .optional("interpolate_mode", &O::interpolate_mode_,
                    "how pos_embed is resized for another input size",
                    one_of({"bicubic", "bilinear", "nearest"}))
          .optional("patch_cfg", &O::patch_cfg_, "PatchEmbed keys over the defaults")
          .optional("layer_cfgs", &O::layer_cfgs_,
                    "TransformerEncoderLayer keys: one dict for all layers or a list per layer")
          .optional("pre_norm", &O::pre_norm_,
                    "LayerNorm 'pre_norm' before the layers (and no patch-projection bias)")
          .optional("init_cfg", &O::init_cfg_,
                    "null (load pretrained weights with load_from instead)");
  if (mocov3)
    table
        .optional("stop_grad_conv1", &O::stop_grad_conv1_,
                  "freeze the patch projection at its random init")
        .optional("norm_eval", &O::norm_eval_,
                  "keep BatchNorm layers in eval mode (a ViT has none)");
  return table.rule([](const O& o, const Config& cfg) {
    const ViTArch arch = o.resolve_arch(cfg);
    (void)resolve_pair(cfg["img_size"]);
    (void)resolve_pair(cfg["patch_size"]);
    (void)o.resolve_out_indices(cfg, arch.num_layers);
    (void)o.resolve_layer_cfgs(cfg, arch.num_layers);
    if (o.output_cls_token() && !o.with_cls_token())
      cfg.fail_key("output_cls_token", "needs with_cls_token true (it is false)");
    if (o.frozen_stages() > arch.num_layers)
      cfg.fail_key("frozen_stages", "expected an int in [-1, " + std::to_string(arch.num_layers) +
                                        "] (num_layers), got " + std::to_string(o.frozen_stages()));
    if (!o.init_cfg().is_null())
      cfg.fail_key("init_cfg", "expected null: load pretrained weights with load_from "
                               "(got " +
                                   o.init_cfg().dump() + ")");
  });
}

std::array<int64_t, 2> VisionTransformerOptions::resolve_pair(const Config& value) {
  const Json& j = value.json();
  if (j.is_int()) {
    if (j.as_int() <= 0) value.fail("expected an int > 0 or [h, w], got " + j.dump());
    return {j.as_int(), j.as_int()};
  }
  if (j.is_array() && j.size() == 2 && j.at(0).is_int() && j.at(1).is_int() &&
      j.at(0).as_int() > 0 && j.at(1).as_int() > 0)
    return {j.at(0).as_int(), j.at(1).as_int()};
  value.fail("expected an int > 0 or [h, w], got " + j.dump());
}

ViTArch VisionTransformerOptions::resolve_arch(const Config& where) const {
  const Config arch = where.has("arch") ? where["arch"] : Config(arch_, where.path_of("arch"));
  const Json& j = arch.json();
  if (j.is_string()) {
    const std::string name = lower(j.as_string());
    std::vector<const NamedArch*> zoo;
    for (const auto& a : arch_zoo()) zoo.push_back(&a);
    if (variant_ == "mocov3") zoo.push_back(&kMoCoV3Small);
    std::string names;
    for (const auto* a : zoo)
      for (const auto& n : a->names) {
        if (n == name) return a->arch;
        names += (names.empty() ? "" : ", ") + n;
      }
    arch.fail("unknown arch '" + j.as_string() + "'; expected one of " + names +
              " or a dict {embed_dims, num_layers, num_heads, feedforward_channels}");
  }
  if (!j.is_object())
    arch.fail("expected an arch name or a dict {embed_dims, num_layers, num_heads, "
              "feedforward_channels}, got " +
              j.dump());
  ViTArch out{};
  const std::pair<const char*, int64_t*> keys[] = {
      {"embed_dims", &out.embed_dims},
      {"num_layers", &out.num_layers},
      {"num_heads", &out.num_heads},
      {"feedforward_channels", &out.feedforward_channels}};
  for (const auto& k : arch.keys()) {
    bool known = false;
    for (const auto& [name, dst] : keys) known = known || k == name;
    if (!known)
      arch.fail_key(k, "unknown key; a custom arch has embed_dims, num_layers, num_heads, "
                       "feedforward_channels");
  }
  for (const auto& [name, dst] : keys) {
    if (!arch.has(name)) arch.fail_key(name, "required key of a custom arch is missing");
    *dst = arch.get<int64_t>(name);
    if (*dst <= 0) arch.fail_key(name, "expected an int > 0, got " + std::to_string(*dst));
  }
  if (out.embed_dims % out.num_heads != 0)
    arch.fail_key("num_heads", "embed_dims " + std::to_string(out.embed_dims) +
                                   " is not divisible by num_heads " +
                                   std::to_string(out.num_heads));
  return out;
}

std::vector<int64_t> VisionTransformerOptions::resolve_out_indices(const Config& where,
                                                                   int64_t num_layers) const {
  const Config c = where.has("out_indices") ? where["out_indices"]
                                            : Config(out_indices_, where.path_of("out_indices"));
  std::vector<int64_t> raw;
  if (c.json().is_int())
    raw.push_back(c.json().as_int());
  else if (c.is_array() && c.size() > 0)
    raw = c.as<std::vector<int64_t>>();
  else
    c.fail("expected an int or a non-empty list of ints, got " + c.json().dump());
  std::vector<int64_t> out;
  for (auto i : raw) {
    const int64_t j = i < 0 ? num_layers + i : i;
    // rc6 also accepts num_layers itself, which then never outputs anything: refused here.
    if (j < 0 || j >= num_layers)
      c.fail("index " + std::to_string(i) + " is out of range for " + std::to_string(num_layers) +
             " layers (expected -" + std::to_string(num_layers) + ".." +
             std::to_string(num_layers - 1) + "), got " + join(raw));
    out.push_back(j);
  }
  std::sort(out.begin(), out.end());
  if (std::adjacent_find(out.begin(), out.end()) != out.end())
    c.fail("duplicate layer in " + join(raw));
  return out;
}

std::vector<ViTLayerCfg> VisionTransformerOptions::resolve_layer_cfgs(const Config& where,
                                                                      int64_t num_layers) const {
  const Config c = where.has("layer_cfgs") ? where["layer_cfgs"]
                                           : Config(layer_cfgs_, where.path_of("layer_cfgs"));
  if (c.is_object()) return std::vector<ViTLayerCfg>(num_layers, ViTLayerCfg::table().parse(c));
  if (!c.is_array())
    c.fail("expected a dict (every layer) or a list of one dict per layer, got " + c.json().dump());
  if (int64_t(c.size()) != num_layers)
    c.fail("expected " + std::to_string(num_layers) + " dicts (one per layer), got " +
           std::to_string(c.size()));
  std::vector<ViTLayerCfg> out;
  for (size_t i = 0; i < c.size(); ++i) out.push_back(ViTLayerCfg::table().parse(c.at(i)));
  return out;
}

Config VisionTransformerOptions::as_config(const std::string& path) const {
  return Config(table(variant_).to_json(*this), path);
}

// ---- VisionTransformer -----------------------------------------------------------------

VisionTransformer::VisionTransformer(const VisionTransformerOptions& options_) : options(options_) {
  const Config where =
      options.as_config(options.variant() == "mocov3" ? "MoCoV3ViT" : "VisionTransformer");
  arch_ = options.resolve_arch(where);
  const auto img_size = VisionTransformerOptions::resolve_pair(where["img_size"]);
  const auto patch = VisionTransformerOptions::resolve_pair(where["patch_size"]);
  const auto layer_cfgs = options.resolve_layer_cfgs(where, arch_.num_layers);
  out_indices_ = options.resolve_out_indices(where, arch_.num_layers);
  TORCH_CHECK(!options.output_cls_token() || options.with_cls_token(),
              "VisionTransformer: output_cls_token needs with_cls_token");
  const int64_t d = arch_.embed_dims;

  // Registration order = upstream's state_dict order: cls_token, pos_embed, patch_embed,
  // layers, pre_norm, ln1, ln2.
  PatchEmbedOptions pe;
  const PatchCfg& pc = options.patch_cfg();
  pe.in_channels = options.in_channels();
  pe.embed_dims = d;
  pe.kernel_size =
      pc.kernel_size ? std::array<int64_t, 2>{*pc.kernel_size, *pc.kernel_size} : patch;
  pe.stride = pc.stride ? std::array<int64_t, 2>{*pc.stride, *pc.stride} : patch;
  pe.dilation = {pc.dilation, pc.dilation};
  if (pc.padding.is_string()) {
    pe.padding_mode = pc.padding.as_string();
  } else {
    pe.padding_mode = "";
    pe.padding = pc.padding.as_int();
  }
  pe.bias = pc.bias.value_or(!options.pre_norm());
  pe.norm_cfg = pc.norm_cfg;
  pe.input_size = img_size;
  auto embed = PatchEmbed(pe);
  patch_resolution_ = embed->init_out_size();
  const int64_t num_patches = patch_resolution_[0] * patch_resolution_[1];

  cls_token = register_parameter("cls_token", torch::zeros({1, 1, d}));
  pos_embed = register_parameter("pos_embed", torch::zeros({1, num_patches + kNumExtraTokens, d}));
  patch_embed = register_module("patch_embed", embed);

  layers = register_module("layers", torch::nn::ModuleList());
  for (int64_t i = 0; i < arch_.num_layers; ++i) {
    const ViTLayerCfg& lc = layer_cfgs[i];
    // np.linspace(0, drop_path_rate, num_layers)
    const double dpr = arch_.num_layers > 1
                           ? options.drop_path_rate() * double(i) / double(arch_.num_layers - 1)
                           : 0.0;
    TransformerEncoderLayerOptions lo(d, lc.num_heads.value_or(arch_.num_heads),
                                      lc.feedforward_channels.value_or(arch_.feedforward_channels));
    lo.drop_rate(lc.drop_rate.value_or(options.drop_rate()))
        .attn_drop_rate(lc.attn_drop_rate.value_or(0.0))
        .drop_path_rate(lc.drop_path_rate.value_or(dpr))
        .num_fcs(lc.num_fcs.value_or(2))
        .qkv_bias(lc.qkv_bias.value_or(options.qkv_bias()))
        .norm_cfg(lc.norm_cfg.value_or(options.norm_cfg()));
    TORCH_CHECK(d % lo.num_heads() == 0, "VisionTransformer: layer ", i, ": embed_dims ", d,
                " is not divisible by num_heads ", lo.num_heads());
    layers->push_back(TransformerEncoderLayer(lo));
  }
  if (options.pre_norm()) pre_norm_ln = register_module("pre_norm", options.norm_cfg().make(d));
  if (options.final_norm()) ln1 = register_module("ln1", options.norm_cfg().make(d));
  if (options.avg_token()) ln2 = register_module("ln2", options.norm_cfg().make(d));

  for (size_t i = 0; i < out_indices_.size(); ++i) {
    out_channels_.push_back(d);
    if (options.output_cls_token()) out_channels_.push_back(d);
  }

  // mmcls's init_weights: pos_embed ~ trunc_normal(std 0.02) (cls_token stays 0, the FFNs
  // were initialised by their layers).
  trunc_normal_(pos_embed, 0.0, 0.02, -2.0, 2.0);
  if (options.frozen_stages() > 0) freeze_stages();
}

void VisionTransformer::freeze_stages() {
  frozen_modules_.clear();
  pos_embed.set_requires_grad(false);
  frozen_modules_.push_back(patch_embed.get());
  for (auto& p : patch_embed->parameters()) p.set_requires_grad(false);
  cls_token.set_requires_grad(false);
  for (int64_t i = 1; i <= options.frozen_stages(); ++i) {
    auto* m = layers[i - 1].get();
    frozen_modules_.push_back(m);
    for (auto& p : m->parameters()) p.set_requires_grad(false);
  }
  if (options.frozen_stages() == arch_.num_layers && options.final_norm()) {
    frozen_modules_.push_back(ln1.get());
    for (auto& p : ln1->parameters()) p.set_requires_grad(false);
  }
  for (auto* m : frozen_modules_) m->eval();
}

void VisionTransformer::train(bool on) {
  torch::nn::Module::train(on);
  for (auto* m : frozen_modules_) m->eval();
}

std::vector<torch::Tensor> VisionTransformer::forward(const torch::Tensor& x) {
  const int64_t b = x.size(0);
  auto [tokens, grid] = patch_embed(x);
  auto h = torch::cat({cls_token.expand({b, -1, -1}).to(tokens.scalar_type()), tokens}, 1);
  h = h + resize_pos_embed(pos_embed, patch_resolution_, grid, options.interpolate_mode(),
                           kNumExtraTokens)
              .to(h.scalar_type());
  h = torch::dropout(h, options.drop_rate(), is_training());
  if (pre_norm_ln) h = pre_norm_ln(h);
  if (!options.with_cls_token()) h = h.narrow(1, 1, h.size(1) - 1);

  std::vector<torch::Tensor> outs;
  const auto n_layers = static_cast<int64_t>(layers->size());
  for (int64_t i = 0; i < n_layers; ++i) {
    h = layers[i]->as<TransformerEncoderLayerImpl>()->forward(h);
    if (i == n_layers - 1 && ln1) h = ln1(h);
    if (!std::binary_search(out_indices_.begin(), out_indices_.end(), i)) continue;
    const int64_t c = h.size(2);
    auto patches = options.with_cls_token() ? h.narrow(1, 1, h.size(1) - 1) : h;
    torch::Tensor patch_token;
    if (options.avg_token())
      patch_token = ln2(patches.mean(1));
    else
      patch_token = patches.reshape({b, grid[0], grid[1], c}).permute({0, 3, 1, 2});
    outs.push_back(patch_token);
    if (options.output_cls_token()) outs.push_back(h.select(1, 0));
  }
  return outs;
}

void VisionTransformer::pretty_print(std::ostream& stream) const {
  stream << "selfsup::plugins::backbones::VisionTransformer(embed_dims=" << arch_.embed_dims
         << ", num_layers=" << arch_.num_layers << ", num_heads=" << arch_.num_heads
         << ", feedforward_channels=" << arch_.feedforward_channels << ", patch_resolution=["
         << patch_resolution_[0] << ", " << patch_resolution_[1]
         << "], out_indices=" << join(out_indices_)
         << ", output_cls_token=" << options.output_cls_token()
         << ", avg_token=" << options.avg_token() << ")";
}

// ---- MoCoV3ViT -------------------------------------------------------------------------

namespace {
VisionTransformerOptions without_frozen_stages(VisionTransformerOptions o) {
  // Upstream keeps frozen_stages to itself: the mmcls base is built with -1.
  o.frozen_stages(-1);
  return o;
}
} // namespace

MoCoV3ViT::MoCoV3ViT(const VisionTransformerOptions& options_)
    : VisionTransformer(without_frozen_stages(options_)) {
  options = options_;
  torch::NoGradGuard no_grad;
  // MoCoV3ViT.init_weights (after mmcls's).
  pos_embed.copy_(
      build_2d_sincos_position_embedding(patch_resolution(), embed_dims(), 10000., true));
  pos_embed.set_requires_grad(false);
  const auto patch =
      VisionTransformerOptions::resolve_pair(options.as_config("MoCoV3ViT")["patch_size"]);
  const double val = std::sqrt(6.0 / double(3 * patch[0] * patch[1] + embed_dims()));
  torch::nn::init::uniform_(patch_embed->projection->weight, -val, val);
  if (patch_embed->projection->bias.defined()) patch_embed->projection->bias.zero_();
  for (const auto& item : named_modules("", /*include_self=*/false)) {
    auto* linear = item.value()->as<torch::nn::Linear>();
    if (!linear) continue;
    if (item.key().find("qkv") != std::string::npos) {
      const double v = std::sqrt(6.0 / double(linear->weight.size(0) / 3 + linear->weight.size(1)));
      torch::nn::init::uniform_(linear->weight, -v, v);
    } else {
      torch::nn::init::xavier_uniform_(linear->weight);
    }
    if (linear->bias.defined()) linear->bias.zero_();
  }
  torch::nn::init::normal_(cls_token, 0.0, 1e-6);

  if (options.stop_grad_conv1()) {
    patch_embed->projection->weight.set_requires_grad(false);
    if (patch_embed->projection->bias.defined())
      patch_embed->projection->bias.set_requires_grad(false);
  }
  freeze_stages();
}

void MoCoV3ViT::freeze_stages() {
  frozen_modules_.clear();
  if (options.frozen_stages() >= 0) {
    frozen_modules_.push_back(patch_embed.get());
    for (auto& p : patch_embed->parameters()) p.set_requires_grad(false);
    cls_token.set_requires_grad(false);
    pos_embed.set_requires_grad(false);
  }
  for (int64_t i = 1; i <= options.frozen_stages(); ++i) {
    auto* m = layers[i - 1].get();
    frozen_modules_.push_back(m);
    for (auto& p : m->parameters()) p.set_requires_grad(false);
    if (i == num_layers() && ln1)
      for (auto& p : ln1->parameters()) p.set_requires_grad(false);
  }
  for (auto* m : frozen_modules_) m->eval();
}

void MoCoV3ViT::pretty_print(std::ostream& stream) const {
  stream << "selfsup::plugins::backbones::MoCoV3ViT(embed_dims=" << embed_dims()
         << ", num_layers=" << num_layers() << ", patch_resolution=[" << patch_resolution()[0]
         << ", " << patch_resolution()[1] << "], stop_grad_conv1=" << options.stop_grad_conv1()
         << ", frozen_stages=" << options.frozen_stages() << ")";
}

// ---- registration ----------------------------------------------------------------------

std::shared_ptr<selfsup::Backbone> make_vision_transformer(const Config& cfg) {
  return std::make_shared<VisionTransformer>(VisionTransformerOptions::table("mmcls").parse(cfg));
}

std::shared_ptr<selfsup::Backbone> make_mocov3_vit(const Config& cfg) {
  return std::make_shared<MoCoV3ViT>(VisionTransformerOptions::table("mocov3").parse(cfg));
}

} // namespace selfsup::plugins::backbones
