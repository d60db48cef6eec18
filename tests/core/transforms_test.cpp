// The core transforms: semantics on small hand-made images, config errors, determinism.
#include <gtest/gtest.h>

#include <chrono>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <map>
#include <string>
#include <thread>
#include <vector>

#include <selfsup/config.h>
#include <selfsup/core/builtins.h>
#include <selfsup/core/data.h>
#include <selfsup/errors.h>
#include <selfsup/registry.h>

#include "test_support.h"

namespace selfsup::core {
namespace {

class TransformTest : public ::testing::Test {
protected:
  void SetUp() override { register_builtins(); }

  // One transform, built as element 0 of a pipeline so errors read "pipeline[0].<key>".
  static std::shared_ptr<Transform> make(const std::string& json) {
    return build<Transform>(Config(Json::parse(json, "test"), "pipeline[0]"));
  }
  static Pipeline pipeline(const std::string& json) {
    return Pipeline(Config(Json::parse(json, "test"), "pipeline"));
  }
  static Sample apply(const std::string& json, Image img, uint64_t seed = 0) {
    Sample s;
    s.img = std::move(img);
    Rng rng(seed);
    make(json)->apply(s, rng);
    return s;
  }
  static void expect_config_error(const std::string& json, const std::string& needle) {
    EXPECT_TRUE(test::has_substr(test::message_of<ConfigError>([&] { (void)make(json); }), needle))
        << json;
  }
};

Image gray(int h, int w, std::vector<uint8_t> values) {
  Image img(h, w, 1);
  img.data = std::move(values);
  return img;
}

Image uniform(int h, int w, int c, uint8_t v) {
  Image img(h, w, c);
  std::fill(img.data.begin(), img.data.end(), v);
  return img;
}

// h x w x 3 with pixel (y, x) = (B, G, R) = (10 y + x, 50 + x, 200 - y).
Image color(int h, int w) {
  Image img(h, w, 3);
  for (int y = 0; y < h; ++y)
    for (int x = 0; x < w; ++x) {
      uint8_t* p = &img.data[(size_t(y) * w + x) * 3];
      p[0] = uint8_t(10 * y + x);
      p[1] = uint8_t(50 + x);
      p[2] = uint8_t(200 - y);
    }
  return img;
}

Image ramp(int h, int w) {
  Image img(h, w, 1);
  for (size_t i = 0; i < img.data.size(); ++i) img.data[i] = uint8_t(i * 7 % 256);
  return img;
}

// --- RandomSolarize -------------------------------------------------------------------

TEST_F(TransformTest, SolarizeInvertsAtOrAboveThreshold) {
  const Sample s =
      apply(R"({"type": "RandomSolarize", "prob": 1.0})", gray(1, 5, {0, 127, 128, 200, 255}));
  EXPECT_EQ(s.img.data, (std::vector<uint8_t>{0, 127, 127, 55, 0}));
  const Sample t =
      apply(R"({"type": "RandomSolarize", "threshold": 10, "prob": 1.0})", gray(1, 3, {9, 10, 11}));
  EXPECT_EQ(t.img.data, (std::vector<uint8_t>{9, 245, 244}));
}

TEST_F(TransformTest, SolarizeProbZeroIsIdentity) {
  const Sample s = apply(R"({"type": "RandomSolarize", "prob": 0.0})", gray(1, 3, {0, 200, 255}));
  EXPECT_EQ(s.img.data, (std::vector<uint8_t>{0, 200, 255}));
}

// --- RandomFlip -----------------------------------------------------------------------

TEST_F(TransformTest, FlipHorizontalVerticalDiagonal) {
  const Image img = gray(2, 3, {1, 2, 3, 4, 5, 6});
  EXPECT_EQ(apply(R"({"type": "RandomFlip", "prob": 1.0})", img).img.data,
            (std::vector<uint8_t>{3, 2, 1, 6, 5, 4}));
  EXPECT_EQ(apply(R"({"type": "RandomFlip", "prob": 1.0, "direction": "vertical"})", img).img.data,
            (std::vector<uint8_t>{4, 5, 6, 1, 2, 3}));
  EXPECT_EQ(apply(R"({"type": "RandomFlip", "prob": 1.0, "direction": "diagonal"})", img).img.data,
            (std::vector<uint8_t>{6, 5, 4, 3, 2, 1}));
  EXPECT_EQ(apply(R"({"type": "RandomFlip", "prob": 0.0})", img).img.data, img.data);
}

TEST_F(TransformTest, FlipKeepsPixelsWhole) {
  Image img(1, 3, 3);
  img.data = {1, 2, 3, 4, 5, 6, 7, 8, 9};
  EXPECT_EQ(apply(R"({"type": "RandomFlip", "prob": 1.0})", img).img.data,
            (std::vector<uint8_t>{7, 8, 9, 4, 5, 6, 1, 2, 3}));
}

TEST_F(TransformTest, FlipProbabilityIsRoughlyHonoured) {
  auto t = make(R"({"type": "RandomFlip", "prob": 0.3})");
  int flipped = 0;
  for (uint64_t seed = 0; seed < 2000; ++seed) {
    Sample s;
    s.img = gray(1, 2, {1, 2});
    Rng rng(seed);
    t->apply(s, rng);
    flipped += s.img.data[0] == 2;
  }
  EXPECT_NEAR(flipped / 2000.0, 0.3, 0.05);
}

// --- RandomGrayscale ------------------------------------------------------------------

TEST_F(TransformTest, GrayscaleUsesNormalisedChannelWeights) {
  Image img(1, 2, 3);
  img.data = {10, 20, 30, 200, 100, 0}; // BGR
  const Sample s = apply(R"({"type": "RandomGrayscale", "prob": 1.0, "keep_channels": true,
                             "channel_weights": [0.114, 0.587, 0.2989]})",
                         img);
  ASSERT_EQ(s.img.channels, 3);
  const double sum = 0.114 + 0.587 + 0.2989;
  // mmcv truncates the weighted sum (astype uint8): 21.85 -> 21, 81.51 -> 81.
  const auto g0 = uint8_t(std::floor((0.114 * 10 + 0.587 * 20 + 0.2989 * 30) / sum));
  const auto g1 = uint8_t(std::floor((0.114 * 200 + 0.587 * 100) / sum));
  EXPECT_EQ(g0, 21);
  EXPECT_EQ(g1, 81);
  EXPECT_EQ(s.img.data, (std::vector<uint8_t>{g0, g0, g0, g1, g1, g1}));

