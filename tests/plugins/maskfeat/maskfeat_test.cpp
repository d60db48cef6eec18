// MaskFeat (maskfeat plugin: MaskFeat, MaskFeatViT, MaskFeatPretrainHead, HOGGenerator) and the
// pieces it shares through the common plugin (PixelReconstructionLoss, BEiTMaskGenerator,
// LinearNeck's TruncNormal init): each against an independent formulation written here and
// against upstream MMSelfSup 1.0 (fixture made by
// tests/fixtures/maskfeat/make_maskfeat_fixture.py), HOG of a hand-made vertical edge, exact
// block-wise mask counts, and a few iterations of the shipped Fashion-MNIST config.
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
namespace fs = std::filesystem;

namespace {

const test::TensorDict& reference() {
  static const auto dict = test::load_fixture("tests/fixtures/maskfeat/maskfeat_reference.pt");
  return dict;
}
torch::Tensor fixture(const std::string& key) {
  return test::ref(reference(), key);
}

const test::LocalRegistry& registry() {
  static const test::LocalRegistry registry;
  return registry;
}

// A head that keeps the predictions it is given and returns their sum.
class CaptureHead final : public Head {
public:
  static inline torch::Tensor last;
  torch::Tensor loss(const std::vector<torch::Tensor>& inputs, const torch::Tensor&) override {
    last = inputs.at(0).detach();
    return inputs.at(0).sum();
  }
};

const test::LocalRegistry& capture_registry() {
  static const test::LocalRegistry registry("maskfeat_test", [](Registrar& r) {
    r.add<Head>(
        "MaskFeatTestCaptureHead",
        [](const Config&) -> std::shared_ptr<Head> { return std::make_shared<CaptureHead>(); },
        Schema("records the predictions"));
  });
  return registry;
}

std::shared_ptr<TargetGenerator> make_hog(int64_t nbins, int64_t pool, int64_t window) {
  Json cfg = Json::object({{"type", "HOGGenerator"}});
  cfg.set("nbins", nbins);
  cfg.set("pool", pool);
  cfg.set("gaussian_window", window);
  return build<TargetGenerator>(registry().config(cfg, "model.target_generator"));
}

// HOG written with loops over pixels: Sobel sums with reflected borders, atan2 bins, the
// Gaussian weight read from its formula, cell sums, L2 over bins, then 14 x 14 patches of
// u x u cells in (channel, bin, dy, dx) order.
torch::Tensor independent_hog(const torch::Tensor& img, int64_t nbins, int64_t pool, int64_t gw) {
  const auto x = img.to(torch::kDouble).contiguous();
  const int64_t b = x.size(0), c = x.size(1), h = x.size(2), w = x.size(3);
  auto a = x.accessor<double, 4>();
  auto at = [&](int64_t n, int64_t ch, int64_t i, int64_t j) {
    i = i < 0 ? -i : (i >= h ? 2 * h - 2 - i : i); // reflect, edge not repeated
    j = j < 0 ? -j : (j >= w ? 2 * w - 2 - j : j);
    return a[n][ch][i][j];
  };
  std::vector<double> g1(gw > 0 ? gw : 0);
  double gsum = 0.0;
  for (int64_t k = 0; k < gw; ++k) {
    const double v = (double(k) - double(gw - 1) / 2.0) / double(gw / 2);
    g1[k] = std::exp(-0.5 * v * v);
  }
  for (int64_t i = 0; i < gw; ++i)
    for (int64_t j = 0; j < gw; ++j) gsum += g1[i] * g1[j];
  const int64_t hc = h / pool, wc = w / pool;
  auto hist = torch::zeros({b, c, nbins, hc, wc}, torch::kDouble);
  auto ha = hist.accessor<double, 5>();
  for (int64_t n = 0; n < b; ++n)
    for (int64_t ch = 0; ch < c; ++ch)
      for (int64_t i = 0; i < h; ++i)
        for (int64_t j = 0; j < w; ++j) {
          // Sobel as a cross-correlation: gx = sum_k wx[k] * x[i + di, j + dj].
          const double gx = (at(n, ch, i - 1, j - 1) - at(n, ch, i - 1, j + 1)) +
                            2 * (at(n, ch, i, j - 1) - at(n, ch, i, j + 1)) +
                            (at(n, ch, i + 1, j - 1) - at(n, ch, i + 1, j + 1));
          const double gy = (at(n, ch, i - 1, j - 1) - at(n, ch, i + 1, j - 1)) +
                            2 * (at(n, ch, i - 1, j) - at(n, ch, i + 1, j)) +
                            (at(n, ch, i - 1, j + 1) - at(n, ch, i + 1, j + 1));
          double mag = std::sqrt(gx * gx + gy * gy);
          if (gw > 0) mag *= g1[i % gw] * g1[j % gw] / gsum;
          auto bin = static_cast<int64_t>(std::floor(std::atan2(gx, gy) / M_PI * double(nbins)));
          bin = ((bin % nbins) + nbins) % nbins;
          ha[n][ch][bin][i / pool][j / pool] += mag;
        }
  for (int64_t n = 0; n < b; ++n)
    for (int64_t ch = 0; ch < c; ++ch)
      for (int64_t i = 0; i < hc; ++i)
        for (int64_t j = 0; j < wc; ++j) {
          double s = 0.0;
          for (int64_t k = 0; k < nbins; ++k) s += ha[n][ch][k][i][j] * ha[n][ch][k][i][j];
          const double norm = std::max(std::sqrt(s), 1e-12);
          for (int64_t k = 0; k < nbins; ++k) ha[n][ch][k][i][j] /= norm;
        }
  const int64_t u = wc / 14;
  auto out = torch::zeros({b, 14 * 14, c * nbins * u * u}, torch::kDouble);
  auto oa = out.accessor<double, 3>();
  for (int64_t n = 0; n < b; ++n)
    for (int64_t pi = 0; pi < 14; ++pi)
      for (int64_t pj = 0; pj < 14; ++pj) {
        int64_t f = 0;
        for (int64_t ch = 0; ch < c; ++ch)
          for (int64_t k = 0; k < nbins; ++k)
            for (int64_t dy = 0; dy < u; ++dy)
              for (int64_t dx = 0; dx < u; ++dx)
                oa[n][pi * 14 + pj][f++] = ha[n][ch][k][pi * u + dy][pj * u + dx];
      }
  return out;
}

std::shared_ptr<Head> make_head(const std::string& loss_json) {
  Json cfg = Json::object({{"type", "MaskFeatPretrainHead"}});
  cfg.set("loss", Json::parse(loss_json, "t"));
  return build<Head>(registry().config(cfg, "model.head"));
}

// The masked L2 loss written directly: mean over the masked patches of the mean squared error
// over the features.
torch::Tensor independent_head_loss(const torch::Tensor& pred, const torch::Tensor& target,
                                    const torch::Tensor& mask) {
  const auto m = mask.reshape({mask.size(0), -1}).to(torch::kDouble);
  const auto per_patch =
      (pred.narrow(1, 1, pred.size(1) - 1).to(torch::kDouble) - target.to(torch::kDouble))
          .square()
          .mean(-1);
  return (per_patch * m).sum() / m.sum();
}

const char* kModel = R"({"type": "MaskFeat",
  "data_preprocessor": {"mean": [0.0, 0.0, 0.0], "std": [1.0, 1.0, 1.0]},
  "backbone": {"type": "MaskFeatViT", "arch": {"embed_dims": 16, "num_layers": 2,
               "num_heads": 2, "feedforward_channels": 32}, "img_size": 56, "patch_size": 4},
  "neck": {"type": "LinearNeck", "in_channels": 16, "out_channels": 108, "with_avg_pool": false,
           "init_cfg": {"type": "TruncNormal", "layer": "Linear", "std": 0.02, "bias": 0}},
  "head": {"type": "MaskFeatPretrainHead",
           "loss": {"type": "PixelReconstructionLoss", "criterion": "L2"}},
  "target_generator": {"type": "HOGGenerator", "nbins": 9, "pool": 2, "gaussian_window": 8}})";

