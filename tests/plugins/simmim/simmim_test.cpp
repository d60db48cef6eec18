// SimMIM (simmim plugin): SimMIMReconstructionLoss and SimMIMHead on fixed inputs against an
// independent formulation and against upstream MMSelfSup 1.0; SimMIMSwinTransformer +
// SimMIMNeck + SimMIMHead (the whole algorithm) on upstream's weights, mask and image (fixture
// made by tests/fixtures/simmim/make_simmim_reference.py); the mask generator's exact count and
// whole blocks; reconstruct(); config errors; a few iterations of the shipped Fashion-MNIST
// config.
#include <gtest/gtest.h>

#include <cmath>
#include <filesystem>
#include <memory>
#include <string>
#include <vector>

#include <torch/torch.h>

#include <selfsup/core/config_file.h>
#include <selfsup/core/runner.h>
#include <selfsup/sdk.h>

#include "local_registry.h"
#include "plugins/plugin_test_support.h"
#include "test_support.h"

using namespace selfsup;

namespace {

const test::LocalRegistry& registry() {
  static const test::LocalRegistry r;
  return r;
}

const test::TensorDict& reference() {
  static const auto dict = test::load_fixture("tests/fixtures/simmim/simmim_reference.pt");
  return dict;
}

torch::Tensor fixture(const std::string& key) {
  return test::ref(reference(), key);
}

std::shared_ptr<Head> make_head(int64_t patch_size, int64_t in_channels) {
  Json cfg =
      Json::parse(R"({"type": "SimMIMHead", "loss": {"type": "SimMIMReconstructionLoss"}})", "t");
  cfg.set("patch_size", patch_size);
  cfg.find("loss")->set("encoder_in_channels", in_channels);
  return build<Head>(registry().config(cfg, "model.head"));
}

// The tiny model of the fixture: 3 stages (8, 16, 32 channels), window 3, 48x48 images.
const char* kTinyModel = R"({
  "type": "SimMIM",
  "data_preprocessor": {"mean": [0.0], "std": [1.0]},
  "backbone": {"type": "SimMIMSwinTransformer",
               "arch": {"embed_dims": 8, "depths": [2, 2, 2], "num_heads": [2, 2, 4]},
               "img_size": 48, "stage_cfgs": {"block_cfgs": {"window_size": 3}},
               "drop_path_rate": 0.0, "out_indices": [2]},
  "neck": {"type": "SimMIMNeck", "in_channels": 32, "encoder_stride": 16},
  "head": {"type": "SimMIMHead", "patch_size": 4,
           "loss": {"type": "SimMIMReconstructionLoss", "encoder_in_channels": 3}}})";

std::shared_ptr<Algorithm> make_model(const Json& cfg) {
  return build<Algorithm>(registry().config(cfg, "model"));
}

// Upstream's weights by name: backbone from 'simmim_swin.*', neck from 'neck.*'; every
// parameter and buffer of ours must be there.
void load_upstream(Algorithm& model) {
  torch::NoGradGuard no_grad;
  auto copy = [](const std::string& name, torch::Tensor& t) {
    const std::string key =
        name.rfind("backbone.", 0) == 0 ? "simmim_swin." + name.substr(9) : name; // neck.* as it is
    t.copy_(fixture(key));
  };
  for (auto& p : model.named_parameters()) copy(p.key(), p.value());
  for (auto& b : model.named_buffers()) copy(b.key(), b.value());
}

DataSamples with_mask(const torch::Tensor& mask) {
  DataSamples s;
  s.data["mask"] = mask;
  return s;
}

} // namespace

// ---- loss and head -----------------------------------------------------------------------

TEST(SimMIMTest, ReconstructionLossEqualsAnIndependentSumAndUpstream) {
  const auto pred = fixture("loss.pred");     // [2, 3, 8, 8]
  const auto target = fixture("loss.target"); // [2, 1, 8, 8]: one channel against three
  const auto mask = fixture("loss.mask");     // [2, 1, 8, 8] pixel mask
  // patch_size 1: the patch mask is the pixel mask.
  auto head = make_head(1, 1);
  const auto ours = head->loss({pred, mask.squeeze(1)}, target);
  // Independently: every masked pixel of every channel, |t - p| summed, over the masked pixel
  // count (+1e-5) and the encoder's channels.
  double sum = 0, count = 0;
  for (int b = 0; b < 2; ++b)
    for (int y = 0; y < 8; ++y)
      for (int x = 0; x < 8; ++x) {
        const double m = mask[b][0][y][x].item<double>();
        count += m;
        for (int c = 0; c < 3; ++c)
          sum += m * std::abs(target[b][0][y][x].item<double>() - pred[b][c][y][x].item<double>());
      }
  EXPECT_NEAR(ours.item<double>(), sum / (count + 1e-5) / 1.0, 1e-5);
  test::expect_allclose(ours, fixture("loss.value"), 1e-5, 0, "SimMIMReconstructionLoss");
  // Without a mask (the Loss interface's two-argument form) every pixel counts.
  auto loss = build<Loss>(registry().config(
      Json::parse(R"({"type": "SimMIMReconstructionLoss", "encoder_in_channels": 3})", "t"),
      "model.head.loss"));
  EXPECT_NEAR(loss->forward(pred, target).item<double>(),
              (target - pred).abs().sum().item<double>() / (2 * 64 + 1e-5) / 3.0, 1e-5);
}

