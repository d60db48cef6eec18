// MAE (mae plugin): MAEReconstructionLoss, MAEPretrainHead (with and without norm_pix),
// MAEViT's masking (the configured ratio exactly, restore indices inverting the shuffle),
// MAEPretrainDecoder and the algorithm-level loss, against independent formulations written
// here and against upstream MMSelfSup 1.0 (fixture made by
// tests/fixtures/mae/make_mae_fixture.py); the shared MIM helpers of plugins/common/mim.h
// (patchify/unpatchify round trip, the normalised-pixel target); reconstruct(); a few
// training iterations of the shipped Fashion-MNIST config.
#include <gtest/gtest.h>

#include <cmath>
#include <filesystem>
#include <string>
#include <vector>

#include <torch/torch.h>

#include <selfsup/core/config_file.h>
#include <selfsup/core/runner.h>
#include <selfsup/sdk.h>

#include "../../../plugins/common/mim.h"
#include "local_registry.h"
#include "plugins/plugin_test_support.h"
#include "test_support.h"

using namespace selfsup;
namespace mim = selfsup::plugins::common;
namespace fs = std::filesystem;

namespace {

const test::TensorDict& reference() {
  static const auto dict = test::load_fixture("tests/fixtures/mae/mae_reference.pt");
  return dict;
}
torch::Tensor fixture(const std::string& key) {
  return test::ref(reference(), key);
}

const test::LocalRegistry& registry() {
  static const test::LocalRegistry r;
  return r;
}

// Copies '<prefix>.<name>' of the fixture into every parameter and buffer of `m`.
void load_reference(torch::nn::Module& m, const std::string& prefix) {
  torch::NoGradGuard no_grad;
  for (auto& p : m.named_parameters()) p.value().copy_(fixture(prefix + "." + p.key()));
  for (auto& b : m.named_buffers()) b.value().copy_(fixture(prefix + "." + b.key()));
}

std::shared_ptr<Head> make_head(bool norm_pix, int64_t patch_size) {
  Json cfg = Json::parse(R"({"type": "MAEPretrainHead", "loss": {"type":
                              "MAEReconstructionLoss"}})",
                         "t");
  cfg.set("norm_pix", norm_pix);
  cfg.set("patch_size", patch_size);
  return build<Head>(registry().config(cfg, "model.head"));
}

// Independent patchify by index: patch (i, j) of the h x w grid is row i*w + j, its entry
// (u*p + v)*C + c is pixel (c, i*p + u, j*p + v).
torch::Tensor patchify_by_index(const torch::Tensor& imgs, int64_t p) {
  const int64_t b = imgs.size(0), c = imgs.size(1), h = imgs.size(2) / p, w = imgs.size(3) / p;
  auto out = torch::empty({b, h * w, p * p * c}, imgs.options());
  auto a = imgs.accessor<float, 4>();
  auto o = out.accessor<float, 3>();
  for (int64_t n = 0; n < b; ++n)
    for (int64_t i = 0; i < h; ++i)
      for (int64_t j = 0; j < w; ++j)
        for (int64_t u = 0; u < p; ++u)
          for (int64_t v = 0; v < p; ++v)
            for (int64_t ch = 0; ch < c; ++ch)
              o[n][i * w + j][(u * p + v) * c + ch] = a[n][ch][i * p + u][j * p + v];
  return out;
}

// Each row: (x - mean) / sqrt(sum((x - mean)^2) / (D - 1) + 1e-6), in double.
torch::Tensor norm_rows(const torch::Tensor& x) {
  auto d = x.to(torch::kDouble);
  const int64_t n = d.size(-1);
  auto mean = d.sum(-1, true) / double(n);
  auto var = (d - mean).pow(2).sum(-1, true) / double(n - 1);
  return ((d - mean) / (var + 1e-6).sqrt()).to(torch::kFloat);
}

// sum over patches of mask * mean over the patch of (pred - target)^2, / sum(mask), in double.
double masked_mse(const torch::Tensor& pred, const torch::Tensor& target,
                  const torch::Tensor& mask) {
  double num = 0, den = 0;
  auto pd = pred.to(torch::kDouble), td = target.to(torch::kDouble), md = mask.to(torch::kDouble);
  for (int64_t n = 0; n < pd.size(0); ++n)
    for (int64_t l = 0; l < pd.size(1); ++l) {
      const double m = md[n][l].item<double>();
      num += m * (pd[n][l] - td[n][l]).pow(2).mean().item<double>();
      den += m;
    }
  return num / den;
}