  const Sample b =
      apply(R"({"type": "RandomGrayscale", "prob": 1.0, "channel_weights": [1, 0, 0]})", img);
  ASSERT_EQ(b.img.channels, 1); // keep_channels defaults to false
  EXPECT_EQ(b.img.data, (std::vector<uint8_t>{10, 200}));

  // Equal weights: mmcv sums 200/3 + 100/3 + 0/3 in double, 99.99999999999999 -> 99.
  const Sample m = apply(R"({"type": "RandomGrayscale", "prob": 1.0})", img);
  EXPECT_EQ(m.img.data, (std::vector<uint8_t>{20, 99}));
}

TEST_F(TransformTest, GrayscaleLeavesGreyAndUnselectedImages) {
  EXPECT_EQ(apply(R"({"type": "RandomGrayscale", "prob": 1.0})", gray(1, 2, {3, 4})).img.data,
            (std::vector<uint8_t>{3, 4}));
  const Image c = color(2, 2);
  const Sample s = apply(R"({"type": "RandomGrayscale", "prob": 0.0})", c);
  EXPECT_EQ(s.img.channels, 3);
  EXPECT_EQ(s.img.data, c.data);
}

TEST_F(TransformTest, GrayscaleConfigErrors) {
  expect_config_error(R"({"type": "RandomGrayscale", "channel_weights": [1, 1]})",
                      "pipeline[0].channel_weights");
  expect_config_error(R"({"type": "RandomGrayscale", "prob": -0.1})", "pipeline[0].prob");
  expect_config_error(R"({"type": "RandomGrayscale", "keep_channel": true})",
                      "pipeline[0].keep_channel");
}

// --- RandomResizedCrop ----------------------------------------------------------------

TEST_F(TransformTest, ResizedCropOutputSize) {
  for (uint64_t seed = 0; seed < 50; ++seed) {
    const Sample s = apply(R"({"type": "RandomResizedCrop", "size": 32})", ramp(28, 28), seed);
    EXPECT_EQ(s.img.height, 32);
    EXPECT_EQ(s.img.width, 32);
    EXPECT_EQ(s.img.channels, 1);
    const Sample t = apply(R"({"type": "RandomResizedCrop", "size": [8, 12],
                               "interpolation": "bicubic", "backend": "pillow"})",
                           color(20, 30), seed);
    EXPECT_EQ(t.img.height, 8);
    EXPECT_EQ(t.img.width, 12);
    EXPECT_EQ(t.img.channels, 3);
  }
}

