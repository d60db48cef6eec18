// VisionTransformer / MoCoV3ViT (backbones plugin): mmcls's state_dict names, outputs equal to
// upstream mmcls 1.0.0rc6 and MMSelfSup 1.0 on the same weights and inputs (fixture made by
// tests/fixtures/mocov3/make_mocov3_fixture.py), position-embedding interpolation, the 2-D
// sin-cos embedding, MoCo v3's init and frozen parts, and config errors naming the JSON path.
#include <gtest/gtest.h>

#include <cmath>
#include <fstream>
#include <iterator>
#include <memory>
#include <string>
#include <vector>

#include <torch/torch.h>

#include <selfsup/config.h>
#include <selfsup/errors.h>
#include <selfsup/interfaces/modules.h>
#include <selfsup/json.h>
#include <selfsup/registry.h>

#include "test_support.h"

namespace selfsup {
namespace {

std::shared_ptr<Backbone> make_backbone(const std::string& json,
                                        const std::string& path = "model.backbone") {
  test::load_plugins();
  return build<Backbone>(Config(Json::parse(json, "test"), path));
}

const c10::Dict<c10::IValue, c10::IValue>& reference() {
  static const auto dict = [] {
    std::ifstream in(std::string(SELFSUP_SOURCE_DIR) + "/tests/fixtures/mocov3/mocov3_reference.pt",
                     std::ios::binary);
    std::vector<char> bytes((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
    return torch::pickle_load(bytes).toGenericDict();
  }();
  return dict;
}

torch::Tensor fixture(const std::string& key) {
  const auto& d = reference();
  auto it = d.find(c10::IValue(key));
  if (it == d.end()) throw std::runtime_error("fixture has no '" + key + "'");
  return it->value().toTensor();
}

// Copies every '<prefix>.<name>' tensor of the fixture into the module's parameter or buffer
// of that name; every parameter and buffer must be there (the names line up with upstream).
void load_reference(torch::nn::Module& m, const std::string& prefix) {
  torch::NoGradGuard no_grad;
  for (auto& p : m.named_parameters()) p.value().copy_(fixture(prefix + "." + p.key()));
  for (auto& b : m.named_buffers()) b.value().copy_(fixture(prefix + "." + b.key()));
}

void expect_close(const torch::Tensor& ours, const torch::Tensor& theirs, double rtol = 1e-5,
                  double atol = 1e-6) {
  ASSERT_EQ(ours.sizes(), theirs.sizes());
  const double err = (ours - theirs).abs().max().item<double>();
  const double scale = theirs.abs().max().item<double>();
  EXPECT_LE(err, atol + rtol * scale) << "max abs error " << err << " at scale " << scale;
}

const char* kTinyArch =
    R"("arch": {"embed_dims": 16, "num_layers": 2, "num_heads": 2, "feedforward_channels": 32})";

std::string tiny_vit(const std::string& type, const std::string& extra) {
  return std::string(R"({"type": ")") + type + "\", " + kTinyArch + ", " + extra + "}";
}

} // namespace

TEST(VisionTransformerTest, StateDictNamesAreMmclsOnes) {
  auto vit = make_backbone(tiny_vit("VisionTransformer", R"("img_size": 8, "patch_size": 4,
      "avg_token": true, "pre_norm": true)"));
  std::vector<std::string> names;
  for (const auto& p : vit->named_parameters()) names.push_back(p.key());
  const std::vector<std::string> expected{"cls_token",
                                          "pos_embed",
                                          "patch_embed.projection.weight",
                                          "layers.0.ln1.weight",
                                          "layers.0.ln1.bias",
                                          "layers.0.attn.qkv.weight",
                                          "layers.0.attn.qkv.bias",
                                          "layers.0.attn.proj.weight",
                                          "layers.0.attn.proj.bias",
                                          "layers.0.ln2.weight",
                                          "layers.0.ln2.bias",
                                          "layers.0.ffn.layers.0.0.weight",
                                          "layers.0.ffn.layers.0.0.bias",
                                          "layers.0.ffn.layers.1.weight",
                                          "layers.0.ffn.layers.1.bias"};
  ASSERT_GE(names.size(), expected.size());
  EXPECT_EQ(std::vector<std::string>(names.begin(), names.begin() + expected.size()), expected);
  // pre_norm drops the projection bias; then layer 1, pre_norm, ln1 (final), ln2 (avg_token).
  const std::vector<std::string> tail{"pre_norm.weight", "pre_norm.bias", "ln1.weight",
                                      "ln1.bias",        "ln2.weight",    "ln2.bias"};
  EXPECT_EQ(std::vector<std::string>(names.end() - 6, names.end()), tail);
  EXPECT_EQ(names.size(), 3 + 12 * 2 + 6u);
}

TEST(VisionTransformerTest, OutputsEqualMmclsOnTheSameWeights) {
  auto vit = make_backbone(
      tiny_vit("VisionTransformer", R"("img_size": 8, "patch_size": 4, "out_indices": [0, -1])"));
  load_reference(*vit, "vit_a");
  vit->eval();
  EXPECT_EQ(vit->out_channels(), (std::vector<int64_t>{16, 16, 16, 16}));
  auto outs = vit->forward(fixture("vit_a.x"));
  ASSERT_EQ(outs.size(), 4u); // [patch, cls] per out index
  EXPECT_EQ(outs[0].sizes(), (std::vector<int64_t>{2, 16, 2, 2}));
  EXPECT_EQ(outs[1].sizes(), (std::vector<int64_t>{2, 16}));
  for (int i = 0; i < 4; ++i) expect_close(outs[i], fixture("vit_a.out." + std::to_string(i)));
  // Another input size: pos_embed resized by bicubic interpolation, as upstream.
  auto big = vit->forward(fixture("vit_a.x_big"));
  ASSERT_EQ(big.size(), 4u);
  EXPECT_EQ(big[2].sizes(), (std::vector<int64_t>{2, 16, 3, 4}));
  for (int i = 0; i < 4; ++i) expect_close(big[i], fixture("vit_a.out_big." + std::to_string(i)));
}

TEST(VisionTransformerTest, AvgTokenPreNormAndCornerPaddingEqualMmcls) {
  auto vit = make_backbone(tiny_vit("VisionTransformer", R"("img_size": [8, 12], "patch_size": 4,
      "qkv_bias": false, "with_cls_token": false, "output_cls_token": false, "avg_token": true,
      "pre_norm": true)"));
  load_reference(*vit, "vit_b");
  vit->eval();
  auto outs = vit->forward(fixture("vit_b.x"));
  ASSERT_EQ(outs.size(), 1u);
  expect_close(outs[0], fixture("vit_b.out.0"));
  // 10x14 is padded bottom/right to 12x16 ('corner'), then pos_embed goes 2x3 -> 3x4.
  expect_close(vit->forward(fixture("vit_b.x_pad"))[0], fixture("vit_b.out_pad.0"));
}

TEST(VisionTransformerTest, IndependentFormulationOfOneLayer) {
  // One block written out directly: x + proj(softmax(q k^T / sqrt(d)) v) after ln1, then
  // x + W2 gelu(W1 ln2(x)).
  torch::manual_seed(1);
  auto vit = make_backbone(tiny_vit("VisionTransformer", R"("img_size": 8, "patch_size": 4,
      "final_norm": false, "out_indices": 0)"));
  vit->eval();
  auto params = vit->named_parameters();
  auto x = torch::randn({2, 3, 8, 8});
  auto tokens = torch::conv2d(x, params["patch_embed.projection.weight"],
                              params["patch_embed.projection.bias"], 4)
                    .flatten(2)
                    .transpose(1, 2);
  auto h = torch::cat({params["cls_token"].expand({2, 1, 16}), tokens}, 1) + params["pos_embed"];
  auto ln = [&](const torch::Tensor& t, const std::string& n) {
    return torch::layer_norm(t, {16}, params[n + ".weight"], params[n + ".bias"], 1e-6);
  };
  auto lin = [&](const torch::Tensor& t, const std::string& n) {
    return torch::linear(t, params[n + ".weight"], params[n + ".bias"]);
  };
  auto qkv = lin(ln(h, "layers.0.ln1"), "layers.0.attn.qkv").reshape({2, 5, 3, 2, 8});
  auto q = qkv.select(2, 0).transpose(1, 2), k = qkv.select(2, 1).transpose(1, 2),
       v = qkv.select(2, 2).transpose(1, 2);
  auto a = torch::softmax(torch::matmul(q, k.transpose(-1, -2)) / std::sqrt(8.0), -1);
  auto attn = torch::matmul(a, v).transpose(1, 2).reshape({2, 5, 16});
  h = h + lin(attn, "layers.0.attn.proj");
  h = h + lin(torch::gelu(lin(ln(h, "layers.0.ln2"), "layers.0.ffn.layers.0.0")),
              "layers.0.ffn.layers.1");
  auto outs = vit->forward(x);
  ASSERT_EQ(outs.size(), 2u);
  expect_close(outs[1], h.select(1, 0));
  expect_close(outs[0], h.narrow(1, 1, 4).reshape({2, 2, 2, 16}).permute({0, 3, 1, 2}));
}

TEST(VisionTransformerTest, ArchZooDropPathAndFrozenStages) {
  auto small = make_backbone(R"({"type": "VisionTransformer", "arch": "deit-tiny",
      "img_size": 32, "patch_size": 16})");
  EXPECT_EQ(small->named_parameters()["pos_embed"].sizes(), (std::vector<int64_t>{1, 5, 192}));
  EXPECT_EQ(small->named_parameters()["layers.11.attn.qkv.weight"].sizes(),
            (std::vector<int64_t>{576, 192}));

  // Stochastic depth: layer i drops with rate * i / (L - 1); in eval mode nothing drops.
  auto vit = make_backbone(tiny_vit("VisionTransformer", R"("img_size": 8, "patch_size": 4,
      "drop_path_rate": 0.5, "frozen_stages": 1)"));
  auto x = torch::randn({8, 3, 8, 8});
  vit->eval();
  auto a = vit->forward(x)[1], b = vit->forward(x)[1];
  EXPECT_TRUE(torch::equal(a, b));
  vit->train();
  torch::manual_seed(0);
  auto c = vit->forward(x)[1];
  EXPECT_FALSE(torch::allclose(a, c));
  // frozen_stages 1: pos_embed, patch_embed, cls_token and layer 0 need no gradient.
  auto params = vit->named_parameters();
  for (const char* n : {"pos_embed", "cls_token", "patch_embed.projection.weight",
                        "layers.0.attn.qkv.weight", "layers.0.ln1.weight"})
    EXPECT_FALSE(params[n].requires_grad()) << n;
  for (const char* n : {"layers.1.attn.qkv.weight", "ln1.weight"})
    EXPECT_TRUE(params[n].requires_grad()) << n;
}

TEST(VisionTransformerTest, ConfigErrorsNameThePath) {
  auto msg = [](const std::string& json) {
    return test::message_of<ConfigError>([&] { (void)make_backbone(json); });
  };
  EXPECT_TRUE(test::has_substr(msg(R"({"type": "VisionTransformer", "arch": "tiny"})"),
                               "model.backbone.arch: unknown arch 'tiny'"));
  EXPECT_TRUE(test::has_substr(
      msg(R"({"type": "VisionTransformer", "arch": {"embed_dims": 16, "num_layers": 2}})"),
      "model.backbone.arch.num_heads: required key of a custom arch is missing"));
  EXPECT_TRUE(test::has_substr(msg(tiny_vit("VisionTransformer", R"("out_indices": [2])")),
                               "model.backbone.out_indices: index 2 is out of range"));
  EXPECT_TRUE(test::has_substr(msg(tiny_vit("VisionTransformer", R"("with_cls_token": false)")),
                               "model.backbone.output_cls_token: needs with_cls_token"));
  EXPECT_TRUE(test::has_substr(msg(tiny_vit("VisionTransformer", R"("stop_grad_conv1": true)")),
                               "model.backbone.stop_grad_conv1"));
  EXPECT_TRUE(test::has_substr(msg(tiny_vit("VisionTransformer", R"("layer_cfgs": [{}])")),
                               "model.backbone.layer_cfgs: expected 2 dicts"));
  EXPECT_TRUE(test::has_substr(
      msg(tiny_vit("VisionTransformer", R"("layer_cfgs": {"act_cfg": {"type": "ReLU"}})")),
      "model.backbone.layer_cfgs.act_cfg"));
  EXPECT_TRUE(test::has_substr(msg(tiny_vit("MoCoV3ViT", R"("arch": "mocov3-small", "x": 1)")),
                               "model.backbone.x"));
}

TEST(MoCoV3ViTTest, SinCosPositionEmbeddingEqualsMmselfsup) {
  // The fixed embedding through the backbone (non-square grid 2x3) and at 4x4 without class
  // token, against upstream's build_2d_sincos_position_embedding.
  auto vit = make_backbone(tiny_vit("MoCoV3ViT", R"("img_size": [8, 12], "patch_size": 4)"));
  auto pos = vit->named_parameters()["pos_embed"];
  expect_close(pos, fixture("sincos.2x3"));
  EXPECT_FALSE(pos.requires_grad());

  // The same embedding written directly: row 1 + p holds (p / h, p % h) with h = 2 rows.
  auto mine = torch::zeros({1, 7, 16});
  for (int64_t p = 0; p < 6; ++p)
    for (int64_t k = 0; k < 4; ++k) {
      const double omega = 1.0 / std::pow(10000.0, double(k) / 4.0);
      const double w = double(p / 2) * omega, h = double(p % 2) * omega;
      mine[0][1 + p][k] = std::sin(w);
      mine[0][1 + p][4 + k] = std::cos(w);
      mine[0][1 + p][8 + k] = std::sin(h);
      mine[0][1 + p][12 + k] = std::cos(h);
    }
  expect_close(pos, mine);
}

TEST(MoCoV3ViTTest, InitAndStopGradConv1AsMmselfsup) {
  torch::manual_seed(2);
  auto vit = make_backbone(tiny_vit("MoCoV3ViT", R"("img_size": 8, "patch_size": 4,
      "stop_grad_conv1": true)"));
  auto p = vit->named_parameters();
  // Patch projection U(+-sqrt(6 / (3 * 16 + 16))), zero bias, frozen.
  const double val = std::sqrt(6.0 / (3 * 16 + 16));
  auto w = p["patch_embed.projection.weight"];
  EXPECT_LE(w.abs().max().item<double>(), val);
  EXPECT_GT(w.abs().max().item<double>(), 0.8 * val);
  EXPECT_FALSE(w.requires_grad());
  EXPECT_FALSE(p["patch_embed.projection.bias"].requires_grad());
  EXPECT_EQ(p["patch_embed.projection.bias"].abs().sum().item<double>(), 0.0);
  // qkv U(+-sqrt(6 / (48 / 3 + 16))); other Linears xavier (bound sqrt(6 / (in + out))).
  const double qkv = std::sqrt(6.0 / (16 + 16));
  EXPECT_LE(p["layers.0.attn.qkv.weight"].abs().max().item<double>(), qkv);
  EXPECT_GT(p["layers.0.attn.qkv.weight"].abs().max().item<double>(), 0.8 * qkv);
  EXPECT_LE(p["layers.0.ffn.layers.0.0.weight"].abs().max().item<double>(),
            std::sqrt(6.0 / (16 + 32)));
  for (const char* b : {"layers.0.attn.qkv.bias", "layers.0.attn.proj.bias",
                        "layers.1.ffn.layers.0.0.bias", "layers.1.ffn.layers.1.bias"})
    EXPECT_EQ(p[b].abs().sum().item<double>(), 0.0) << b;
  EXPECT_LT(p["cls_token"].abs().max().item<double>(), 1e-5);
  EXPECT_GT(p["cls_token"].abs().max().item<double>(), 0.0);
  // The patch projection gets no gradient; the rest does.
  auto outs = vit->forward(torch::randn({2, 3, 8, 8}));
  outs.back().sum().backward();
  EXPECT_FALSE(w.grad().defined());
  EXPECT_TRUE(p["layers.0.attn.qkv.weight"].grad().defined());

  // frozen_stages 0 freezes patch_embed, cls_token and pos_embed only; 2 (= num_layers) also
  // every layer and the final norm.
  auto f0 = make_backbone(tiny_vit("MoCoV3ViT", R"("img_size": 8, "patch_size": 4,
      "frozen_stages": 0)"));
  EXPECT_FALSE(f0->named_parameters()["cls_token"].requires_grad());
  EXPECT_TRUE(f0->named_parameters()["layers.0.attn.qkv.weight"].requires_grad());
  auto f2 = make_backbone(tiny_vit("MoCoV3ViT", R"("img_size": 8, "patch_size": 4,
      "frozen_stages": 2)"));
  for (const auto& item : f2->named_parameters())
    EXPECT_FALSE(item.value().requires_grad()) << item.key();
  f2->train();
  for (const auto& m : f2->named_modules("", /*include_self=*/false)) {
    if (m.key().rfind("layers.", 0) == 0) {
      EXPECT_FALSE(m.value()->is_training()) << m.key();
    }
  }
  EXPECT_TRUE(f2->is_training());
}

TEST(MoCoV3ViTTest, MoCoV3SmallArch) {
  auto vit = make_backbone(R"({"type": "MoCoV3ViT", "arch": "mocov3-small", "img_size": 32,
      "patch_size": 16})");
  auto p = vit->named_parameters();
  EXPECT_EQ(p["pos_embed"].sizes(), (std::vector<int64_t>{1, 5, 384}));
  EXPECT_EQ(p["layers.11.ffn.layers.0.0.weight"].sizes(), (std::vector<int64_t>{1536, 384}));
  // 'mocov3-small' is MoCoV3ViT's own: the mmcls backbone refuses it.
  EXPECT_TRUE(test::has_substr(test::message_of<ConfigError>([] {
                                 (void)make_backbone(
                                     R"({"type": "VisionTransformer", "arch": "mocov3-small"})");
                               }),
                               "unknown arch 'mocov3-small'"));
}

} // namespace selfsup