const char* kTinyModel = R"({
  "type": "MAE",
  "data_preprocessor": {"mean": [128.0, 128.0, 128.0], "std": [64.0, 64.0, 64.0]},
  "backbone": {"type": "MAEViT", "arch": {"embed_dims": 16, "num_layers": 2, "num_heads": 2,
               "feedforward_channels": 32}, "img_size": 16, "patch_size": 4, "mask_ratio": 0.75},
  "neck": {"type": "MAEPretrainDecoder", "num_patches": 16, "patch_size": 4, "in_chans": 3,
           "embed_dim": 16, "decoder_embed_dim": 8, "decoder_depth": 1, "decoder_num_heads": 2,
           "mlp_ratio": 4.0},
  "head": {"type": "MAEPretrainHead", "norm_pix": true, "patch_size": 4,
           "loss": {"type": "MAEReconstructionLoss"}},
  "init_cfg": [{"type": "Xavier", "distribution": "uniform", "layer": "Linear"},
               {"type": "Constant", "layer": "LayerNorm", "val": 1.0, "bias": 0.0}]
})";

std::shared_ptr<Algorithm> tiny_mae() {
  return build<Algorithm>(registry().config(Json::parse(kTinyModel, "t"), "model"));
}

} // namespace

// ---- shared MIM helpers ------------------------------------------------------------------

TEST(MimHelpersTest, PatchifyIsUpstreamsLayoutAndUnpatchifyInvertsIt) {
  torch::manual_seed(0);
  for (int64_t c : {1, 3}) {
    const auto imgs = torch::randn({2, c, 12, 8});
    const auto patches = mim::patchify(imgs, 4);
    ASSERT_EQ(patches.sizes(), torch::IntArrayRef({2, 6, 16 * c}));
    EXPECT_TRUE(torch::equal(patches, patchify_by_index(imgs, 4)));
    EXPECT_TRUE(torch::equal(mim::unpatchify(patches, 4, c, 3), imgs));
  }
  const auto square = torch::randn({2, 3, 8, 8});
  EXPECT_TRUE(torch::equal(mim::unpatchify(mim::patchify(square, 4), 4, 3), square));
  // Upstream's MAEPretrainHead.patchify on the fixture images.
  test::expect_allclose(mim::patchify(fixture("head.imgs"), 4), fixture("head.plain.target"), 0, 0,
                        "patchify vs upstream");
  EXPECT_THROW((void)mim::patchify(torch::zeros({1, 3, 10, 8}), 4), c10::Error);
}

TEST(MimHelpersTest, NormPixTargetMatchesAnIndependentComputationAndUpstream) {
  const auto patches = mim::patchify(fixture("head.imgs"), 4);
  test::expect_allclose(mim::norm_pix_target(patches), norm_rows(patches), 1e-5, 1e-6,
                        "norm_pix vs independent");
  test::expect_allclose(mim::norm_pix_target(patches), fixture("head.norm.target"), 1e-5, 1e-6,
                        "norm_pix vs upstream");
}

TEST(MimHelpersTest, PatchMaskToPixelsCoversEachHiddenPatch) {
  const auto mask = torch::tensor({{1.f, 0.f, 0.f, 1.f, 0.f, 0.f}});
  const auto px = mim::patch_mask_to_pixels(mask, 2, 2); // 2 rows x 3 columns of 2x2
  ASSERT_EQ(px.sizes(), torch::IntArrayRef({1, 1, 4, 6}));
  EXPECT_EQ(px.sum().item<double>(), 8.0);
  EXPECT_EQ(px[0][0][1][1].item<float>(), 1.f); // patch (0, 0)
  EXPECT_EQ(px[0][0][0][2].item<float>(), 0.f); // patch (0, 1)
  EXPECT_EQ(px[0][0][3][0].item<float>(), 1.f); // patch (1, 0)
}

// ---- head and loss -----------------------------------------------------------------------