TEST_F(TransformTest, ResizedCropFullScaleIsIdentity) {
  const Image img = ramp(16, 16);
  const Sample s = apply(R"({"type": "RandomResizedCrop", "size": 16, "scale": [1, 1],
                             "ratio": [1, 1], "interpolation": "nearest"})",
                         img);
  EXPECT_EQ(s.img.data, img.data);
}

TEST_F(TransformTest, ResizedCropFallsBackToCentralCrop) {
  // A 10x20 image cannot hold a square of area 200: the fallback is the central 10x10.
  Image img(10, 20, 1);
  for (int y = 0; y < 10; ++y)
    for (int x = 0; x < 20; ++x) img.data[size_t(y) * 20 + x] = uint8_t(x);
  const Sample s = apply(R"({"type": "RandomResizedCrop", "size": 10, "scale": [1, 1],
                             "ratio": [1, 1]})",
                         img);
  ASSERT_EQ(s.img.width, 10);
  for (int x = 0; x < 10; ++x) EXPECT_EQ(s.img.data[size_t(x)], x + 5);
}

TEST_F(TransformTest, ResizedCropConfigErrors) {
  expect_config_error(R"({"type": "RandomResizedCrop"})", "pipeline[0].size");
  expect_config_error(R"({"type": "RandomResizedCrop", "size": 0})", "pipeline[0].size");
  expect_config_error(R"({"type": "RandomResizedCrop", "size": [1, 2, 3]})", "pipeline[0].size");
  expect_config_error(R"({"type": "RandomResizedCrop", "size": 8, "scale": [0.9, 0.1]})",
                      "pipeline[0].scale");
  expect_config_error(R"({"type": "RandomResizedCrop", "size": 8, "ratio": [0, 1]})",
                      "pipeline[0].ratio");
  expect_config_error(R"({"type": "RandomResizedCrop", "size": 8, "interpolation": "cubic"})",
                      "pipeline[0].interpolation");
  expect_config_error(R"({"type": "RandomResizedCrop", "size": 8, "backend": "torch"})",
                      "pipeline[0].backend");
  expect_config_error(R"({"type": "RandomResizedCrop", "size": 8, "max_attempts": -1})",
                      "pipeline[0].max_attempts");
}

// --- ColorJitter ----------------------------------------------------------------------

TEST_F(TransformTest, ColorJitterBrightnessStaysInFactorBounds) {
  auto t = make(R"({"type": "ColorJitter", "brightness": 0.5})");
  int lo = 255, hi = 0;
  for (uint64_t seed = 0; seed < 300; ++seed) {
    Sample s;
    s.img = uniform(2, 2, 3, 100);
    Rng rng(seed);
    t->apply(s, rng);
    const int v = s.img.data[0];
    for (uint8_t x : s.img.data) ASSERT_EQ(x, v); // a uniform factor
    lo = std::min(lo, v);
    hi = std::max(hi, v);
  }
  EXPECT_GE(lo, 50);
  EXPECT_LE(hi, 150);
  EXPECT_LT(lo, 60); // the whole range is reached
  EXPECT_GT(hi, 140);
}

TEST_F(TransformTest, ColorJitterContrastKeepsUniformImages) {
  const Sample s =
      apply(R"({"type": "ColorJitter", "contrast": [0.2, 1.8]})", uniform(3, 3, 3, 77), 5);
  for (uint8_t x : s.img.data) EXPECT_EQ(x, 77);
  const Sample z = apply(R"({"type": "ColorJitter", "contrast": [0, 0]})", ramp(4, 4));
  for (uint8_t x : z.img.data) EXPECT_EQ(x, z.img.data[0]); // factor 0: the mean grey
}

TEST_F(TransformTest, ColorJitterSaturationZeroGivesGrey) {
  const Sample s = apply(R"({"type": "ColorJitter", "saturation": [0, 0]})", color(3, 3));
  for (size_t i = 0; i < s.img.data.size(); i += 3) {
    EXPECT_EQ(s.img.data[i], s.img.data[i + 1]);
    EXPECT_EQ(s.img.data[i], s.img.data[i + 2]);
  }
}