std::shared_ptr<Algorithm> make_model() {
  return build<Algorithm>(registry().config(Json::parse(kModel, "t"), "model"));
}

// Copies the fixture's 'model.<name>' into every parameter and buffer of the model but the
// target generator's (fixed buffers).
void load_reference_model(torch::nn::Module& m) {
  torch::NoGradGuard no_grad;
  for (auto& p : m.named_parameters()) p.value().copy_(fixture("model." + p.key()));
  for (auto& b : m.named_buffers())
    if (b.key().rfind("target_generator.", 0) != 0) b.value().copy_(fixture("model." + b.key()));
}

DataSamples with_mask(const torch::Tensor& mask) {
  DataSamples s;
  s.data["mask"] = mask;
  return s;
}

} // namespace

// ---- HOGGenerator ----------------------------------------------------------------------

TEST(HOGGeneratorTest, MatchesUpstreamAndAnIndependentFormulation) {
  test::load_plugins();
  const auto hog = make_hog(9, 2, 8);
  const auto x = fixture("hog.x");
  const auto ours = hog->forward(x);
  ASSERT_EQ(ours.sizes(), (std::vector<int64_t>{2, 196, 108}));
  test::expect_allclose(ours, fixture("hog.out"), 1e-4, 1e-6, "HOG vs upstream (window 8)");
  test::expect_allclose(ours, independent_hog(x, 9, 2, 8), 1e-4, 1e-6, "HOG vs loops");
  EXPECT_FALSE(ours.requires_grad());

  // A window as large as the image, 6 bins, 1-pixel cells.
  const auto whole = make_hog(6, 1, 28);
  const auto x28 = fixture("hog.x28");
  const auto ours28 = whole->forward(x28);
  test::expect_allclose(ours28, fixture("hog.out28"), 1e-4, 1e-6, "HOG vs upstream (window 28)");
  // No loop comparison here: with 1-pixel cells a pixel whose angle sits on a bin edge flips
  // bin between float (ours, upstream) and the loops' double.
}