TEST(MAETest, HeadLossIsTheMaskedPatchMseOfTheTargetAsUpstream) {
  const auto imgs = fixture("head.imgs"), pred = fixture("head.pred"), mask = fixture("head.mask");
  for (bool norm_pix : {false, true}) {
    SCOPED_TRACE(norm_pix ? "norm_pix" : "plain");
    auto head = make_head(norm_pix, 4);
    const auto target =
        norm_pix ? norm_rows(patchify_by_index(imgs, 4)) : patchify_by_index(imgs, 4);
    const auto ours = head->loss({pred, mask}, imgs);
    EXPECT_NEAR(ours.item<double>(), masked_mse(pred, target, mask),
                1e-5 * masked_mse(pred, target, mask));
    test::expect_allclose(ours, fixture(norm_pix ? "head.norm.loss" : "head.plain.loss"), 1e-5, 0,
                          "vs upstream");
    // The target itself: predicting it exactly costs nothing, on every patch.
    EXPECT_LT(head->loss({target, torch::ones_like(mask)}, imgs).item<double>(), 1e-10);
  }
}

TEST(MAETest, LossCountsOnlyTheMaskedPatches) {
  auto loss = build<Loss>(registry().config(
      Json::parse(R"({"type": "MAEReconstructionLoss"})", "t"), "model.head.loss"));
  const auto pred = fixture("head.pred"), mask = fixture("head.mask");
  // Upstream's loss on a free target, through the head without norm_pix: its target is
  // patchify(images), so images = unpatchify(target).
  const auto target = fixture("loss.target");
  const auto imgs = mim::unpatchify(target, 4, 3);
  auto head = make_head(false, 4);
  test::expect_allclose(head->loss({pred, mask}, imgs), fixture("loss.value"), 1e-5, 0,
                        "loss vs upstream");
  // Changing the visible patches' prediction changes nothing.
  auto moved = pred.clone();
  moved.masked_fill_((mask == 0).unsqueeze(-1).expand_as(moved), 100.f);
  EXPECT_NEAR(head->loss({moved, mask}, imgs).item<double>(),
              head->loss({pred, mask}, imgs).item<double>(), 1e-6);
  // Without a mask (the Loss interface): every patch counts.
  EXPECT_NEAR(loss->forward(pred, target).item<double>(),
              masked_mse(pred, target, torch::ones_like(mask)), 1e-5);
}

TEST(MAETest, HeadRefusesAnotherLossNamingIt) {
  Json cfg =
      Json::parse(R"({"type": "MAEPretrainHead", "loss": {"type": "CrossEntropyLoss"}})", "t");
  try {
    (void)build<Head>(registry().config(cfg, "model.head"));
    ADD_FAILURE() << "no error";
  } catch (const ConfigError& e) {
    EXPECT_TRUE(test::has_substr(e.what(), "model.head.loss")) << e.what();
  }
}

// ---- MAEViT masking ----------------------------------------------------------------------

TEST(MAETest, MaskingHidesExactlyTheConfiguredRatioAndRestoreInvertsTheShuffle) {
  for (double ratio : {0.75, 0.6, 0.3}) {
    SCOPED_TRACE(ratio);
    Json cfg = Json::parse(R"({"type": "MAEViT", "arch": {"embed_dims": 16, "num_layers": 1,
        "num_heads": 2, "feedforward_channels": 32}, "img_size": 20, "patch_size": 4})",
                           "t");
    cfg.set("mask_ratio", ratio);
    auto vit = build<Backbone>(registry().config(cfg, "model.backbone"));
    vit->eval();
    const int64_t l = 25, keep = static_cast<int64_t>(double(l) * (1.0 - ratio));
    const auto outs = vit->forward(torch::randn({4, 3, 20, 20}));
    ASSERT_EQ(outs.size(), 3u);
    const auto& latent = outs[0];
    const auto& mask = outs[1];
    const auto& ids_restore = outs[2];
    ASSERT_EQ(latent.sizes(), torch::IntArrayRef({4, 1 + keep, 16}));
    ASSERT_EQ(mask.sizes(), torch::IntArrayRef({4, l}));
    for (int64_t n = 0; n < 4; ++n) {
      EXPECT_EQ(mask[n].sum().item<double>(), double(l - keep));
      // ids_restore is a permutation; its inverse (the shuffle) lists the kept patches first.
      const auto sorted = std::get<0>(ids_restore[n].sort());
      EXPECT_TRUE(torch::equal(sorted, torch::arange(l)));
      const auto shuffle = torch::argsort(ids_restore[n]);
      EXPECT_TRUE(torch::equal(shuffle.index_select(0, ids_restore[n]), torch::arange(l)));
      EXPECT_EQ(mask[n].index_select(0, shuffle.narrow(0, 0, keep)).sum().item<double>(), 0.0);
      EXPECT_EQ(mask[n].index_select(0, shuffle.narrow(0, keep, l - keep)).sum().item<double>(),
                double(l - keep));
    }
  }
}