TEST_F(TransformTest, ColorJitterHueRotatesColourKeepsGrey) {
  Image img(1, 2, 3);
  img.data = {0, 0, 255, 90, 90, 90}; // pure red, grey
  const Sample s = apply(R"({"type": "ColorJitter", "hue": [0.33, 0.33]})", img);
  EXPECT_GT(s.img.data[1], 200); // red -> green
  EXPECT_LT(s.img.data[2], 60);
  EXPECT_EQ(s.img.data[3], 90);
  EXPECT_EQ(s.img.data[4], 90);
  EXPECT_EQ(s.img.data[5], 90);
}

TEST_F(TransformTest, ColorJitterSaturationAndHueIgnoreGreyImages) {
  const Image img = ramp(4, 4);
  const Sample s = apply(R"({"type": "ColorJitter", "saturation": 0.9, "hue": 0.5})", img, 3);
  EXPECT_EQ(s.img.channels, 1);
  EXPECT_EQ(s.img.data, img.data);
}

TEST_F(TransformTest, ColorJitterConfigErrors) {
  expect_config_error(R"({"type": "ColorJitter", "brightness": -1})", "pipeline[0].brightness");
  expect_config_error(R"({"type": "ColorJitter", "contrast": [2, 1]})", "pipeline[0].contrast");
  expect_config_error(R"({"type": "ColorJitter", "hue": 0.7})", "pipeline[0].hue");
  expect_config_error(R"({"type": "ColorJitter", "hue": [-0.6, 0.1]})", "pipeline[0].hue");
  expect_config_error(R"({"type": "ColorJitter", "saturation": "lots"})", "pipeline[0].saturation");
  expect_config_error(R"({"type": "ColorJitter", "brightnes": 0.4})", "pipeline[0].brightnes");
}

// --- RandomGaussianBlur ---------------------------------------------------------------

TEST_F(TransformTest, GaussianBlurSpreadsAnImpulse) {
  Image img = uniform(9, 9, 1, 0);
  img.data[4 * 9 + 4] = 255;
  const Sample s = apply(
      R"({"type": "RandomGaussianBlur", "sigma_min": 1.0, "sigma_max": 1.0, "prob": 1.0})", img);
  const int centre = s.img.data[4 * 9 + 4];
  EXPECT_LT(centre, 100);
  EXPECT_GT(centre, 20);
  EXPECT_GT(s.img.data[4 * 9 + 5], 0);
  EXPECT_EQ(s.img.data[4 * 9 + 5], s.img.data[4 * 9 + 3]); // symmetric
  int total = 0;
  for (uint8_t v : s.img.data) total += v;
  EXPECT_NEAR(total, 255, 12);
  const Sample u =
      apply(R"({"type": "RandomGaussianBlur", "sigma_min": 0.1, "sigma_max": 2.0, "prob": 1.0})",
            uniform(5, 5, 3, 66));
  for (uint8_t v : u.img.data) EXPECT_EQ(v, 66);
  const Sample n = apply(
      R"({"type": "RandomGaussianBlur", "sigma_min": 1.0, "sigma_max": 2.0, "prob": 0.0})", img);
  EXPECT_EQ(n.img.data, img.data);
}

TEST_F(TransformTest, GaussianBlurConfigErrors) {
  expect_config_error(R"({"type": "RandomGaussianBlur", "sigma_min": 1.0})",
                      "pipeline[0].sigma_max");
  expect_config_error(R"({"type": "RandomGaussianBlur", "sigma_min": 2.0, "sigma_max": 1.0})",
                      "pipeline[0].sigma_max");
  expect_config_error(
      R"({"type": "RandomGaussianBlur", "sigma_min": 0.1, "sigma_max": 1.0, "prob": 2})",
      "pipeline[0].prob");
}

// --- RandomApply ----------------------------------------------------------------------

TEST_F(TransformTest, RandomApplyAllOrNothing) {
  const std::string inner =
      R"("transforms": [{"type": "RandomSolarize", "threshold": 0, "prob": 1.0},
                                              {"type": "RandomFlip", "prob": 1.0}])";
  const Image img = gray(1, 3, {0, 10, 20});
  EXPECT_EQ(apply(R"({"type": "RandomApply", "prob": 1.0, )" + inner + "}", img).img.data,
            (std::vector<uint8_t>{235, 245, 255}));
  EXPECT_EQ(apply(R"({"type": "RandomApply", "prob": 0.0, )" + inner + "}", img).img.data,
            img.data);
}