TEST(SimMIMTest, HeadRepeatsThePatchMaskToPixels) {
  // A 2x2 patch mask with patch 3: the loss counts exactly the pixels of the masked cells.
  auto head = make_head(3, 3);
  auto mask = torch::tensor({1, 0, 0, 1}, torch::kLong).view({1, 2, 2});
  auto target = torch::zeros({1, 3, 6, 6});
  auto pred = torch::zeros({1, 3, 6, 6});
  pred.index_put_(
      {0, torch::indexing::Slice(), torch::indexing::Slice(0, 3), torch::indexing::Slice(0, 3)},
      2.0); // masked cell (0, 0): error 2 on 27 values
  pred.index_put_(
      {0, torch::indexing::Slice(), torch::indexing::Slice(0, 3), torch::indexing::Slice(3, 6)},
      5.0); // unmasked cell (0, 1): ignored
  // 27 values of 2 over 18 masked pixels and 3 channels.
  EXPECT_NEAR(head->loss({pred, mask}, target).item<double>(), 54.0 / (18 + 1e-5) / 3.0, 1e-6);
}

// ---- the whole model on upstream's weights -----------------------------------------------

TEST(SimMIMTest, ReconstructionAndLossEqualUpstreamOnTheSameWeights) {
  auto model = make_model(Json::parse(kTinyModel, "t"));
  load_upstream(*model);
  model->eval();
  const auto x = fixture("simmim_swin.x"), mask = fixture("simmim_swin.mask");
  const auto r = model->reconstruct({x}, with_mask(mask));
  EXPECT_EQ(r.reconstruction.sizes(), (std::vector<int64_t>{2, 3, 48, 48}));
  test::expect_allclose(r.reconstruction, fixture("neck.out"), 1e-5, 1e-6, "reconstruction");
  EXPECT_TRUE(torch::equal(r.original, x));
  ASSERT_EQ(r.mask.sizes(), (std::vector<int64_t>{2, 1, 48, 48}));
  EXPECT_EQ(r.mask[1][0][47][0].item<double>(), mask[1][11][0].item<double>());
  EXPECT_EQ(r.mask.sum().item<double>(), 16.0 * mask.sum().item<double>());
  const auto loss = model->loss({x}, with_mask(mask))["loss"];
  test::expect_allclose(loss, fixture("head.loss"), 1e-5, 0, "SimMIM loss");
  // The same loss written out from the reconstruction: masked pixels only.
  const auto pm = r.mask;
  const auto l1 = ((x - r.reconstruction).abs() * pm).sum() / (pm.sum() + 1e-5) / 3.0;
  EXPECT_NEAR(loss.item<double>(), l1.item<double>(), 1e-5 * l1.item<double>());
}

TEST(SimMIMTest, MaskTokenReplacesOnlyMaskedPatches) {
  torch::manual_seed(4);
  auto model = make_model(Json::parse(kTinyModel, "t"));
  model->eval();
  const auto x = torch::randn({1, 3, 48, 48});
  // An all-zero mask is the unmasked forward (the features used for evaluation).
  const auto zero = torch::zeros({1, 12, 12}, torch::kLong);
  const auto plain = model->backbone()->forward(x)[0];
  const auto via_mask = model->reconstruct({x}, with_mask(zero)).reconstruction;
  std::vector<torch::Tensor> feats = model->extract_feat({x});
  EXPECT_TRUE(torch::allclose(feats[0], plain));
  EXPECT_EQ(plain.sizes(), (std::vector<int64_t>{1, 32, 3, 3}));
  // The pixels under a masked patch no longer matter.
  auto mask = zero.clone();
  mask[0][0][0] = 1;
  auto y = x.clone();
  y.index_put_(
      {0, torch::indexing::Slice(), torch::indexing::Slice(0, 4), torch::indexing::Slice(0, 4)},
      7.0);
  const auto a = model->reconstruct({x}, with_mask(mask)).reconstruction;
  const auto b = model->reconstruct({y}, with_mask(mask)).reconstruction;
  EXPECT_TRUE(torch::allclose(a, b, 1e-5, 1e-6));
  EXPECT_FALSE(torch::allclose(a, via_mask, 1e-5, 1e-6));
}

// ---- the mask generator ------------------------------------------------------------------