TEST(HOGGeneratorTest, VerticalEdgeFallsInTheHorizontalGradientBin) {
  // Dark left half, bright right half: the gradient is horizontal (gy = 0, gx < 0), so
  // atan2(gx, 0) = -pi/2 -> -nbins / 2 -> floor -5 -> bin 4 of 9 at every edge cell, and no
  // gradient anywhere else.
  auto img = torch::zeros({1, 3, 56, 56});
  img.narrow(3, 28, 28).fill_(1.0);
  test::load_plugins();
  const auto hog = make_hog(9, 2, 0);
  const auto out = hog->forward(img).reshape({1, 14, 14, 3, 9, 2, 2});
  // Pixel columns 27 and 28 carry the edge: cell column 13 and 14 = patch column 6 (dx 1)
  // and 7 (dx 0).
  for (int64_t row = 0; row < 14; ++row) {
    for (int64_t ch = 0; ch < 3; ++ch) {
      const auto left = out.index({0, row, 6, ch, torch::indexing::Slice(), 0, 1});
      const auto right = out.index({0, row, 7, ch, torch::indexing::Slice(), 0, 0});
      EXPECT_EQ(left.argmax().item<int64_t>(), 4) << "row " << row;
      EXPECT_EQ(right.argmax().item<int64_t>(), 4) << "row " << row;
      EXPECT_NEAR(left[4].item<double>(), 1.0, 1e-6);
      EXPECT_NEAR(right[4].item<double>(), 1.0, 1e-6);
    }
  }
  // Every other cell is empty.
  const auto total = out.abs().sum().item<double>();
  EXPECT_NEAR(total, 28 * 2 * 3 * 1.0, 1e-4); // 28 cell rows x 2 cells x 3 channels

  // The transposed image (a horizontal edge): gx = 0, gy < 0, atan2(0, gy) = pi -> bin 0.
  const auto t = hog->forward(img.transpose(2, 3).contiguous()).reshape({1, 14, 14, 3, 9, 2, 2});
  EXPECT_EQ(t.index({0, 6, 3, 0, torch::indexing::Slice(), 1, 0}).argmax().item<int64_t>(), 0);
}