TEST_F(TransformTest, RandomApplyErrorsNameNestedPath) {
  expect_config_error(
      R"({"type": "RandomApply", "transforms": [{"type": "RandomFlip", "prob": 0.5},
                                                {"type": "RandomFlip", "prob": 7}]})",
      "pipeline[0].transforms[1].prob");
  expect_config_error(R"({"type": "RandomApply", "transforms": [{"type": "Nope"}]})",
                      "pipeline[0].transforms[0].type");
  expect_config_error(R"({"type": "RandomApply"})", "pipeline[0].transforms");
}

// --- MultiView / PackSelfSupInputs / ColorConvert -------------------------------------

TEST_F(TransformTest, MultiViewCollectsViewsInPipelineOrder) {
  const Sample s = apply(R"({"type": "MultiView", "num_views": [2, 3], "transforms": [
      [{"type": "RandomFlip", "prob": 0.0}],
      [{"type": "RandomSolarize", "threshold": 0, "prob": 1.0}]]})",
                         gray(1, 2, {1, 2}));
  ASSERT_EQ(s.views.size(), 5u);
  EXPECT_TRUE(s.img.empty());
  for (size_t v = 0; v < 2; ++v) EXPECT_EQ(s.views[v].data, (std::vector<uint8_t>{1, 2}));
  for (size_t v = 2; v < 5; ++v) EXPECT_EQ(s.views[v].data, (std::vector<uint8_t>{254, 253}));

  const Sample one = apply(R"({"type": "MultiView", "num_views": 2, "transforms": [
      [{"type": "RandomResizedCrop", "size": 8}]]})",
                           ramp(28, 28));
  ASSERT_EQ(one.views.size(), 2u);
  EXPECT_EQ(one.views[1].height, 8);
  EXPECT_NE(one.views[0].data, one.views[1].data); // independent random crops
}

TEST_F(TransformTest, MultiViewConfigErrors) {
  expect_config_error(R"({"type": "MultiView", "num_views": [2, 2], "transforms": [[]]})",
                      "pipeline[0].num_views");
  expect_config_error(R"({"type": "MultiView", "num_views": [0], "transforms": [[]]})",
                      "pipeline[0].num_views[0]");
  expect_config_error(
      R"({"type": "MultiView", "num_views": 1, "transforms": [{"type": "RandomFlip"}]})",
      "pipeline[0].transforms[0]");
  expect_config_error(R"({"type": "MultiView", "num_views": [1, 1], "transforms": [[],
      [{"type": "RandomFlip", "prob": 0.5, "direction": "up"}]]})",
                      "pipeline[0].transforms[1][0].direction");
}

TEST_F(TransformTest, TransformsAfterMultiViewFailClearly) {
  Pipeline p = pipeline(R"([{"type": "MultiView", "num_views": 1, "transforms": [[]]},
                            {"type": "RandomFlip", "prob": 1.0}])");
  Sample s;
  s.img = gray(1, 1, {1});
  Rng rng(0);
  EXPECT_THROW(p.apply(s, rng), ValueError);
}

TEST_F(TransformTest, PackMovesImageIntoViews) {
  const Sample s =
      apply(R"({"type": "PackSelfSupInputs", "algorithm_keys": ["gt_label", "sample_idx"]})",
            gray(1, 2, {5, 6}));
  ASSERT_EQ(s.views.size(), 1u);
  EXPECT_TRUE(s.img.empty());
  EXPECT_EQ(s.views[0].data, (std::vector<uint8_t>{5, 6}));
  Pipeline p = pipeline(R"([{"type": "MultiView", "num_views": 3, "transforms": [[]]},
                            {"type": "PackSelfSupInputs", "meta_keys": ["sample_idx"]}])");
  Sample m;
  m.img = gray(1, 1, {9});
  Rng rng(0);
  p.apply(m, rng);
  EXPECT_EQ(m.views.size(), 3u);
}

TEST_F(TransformTest, PackRejectsBadKeyListsNamingElement) {
  expect_config_error(R"({"type": "PackSelfSupInputs", "algorithm_keys": ["mask", "mask"]})",
                      "pipeline[0].algorithm_keys[1]");
  expect_config_error(R"({"type": "PackSelfSupInputs", "meta_keys": [""]})",
                      "pipeline[0].meta_keys[0]");
  expect_config_error(R"({"type": "PackSelfSupInputs", "pseudo_label_keys": "rot_label"})",
                      "pipeline[0].pseudo_label_keys");
  expect_config_error(R"({"type": "PackSelfSupInputs", "key": "imgs"})", "pipeline[0].key");
}