TEST(SimMIMTest, MaskGeneratorKeepsTheConfiguredCountOfWholeBlocks) {
  struct Case {
    int input, mask_patch, model_patch;
    double ratio;
  };
  for (const Case c : {Case{192, 32, 4, 0.6}, Case{32, 8, 2, 0.6}, Case{30, 6, 3, 0.35}}) {
    Json cfg = Json::parse(R"({"type": "SimMIMMaskGenerator"})", "t");
    cfg.set("input_size", c.input);
    cfg.set("mask_patch_size", c.mask_patch);
    cfg.set("model_patch_size", c.model_patch);
    cfg.set("mask_ratio", c.ratio);
    auto gen = build<Transform>(registry().config(cfg, "pipeline[3]"));
    const int cells = (c.input / c.mask_patch) * (c.input / c.mask_patch);
    const auto expected = int64_t(std::ceil(cells * c.ratio));
    const int scale = c.mask_patch / c.model_patch, side = c.input / c.model_patch;
    torch::Tensor previous;
    for (uint64_t seed = 0; seed < 20; ++seed) {
      Sample s;
      Rng rng(seed);
      gen->apply(s, rng);
      const auto mask = s.tensors.at("mask");
      ASSERT_EQ(mask.sizes(), (std::vector<int64_t>{side, side}));
      EXPECT_EQ(mask.scalar_type(), torch::kLong);
      // Whole blocks: every scale x scale block is constant; the count of 1-blocks is exact.
      const auto blocks = mask.view({side / scale, scale, side / scale, scale});
      EXPECT_TRUE(torch::equal(blocks.amax({1, 3}), blocks.amin({1, 3})));
      EXPECT_EQ(mask.sum().item<int64_t>(), expected * scale * scale);
      if (previous.defined()) {
        EXPECT_FALSE(torch::equal(mask, previous)) << seed;
      }
      previous = mask;
      // The same seed gives the same mask.
      Sample again;
      Rng rng2(seed);
      gen->apply(again, rng2);
      EXPECT_TRUE(torch::equal(again.tensors.at("mask"), mask));
    }
  }
  Json bad = Json::parse(
      R"({"type": "SimMIMMaskGenerator", "input_size": 32, "mask_patch_size": 6})", "t");
  EXPECT_TRUE(test::has_substr(test::message_of<ConfigError>([&] {
                                 (void)build<Transform>(registry().config(bad, "pipeline[3]"));
                               }),
                               "pipeline[3].mask_patch_size"));
}

// ---- config errors -----------------------------------------------------------------------

TEST(SimMIMTest, ConfigErrorsNameTheKey) {
  Json cfg = Json::parse(kTinyModel, "t");
  cfg.find("backbone")->set("out_indices", Json::parse("[1]", "t"));
  EXPECT_TRUE(
      test::has_substr(test::model_config_error(registry(), cfg), "model.backbone.out_indices"));
  cfg = Json::parse(kTinyModel, "t");
  cfg.find("backbone")->set("type", "SwinTransformer");
  EXPECT_TRUE(test::has_substr(test::model_config_error(registry(), cfg), "model.backbone"));
  cfg = Json::parse(kTinyModel, "t");
  cfg.find("head")->set("loss", Json::parse(R"({"type": "CrossEntropyLoss"})", "t"));
  EXPECT_TRUE(test::has_substr(test::model_config_error(registry(), cfg), "model.head.loss"));
  cfg = Json::parse(kTinyModel, "t");
  cfg.find("backbone")->set("window_size", 3); // upstream's SimMIMSwinTransformer has no such key
  EXPECT_TRUE(
      test::has_substr(test::model_config_error(registry(), cfg), "model.backbone.window_size"));
}

// ---- the shipped config ------------------------------------------------------------------

TEST(SimMIMTest, TrainsOnTinyFashionMnistWithTheShippedConfig) {
  test::load_plugins();
  test::TinyFmnistRun tiny(48, 8);
  Json cfg = core::load_config_file(std::string(SELFSUP_SOURCE_DIR) +
                                    "/configs/simmim/simmim_swin-tiny-p2-w4_fmnist.json");
  Json* loader = cfg.find("train_dataloader");
  loader->set("batch_size", 16);
  loader->find("dataset")->set("data_root", tiny.data.string());
  cfg.set("custom_hooks", Json::array());
  cfg.set("train_cfg", Json::parse(R"({"type": "EpochBasedTrainLoop", "max_epochs": 1})", "t"));
  core::Runner runner(cfg, tiny.options);
  auto& model = runner.model();
  const auto token0 = model.named_parameters()["backbone.mask_token"].clone();
  const auto qkv0 =
      model.named_parameters()["backbone.stages.1.blocks.1.attn.w_msa.qkv.weight"].clone();
  const auto dec0 = model.named_parameters()["neck.decoder.0.weight"].clone();
  runner.train();
  // 3 iterations: the encoder, the mask token and the decoder moved; the loss was logged.
  EXPECT_FALSE(torch::equal(token0, model.named_parameters()["backbone.mask_token"]));
  EXPECT_FALSE(torch::equal(
      qkv0, model.named_parameters()["backbone.stages.1.blocks.1.attn.w_msa.qkv.weight"]));
  EXPECT_FALSE(torch::equal(dec0, model.named_parameters()["neck.decoder.0.weight"]));
  const auto scalars =
      test::read_text(std::filesystem::path(tiny.options.work_dir) / "scalars.jsonl");
  EXPECT_TRUE(test::has_substr(scalars, "\"loss\""));
  EXPECT_FALSE(test::has_substr(scalars, "nan"));
}