TEST(MAETest, ViTAndDecoderMatchUpstreamGivenTheSameNoise) {
  // LibTorch's CPU generator draws upstream's noise after the same seed.
  torch::manual_seed(123);
  test::expect_allclose(torch::rand({2, 16}), fixture("vit.noise"), 0, 0, "noise");

  Json vcfg = Json::parse(R"({"type": "MAEViT", "arch": {"embed_dims": 16, "num_layers": 2,
      "num_heads": 2, "feedforward_channels": 32}, "img_size": 16, "patch_size": 4,
      "mask_ratio": 0.75})",
                          "t");
  auto vit = build<Backbone>(registry().config(vcfg, "model.backbone"));
  Json ncfg = Json::parse(R"({"type": "MAEPretrainDecoder", "num_patches": 16, "patch_size": 4,
      "in_chans": 3, "embed_dim": 16, "decoder_embed_dim": 8, "decoder_depth": 1,
      "decoder_num_heads": 2, "mlp_ratio": 4.0})",
                          "t");
  auto neck = build<Neck>(registry().config(ncfg, "model.neck"));
  // The fixed embeddings are upstream's before the weights are loaded over them.
  test::expect_allclose(vit->named_parameters()["pos_embed"], fixture("vit.pos_embed"), 1e-6, 1e-7,
                        "sin-cos pos_embed");
  EXPECT_FALSE(vit->named_parameters()["pos_embed"].requires_grad());
  EXPECT_FALSE(neck->named_parameters()["decoder_pos_embed"].requires_grad());
  load_reference(*vit, "vit");
  load_reference(*neck, "neck");
  vit->eval();
  neck->eval();
  torch::NoGradGuard no_grad;
  torch::manual_seed(123);
  const auto outs = vit->forward(fixture("vit.x"));
  test::expect_allclose(outs[1], fixture("vit.mask"), 0, 0, "mask");
  EXPECT_TRUE(torch::equal(outs[2], fixture("vit.ids_restore")));
  test::expect_allclose(outs[0], fixture("vit.latent"), 1e-5, 1e-6, "latent");
  const auto pred = neck->forward({outs[0], outs[2]})[0];
  test::expect_allclose(pred, fixture("neck.pred"), 1e-5, 1e-6, "decoder prediction");
  auto head = make_head(true, 4);
  test::expect_allclose(head->loss({pred, outs[1]}, fixture("vit.x")), fixture("mae.loss"), 1e-5, 0,
                        "loss");
}

// ---- the algorithm -----------------------------------------------------------------------

TEST(MAETest, AlgorithmLossIsTheHeadOfTheDecoderOfTheMaskedEncoder) {
  auto model = tiny_mae();
  model->eval();
  const auto x = torch::randn({3, 3, 16, 16});
  torch::manual_seed(9);
  const auto loss = model->loss({x}, DataSamples{})["loss"];
  // The same steps through the parts, with the same noise.
  auto children = model->named_children();
  auto vit = std::dynamic_pointer_cast<Backbone>(children["backbone"]);
  auto neck = std::dynamic_pointer_cast<Neck>(children["neck"]);
  ASSERT_TRUE(vit && neck);
  torch::manual_seed(9);
  const auto outs = vit->forward(x);
  const auto pred = neck->forward({outs[0], outs[2]})[0];
  const double expected = masked_mse(pred, norm_rows(patchify_by_index(x, 4)), outs[1]);
  EXPECT_NEAR(loss.item<double>(), expected, 1e-5 * expected);
  // Gradients reach the encoder and the decoder, not the fixed position embeddings.
  loss.backward();
  auto params = model->named_parameters();
  EXPECT_TRUE(params["backbone.layers.0.attn.qkv.weight"].grad().defined());
  EXPECT_TRUE(params["neck.mask_token"].grad().defined());
  EXPECT_FALSE(params["backbone.pos_embed"].grad().defined());
}