TEST(HOGGeneratorTest, RefusesImagesThatDoNotTile) {
  test::load_plugins();
  const auto hog = make_hog(9, 8, 16);
  EXPECT_THROW((void)hog->forward(torch::zeros({1, 3, 56, 56})), c10::Error); // 56 % 16
  const auto small = make_hog(9, 8, 0);
  EXPECT_THROW((void)small->forward(torch::zeros({1, 3, 64, 64})), c10::Error); // 8 cells < 14
  EXPECT_NE(test::model_config_error(registry(), Json::parse(R"({"type": "MaskFeat",
      "backbone": {"type": "MaskFeatViT"}, "neck": {"type": "LinearNeck", "in_channels": 768,
      "out_channels": 108, "with_avg_pool": false},
      "head": {"type": "MaskFeatPretrainHead", "loss": {"type": "PixelReconstructionLoss",
               "criterion": "L2"}},
      "target_generator": {"type": "HOGGenerator", "nbins": 0}})",
                                                             "t"))
                .find("model.target_generator.nbins"),
            std::string::npos);
}

// ---- PixelReconstructionLoss and MaskFeatPretrainHead ----------------------------------

TEST(MaskFeatPretrainHeadTest, MaskedL2MatchesUpstreamAndTheFormula) {
  test::load_plugins();
  const auto pred = fixture("head.pred"), target = fixture("head.target");
  const auto mask = fixture("head.mask");
  const auto head = make_head(R"({"type": "PixelReconstructionLoss", "criterion": "L2"})");
  const auto loss = head->loss({pred, mask}, target);
  test::expect_allclose(loss, fixture("head.loss"), 1e-5, 0, "head vs upstream");
  test::expect_allclose(loss, independent_head_loss(pred, target, mask), 1e-5, 0,
                        "head vs formula");
  // Changing an unmasked patch's prediction changes nothing.
  auto other = pred.clone();
  const auto flat = mask.reshape({2, -1});
  int64_t unmasked = 0;
  while (flat[0][unmasked].item<int64_t>() != 0) ++unmasked;
  other.index_put_({0, 1 + unmasked}, 100.0);
  EXPECT_DOUBLE_EQ(head->loss({other, mask}, target).item<double>(), loss.item<double>());
}

TEST(PixelReconstructionLossTest, L1WithoutMaskMatchesUpstream) {
  test::load_plugins();
  const auto loss = build<Loss>(registry().config(
      Json::parse(R"({"type": "PixelReconstructionLoss", "criterion": "L1"})", "t"), "loss"));
  const auto p = fixture("head.pred").narrow(1, 1, 16), t = fixture("head.target");
  const auto ours = loss->forward(p, t);
  test::expect_allclose(ours, fixture("l1.loss"), 1e-5, 0, "L1 vs upstream");
  test::expect_allclose(ours, (p - t).abs().mean(), 1e-6, 0, "L1 vs formula");
}

TEST(MaskFeatPretrainHeadTest, RefusesALossChannel) {
  test::load_plugins();
  try {
    (void)make_head(R"({"type": "PixelReconstructionLoss", "criterion": "L2", "channel": 3})");
    ADD_FAILURE() << "no error";
  } catch (const ConfigError& e) {
    EXPECT_NE(std::string(e.what()).find("model.head.loss"), std::string::npos) << e.what();
  }
  EXPECT_THROW((void)make_head(R"({"type": "PixelReconstructionLoss", "criterion": "L3"})"),
               ConfigError);
}

// ---- MaskFeatViT and MaskFeat ----------------------------------------------------------

TEST(MaskFeatTest, BackboneAndLossMatchUpstream) {
  test::load_plugins();
  auto model = make_model();
  load_reference_model(*model);
  model->eval();
  const auto img = fixture("model.img");
  const auto mask = fixture("model.mask");
  const auto samples = with_mask(mask);
  const auto losses = model->loss({img}, samples);
  ASSERT_EQ(losses.size(), 1u);
  test::expect_allclose(losses.at("loss"), fixture("model.loss"), 1e-5, 0, "loss vs upstream");

  // The same loss from its parts: our backbone's tokens vs upstream's, then the neck, the
  // HOG target and the masked mean written here.
  const auto params = model->named_parameters();
  const auto fc_w = params["neck.fc.weight"], fc_b = params["neck.fc.bias"];
  const auto latent = fixture("model.latent");
  const auto pred = torch::matmul(latent, fc_w.t()) + fc_b;
  const auto hog = independent_hog(img, 9, 2, 8);
  test::expect_allclose(losses.at("loss"), independent_head_loss(pred, hog, mask), 1e-5, 0,
                        "loss vs formula");
}