// A sample as a pipeline leaves it before packing: an image and named values.
Sample named_sample() {
  Sample s;
  s.img = gray(1, 2, {5, 6});
  s.gt_label = 3;
  s.sample_idx = 7;
  s.tensors["mask"] = torch::tensor({1, 0, 1, 1}, torch::kBool).reshape({2, 2});
  s.tensors["rot_label"] = torch::tensor({0, 1, 2, 3}, torch::kInt64);
  s.tensors["unlisted"] = torch::zeros({3});
  s.strings["img_path"] = "train/cat/0007.png";
  s.strings["unlisted_text"] = "x";
  return s;
}

TEST_F(TransformTest, PackPutsNamedValuesWhereAlgorithmsReadThem) {
  Sample s = named_sample();
  const torch::Tensor mask = s.tensors["mask"];
  Rng rng(0);
  make(R"({"type": "PackSelfSupInputs", "algorithm_keys": ["gt_label", "sample_idx", "mask"],
           "pseudo_label_keys": ["rot_label", "gt_label"],
           "meta_keys": ["img_path", "sample_idx"]})")
      ->apply(s, rng);
  ASSERT_EQ(s.views.size(), 1u);
  EXPECT_EQ(s.views[0].data, (std::vector<uint8_t>{5, 6}));
  // algorithm_keys: on the data sample itself; gt_label and sample_idx are batched always.
  ASSERT_EQ(s.data.size(), 1u);
  EXPECT_TRUE(torch::equal(s.data.at("mask"), mask));
  // pseudo_label_keys: any tensor, or gt_label / sample_idx as an int64 scalar.
  ASSERT_EQ(s.pseudo_label.size(), 2u);
  EXPECT_TRUE(torch::equal(s.pseudo_label.at("rot_label"), torch::arange(4)));
  EXPECT_EQ(s.pseudo_label.at("gt_label").dim(), 0);
  EXPECT_EQ(s.pseudo_label.at("gt_label").scalar_type(), torch::kInt64);
  EXPECT_EQ(s.pseudo_label.at("gt_label").item<int64_t>(), 3);
  // meta_keys: text.
  EXPECT_EQ(s.meta, (std::map<std::string, std::string>{{"img_path", "train/cat/0007.png"},
                                                        {"sample_idx", "7"}}));
  // What no list names is dropped, as in MMSelfSup.
  EXPECT_TRUE(s.tensors.empty());
  EXPECT_TRUE(s.strings.empty());
}

TEST_F(TransformTest, PackListedKeyMissingNamesElementPathAndKey) {
  auto expect_value_error = [](const std::string& json, const std::vector<std::string>& needles) {
    Sample s = named_sample();
    Rng rng(0);
    auto t = make(json);
    const std::string msg = test::message_of<ValueError>([&] { t->apply(s, rng); });
    for (const auto& needle : needles) EXPECT_TRUE(test::has_substr(msg, needle)) << json;
  };
  expect_value_error(
      R"({"type": "PackSelfSupInputs", "algorithm_keys": ["gt_label", "mask_"]})",
      {"pipeline[0].algorithm_keys[1]", "'mask_'", "sample 7", "'mask'", "'img_path'"});
  expect_value_error(R"({"type": "PackSelfSupInputs", "pseudo_label_keys": ["clustering_label"]})",
                     {"pipeline[0].pseudo_label_keys[0]", "'clustering_label'"});
  expect_value_error(R"({"type": "PackSelfSupInputs", "meta_keys": ["ori_shape"]})",
                     {"pipeline[0].meta_keys[0]", "'ori_shape'"});
  // A value of the wrong sort: tensors are not meta, strings are not tensors.
  expect_value_error(R"({"type": "PackSelfSupInputs", "meta_keys": ["mask"]})",
                     {"pipeline[0].meta_keys[0]", "'mask' is a tensor"});
  expect_value_error(R"({"type": "PackSelfSupInputs", "algorithm_keys": ["img_path"]})",
                     {"pipeline[0].algorithm_keys[0]", "'img_path' is a string"});
}