TEST(MAETest, InitCfgMakesLinearsXavierAndLayerNormsOneZero) {
  torch::manual_seed(0);
  auto model = tiny_mae();
  auto params = model->named_parameters();
  const auto w = params["neck.decoder_pred.weight"];
  const double bound = std::sqrt(6.0 / double(w.size(0) + w.size(1)));
  EXPECT_LE(w.abs().max().item<double>(), bound);
  EXPECT_GT(w.abs().max().item<double>(), 0.5 * bound);
  EXPECT_EQ(params["neck.decoder_pred.bias"].abs().max().item<double>(), 0.0);
  EXPECT_EQ(params["backbone.layers.0.attn.qkv.bias"].abs().max().item<double>(), 0.0);
  EXPECT_TRUE(torch::equal(params["backbone.ln1.weight"], torch::ones({16})));
  // mmcls's FFN biases N(0, 1e-6) come after the model-level init, as in mmengine.
  const auto ffn_bias = params["backbone.layers.0.ffn.layers.1.bias"];
  EXPECT_GT(ffn_bias.abs().max().item<double>(), 0.0);
  EXPECT_LT(ffn_bias.abs().max().item<double>(), 1e-4);
}

TEST(MAETest, FeaturesComeFromTheUnmaskedEncoder) {
  auto model = tiny_mae();
  model->eval();
  const auto feats = model->extract_feat({torch::randn({2, 3, 16, 16})});
  ASSERT_EQ(feats.size(), 2u); // patch map, class token
  EXPECT_EQ(feats[0].sizes(), torch::IntArrayRef({2, 16, 4, 4}));
  EXPECT_EQ(feats[1].sizes(), torch::IntArrayRef({2, 16}));
}

TEST(MAETest, ReconstructReturnsImagesMaskAndPrediction) {
  auto model = tiny_mae();
  model->eval();
  const auto x = torch::randn({2, 3, 16, 16});
  const auto r = model->reconstruct({x}, DataSamples{});
  EXPECT_TRUE(torch::equal(r.original, x));
  ASSERT_EQ(r.mask.sizes(), torch::IntArrayRef({2, 1, 16, 16}));
  EXPECT_EQ(r.mask.sum().item<double>(), 2 * 12 * 16.0); // 12 of 16 patches of 4x4 hidden
  ASSERT_EQ(r.reconstruction.sizes(), x.sizes());
  // norm_pix: the prediction is mapped back with each patch's own statistics, so it is on the
  // images' scale, not the unit scale of the normalised target.
  EXPECT_TRUE(torch::isfinite(r.reconstruction).all().item<bool>());
}

TEST(MAETest, ConfigErrorsNameTheKey) {
  Json cfg = Json::parse(kTinyModel, "t");
  cfg.find("backbone")->set("mask_ratio", 1.0);
  EXPECT_TRUE(
      test::has_substr(test::model_config_error(registry(), cfg), "model.backbone.mask_ratio"));
  cfg = Json::parse(kTinyModel, "t");
  cfg.find("neck")->set("num_patches", 15);
  EXPECT_TRUE(
      test::has_substr(test::model_config_error(registry(), cfg), "model.neck.num_patches"));
  cfg = Json::parse(kTinyModel, "t");
  cfg.set("init_cfg", Json::parse(R"([{"type": "Kaiming", "layer": "Conv2d"}])", "t"));
  EXPECT_TRUE(test::has_substr(test::model_config_error(registry(), cfg), "model.init_cfg[0]"));
}

// ---- the shipped configs -----------------------------------------------------------------

TEST(MAETest, TrainsOnTinyFashionMnistWithTheShippedConfig) {
  test::load_plugins();
  test::TinyFmnistRun tiny(48, 8);
  Json cfg = core::load_config_file(std::string(SELFSUP_SOURCE_DIR) +
                                    "/configs/mae/mae_vit-tiny-p4_fmnist.json");
  Json* loader = cfg.find("train_dataloader");
  loader->set("batch_size", 16);
  loader->find("dataset")->set("data_root", tiny.data.string());
  cfg.set("custom_hooks", Json::array());
  cfg.set("train_cfg", Json::parse(R"({"type": "EpochBasedTrainLoop", "max_epochs": 1})", "t"));
  core::Runner runner(cfg, tiny.options);
  auto& model = runner.model();
  const auto token0 = model.named_parameters()["neck.mask_token"].clone();
  const auto qkv0 = model.named_parameters()["backbone.layers.0.attn.qkv.weight"].clone();
  const auto pos0 = model.named_parameters()["backbone.pos_embed"].clone();
  runner.train();
  // 3 iterations: the encoder and the mask token moved, the fixed embedding did not.
  EXPECT_FALSE(torch::equal(token0, model.named_parameters()["neck.mask_token"]));
  EXPECT_FALSE(torch::equal(qkv0, model.named_parameters()["backbone.layers.0.attn.qkv.weight"]));
  EXPECT_TRUE(torch::equal(pos0, model.named_parameters()["backbone.pos_embed"]));
}