TEST(MaskFeatTest, MaskedPatchesSeeOnlyTheMaskToken) {
  test::load_plugins();
  // The tiny model with a head that records its predictions.
  Json cfg = Json::parse(kModel, "t");
  cfg.set("head", Json::object({{"type", "MaskFeatTestCaptureHead"}}));
  auto model = build<Algorithm>(capture_registry().config(cfg, "model"));
  model->eval();
  const auto img = torch::randn({1, 3, 56, 56});
  auto mask = torch::zeros({1, 14, 14}, torch::kLong);
  mask.index_put_({0, torch::indexing::Slice(0, 7), torch::indexing::Slice()}, 1);
  const auto samples = with_mask(mask);
  auto predictions = [&](const torch::Tensor& x) {
    torch::NoGradGuard no_grad;
    (void)model->loss({x}, samples);
    return CaptureHead::last.clone();
  };
  const auto base = predictions(img);
  ASSERT_EQ(base.sizes(), (std::vector<int64_t>{1, 197, 108}));
  // Changing the masked top half of the image changes no prediction; changing the visible
  // bottom half changes them.
  auto top = img.clone();
  top.narrow(2, 0, 28).normal_();
  auto bottom = img.clone();
  bottom.narrow(2, 28, 28).normal_();
  EXPECT_TRUE(torch::allclose(predictions(top), base, 1e-6, 1e-7));
  EXPECT_FALSE(torch::allclose(predictions(bottom), base, 1e-3, 1e-4));

  const auto params = model->named_parameters();
  EXPECT_EQ(params["backbone.mask_token"].sizes(), (std::vector<int64_t>{1, 1, 16}));
  // The plain forward (evaluation) is the mmcls ViT: [patch map, cls token].
  const auto feats = model->extract_feat({img});
  ASSERT_EQ(feats.size(), 2u);
  EXPECT_EQ(feats[0].sizes(), (std::vector<int64_t>{1, 16, 14, 14}));
  EXPECT_EQ(feats[1].sizes(), (std::vector<int64_t>{1, 16}));
}

TEST(MaskFeatTest, GradientsReachTheMaskTokenButNotTheTarget) {
  test::load_plugins();
  auto model = make_model();
  model->train();
  auto mask = torch::zeros({2, 14, 14}, torch::kLong);
  mask.index_put_(
      {torch::indexing::Slice(), torch::indexing::Slice(3, 9), torch::indexing::Slice(2, 12)}, 1);
  const auto loss = model->loss({torch::randn({2, 3, 56, 56})}, with_mask(mask)).at("loss");
  loss.backward();
  const auto params = model->named_parameters();
  ASSERT_TRUE(params["backbone.mask_token"].grad().defined());
  EXPECT_GT(params["backbone.mask_token"].grad().abs().sum().item<double>(), 0.0);
  EXPECT_GT(params["neck.fc.weight"].grad().abs().sum().item<double>(), 0.0);
  for (const auto& b : model->named_buffers())
    if (b.key().rfind("target_generator.", 0) == 0) {
      EXPECT_FALSE(b.value().requires_grad()) << b.key();
    }
}

TEST(MaskFeatTest, ConfigErrorsNameThePlace) {
  test::load_plugins();
  Json cfg = Json::parse(kModel, "t");
  cfg.set("backbone", Json::parse(R"({"type": "VisionTransformer", "arch": {"embed_dims": 16,
      "num_layers": 2, "num_heads": 2, "feedforward_channels": 32}, "img_size": 56,
      "patch_size": 4})",
                                  "t"));
  EXPECT_NE(test::model_config_error(registry(), cfg).find("model.backbone"), std::string::npos);
  Json no_target = Json::parse(kModel, "t");
  no_target.erase("target_generator");
  EXPECT_NE(test::model_config_error(registry(), no_target).find("target_generator"),
            std::string::npos);
}

// ---- BEiTMaskGenerator -----------------------------------------------------------------