TEST_F(TransformTest, MultiViewKeepsNamedValuesForPacking) {
  Pipeline p = pipeline(R"([{"type": "MultiView", "num_views": 2, "transforms": [[
                              {"type": "RandomFlip", "prob": 1.0}]]},
                            {"type": "PackSelfSupInputs", "algorithm_keys": ["mask"],
                             "meta_keys": ["img_path"]}])");
  Sample s = named_sample();
  const torch::Tensor mask = s.tensors["mask"].clone();
  Rng rng(0);
  p.apply(s, rng);
  ASSERT_EQ(s.views.size(), 2u);
  EXPECT_EQ(s.views[1].data, (std::vector<uint8_t>{6, 5}));
  EXPECT_TRUE(torch::equal(s.data.at("mask"), mask));
  EXPECT_EQ(s.meta.at("img_path"), "train/cat/0007.png");
}

TEST_F(TransformTest, ColorConvertChannels) {
  const Sample up = apply(R"({"type": "ColorConvert", "channels": 3})", gray(1, 2, {7, 9}));
  ASSERT_EQ(up.img.channels, 3);
  EXPECT_EQ(up.img.data, (std::vector<uint8_t>{7, 7, 7, 9, 9, 9}));
  Image c(1, 1, 3);
  c.data = {0, 0, 255}; // red
  const Sample down = apply(R"({"type": "ColorConvert", "channels": 1})", c);
  ASSERT_EQ(down.img.channels, 1);
  EXPECT_NEAR(down.img.data[0], 76, 1); // 0.299 * 255
  expect_config_error(R"({"type": "ColorConvert", "channels": 2})", "pipeline[0].channels");
}

TEST_F(TransformTest, PipelineErrorsNameElementPath) {
  EXPECT_TRUE(test::has_substr(test::message_of<ConfigError>([] {
                                 (void)pipeline(R"([{"type": "RandomFlip", "prob": 0.5},
                                                    {"type": "RandomFlip", "prob": 1.5}])");
                               }),
                               "pipeline[1].prob"));
  EXPECT_TRUE(test::has_substr(test::message_of<ConfigError>([] {
                                 (void)pipeline(R"([{"type": "RandomFlip", "prob": 0.5, "p": 1}])");
                               }),
                               "pipeline[0].p"));
}

// --- Determinism and speed ------------------------------------------------------------

const char* kSimClrPipeline = R"([
  {"type": "ColorConvert", "channels": 3},
  {"type": "MultiView", "num_views": 2, "transforms": [[
    {"type": "RandomResizedCrop", "size": 32, "backend": "pillow"},
    {"type": "RandomFlip", "prob": 0.5},
    {"type": "RandomApply", "prob": 0.8, "transforms": [
      {"type": "ColorJitter", "brightness": 0.4, "contrast": 0.4, "saturation": 0.4, "hue": 0.1}]},
    {"type": "RandomGrayscale", "prob": 0.2, "keep_channels": true,
     "channel_weights": [0.114, 0.587, 0.2989]},
    {"type": "RandomGaussianBlur", "sigma_min": 0.1, "sigma_max": 2.0, "prob": 0.5},
    {"type": "RandomSolarize", "prob": 0.2}]]},
  {"type": "PackSelfSupInputs", "algorithm_keys": ["sample_idx"]}])";

std::vector<std::vector<uint8_t>> run_pipeline(const Pipeline& p, uint64_t seed) {
  Sample s;
  s.img = ramp(28, 28);
  Rng rng(seed);
  p.apply(s, rng);
  std::vector<std::vector<uint8_t>> out;
  for (const auto& v : s.views) out.push_back(v.data);
  return out;
}

TEST_F(TransformTest, SameSeedSameOutputOnAnyThread) {
  const Pipeline p = pipeline(kSimClrPipeline);
  std::vector<std::vector<std::vector<uint8_t>>> main_results, thread_results;
  for (uint64_t seed = 0; seed < 40; ++seed) main_results.push_back(run_pipeline(p, seed));
  std::thread t([&] {
    for (uint64_t seed = 0; seed < 40; ++seed) thread_results.push_back(run_pipeline(p, seed));
  });
  t.join();
  EXPECT_EQ(main_results, thread_results);
  EXPECT_NE(main_results[0], main_results[1]);
  ASSERT_EQ(main_results[0].size(), 2u);
  EXPECT_EQ(main_results[0][0].size(), 32u * 32u * 3u);
}

} // namespace
} // namespace selfsup::core