TEST(BEiTMaskGeneratorTest, MasksExactlyTheConfiguredCount) {
  test::load_plugins();
  struct Case {
    const char* json;
    int64_t h, w, count;
  };
  const Case cases[] = {
      {R"({"type": "BEiTMaskGenerator", "input_size": 14, "num_masking_patches": 78,
           "min_num_patches": 15})",
       14, 14, 78},
      {R"({"type": "BEiTMaskGenerator", "input_size": 14, "num_masking_patches": 75,
           "min_num_patches": 16, "max_num_patches": null})",
       14, 14, 75},
      {R"({"type": "BEiTMaskGenerator", "input_size": 14, "num_masking_patches": 75,
           "min_num_patches": 16, "max_num_patches": 75})",
       14, 14, 75},
      {R"({"type": "BEiTMaskGenerator", "input_size": [6, 9], "num_masking_patches": 20,
           "min_num_patches": 4, "min_aspect": 0.5, "max_aspect": 3.0})",
       6, 9, 20},
  };
  for (const auto& c : cases) {
    const auto t = build<Transform>(registry().config(Json::parse(c.json, "t"), "pipeline[0]"));
    double mean_blocks_rows = 0;
    for (uint64_t seed = 0; seed < 200; ++seed) {
      Rng rng(seed);
      Sample s;
      t->apply(s, rng);
      const auto& m = s.tensors.at("mask");
      ASSERT_EQ(m.sizes(), (std::vector<int64_t>{c.h, c.w})) << c.json;
      ASSERT_EQ(m.scalar_type(), torch::kLong);
      EXPECT_EQ(m.sum().item<int64_t>(), c.count) << c.json << " seed " << seed;
      EXPECT_TRUE(((m == 0) | (m == 1)).all().item<bool>());
      mean_blocks_rows += double(m.any(1).sum().item<int64_t>()) / 200.0;
    }
    // Block-wise, not scattered: masked cells share rows (fewer rows than a random mask).
    EXPECT_LT(mean_blocks_rows, double(c.h)) << c.json;
  }
  // Same seed, same mask; another seed, another mask.
  const auto t = build<Transform>(registry().config(Json::parse(cases[0].json, "t"), "p"));
  Rng a(7), b(7), d(8);
  Sample sa, sb, sd;
  t->apply(sa, a);
  t->apply(sb, b);
  t->apply(sd, d);
  EXPECT_TRUE(torch::equal(sa.tensors.at("mask"), sb.tensors.at("mask")));
  EXPECT_FALSE(torch::equal(sa.tensors.at("mask"), sd.tensors.at("mask")));
}

TEST(BEiTMaskGeneratorTest, RefusesImpossibleCounts) {
  test::load_plugins();
  try {
    (void)build<Transform>(registry().config(
        Json::parse(R"({"type": "BEiTMaskGenerator", "input_size": 4, "num_masking_patches": 17})",
                    "t"),
        "train_dataloader.dataset.pipeline[2]"));
    ADD_FAILURE() << "no error";
  } catch (const ConfigError& e) {
    EXPECT_NE(std::string(e.what()).find("pipeline[2].num_masking_patches"), std::string::npos)
        << e.what();
  }
}

// ---- the shipped configs ---------------------------------------------------------------

TEST(MaskFeatTest, TrainsOnTinyFashionMnistWithTheShippedConfig) {
  test::load_plugins();
  test::TinyFmnistRun tiny(48, 8);
  Json cfg = core::load_config_file(std::string(SELFSUP_SOURCE_DIR) +
                                    "/configs/maskfeat/maskfeat_vit-tiny-p4_fmnist.json");
  Json* loader = cfg.find("train_dataloader");
  loader->set("batch_size", 16);
  loader->find("dataset")->set("data_root", tiny.data.string());
  cfg.set("custom_hooks", Json::array());
  cfg.set("train_cfg", Json::parse(R"({"type": "EpochBasedTrainLoop", "max_epochs": 1})", "t"));
  core::Runner runner(cfg, tiny.options);
  auto& model = runner.model();
  const auto token0 = model.named_parameters()["backbone.mask_token"].clone();
  const auto qkv0 = model.named_parameters()["backbone.layers.0.attn.qkv.weight"].clone();
  runner.train();
  // 3 iterations: the encoder and the mask token moved.
  EXPECT_FALSE(torch::equal(token0, model.named_parameters()["backbone.mask_token"]));
  EXPECT_FALSE(torch::equal(qkv0, model.named_parameters()["backbone.layers.0.attn.qkv.weight"]));
}
