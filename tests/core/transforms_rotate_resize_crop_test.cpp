// RandomRotation (mmselfsup), ResizeEdge (mmcls) and CenterCrop (mmcv), the transforms of the
// DeepCluster and ODC recipes (core/src/transforms/rotate_resize_crop.cpp): against upstream's
// outputs on fixed images (tests/fixtures/transforms: cases.json, the reference file and
// make_rotate_resize_crop_fixtures.py that wrote it), on hand-made images, and config errors.
#include <gtest/gtest.h>

#include <cstdint>
#include <string>
#include <vector>

#include <torch/torch.h>

#include <selfsup/config.h>
#include <selfsup/core/builtins.h>
#include <selfsup/errors.h>
#include <selfsup/registry.h>

#include "plugins/plugin_test_support.h"
#include "test_support.h"

namespace selfsup::core {
namespace {

std::shared_ptr<Transform> make_from(const Json& cfg) {
  register_builtins();
  return build<Transform>(Config(cfg, "pipeline[0]"));
}

std::shared_ptr<Transform> make(const std::string& json) {
  return make_from(Json::parse(json, "test"));
}

Image run(const std::shared_ptr<Transform>& t, Image img, uint64_t seed = 0) {
  Sample s;
  s.img = std::move(img);
  Rng rng(seed);
  t->apply(s, rng);
  return s.img;
}

Image image_of(const torch::Tensor& hwc) {
  const auto t = hwc.contiguous();
  Image img(int(t.size(0)), int(t.size(1)), int(t.size(2)));
  std::copy_n(t.data_ptr<uint8_t>(), t.numel(), img.data.begin());
  return img;
}

torch::Tensor tensor_of(const Image& img) {
  return torch::from_blob(const_cast<uint8_t*>(img.data.data()),
                          {img.height, img.width, img.channels}, torch::kUInt8)
      .clone();
}

Image grey(int h, int w, std::vector<uint8_t> values) {
  Image img(h, w, 1);
  img.data = std::move(values);
  return img;
}

// h x w, one channel, pixel (y, x) = 10 y + x.
Image grid(int h, int w) {
  Image img(h, w, 1);
  for (int y = 0; y < h; ++y)
    for (int x = 0; x < w; ++x) img.data[size_t(y) * w + x] = uint8_t(10 * y + x);
  return img;
}

void expect_config_error(const std::string& json, const std::string& needle) {
  const std::string msg = test::message_of<ConfigError>([&] { (void)make(json); });
  EXPECT_TRUE(test::has_substr(msg, needle)) << json << "\n got: " << msg;
}

TEST(RotateResizeCropTransformTest, MatchUpstreamOnFixedImages) {
  const auto ref = test::load_fixture("tests/fixtures/transforms/rotate_resize_crop_reference.pt");
  const std::string cases_path =
      std::string(SELFSUP_SOURCE_DIR) + "/tests/fixtures/transforms/cases.json";
  const Json cases = Json::parse(test::read_text(cases_path), cases_path);
  ASSERT_GE(cases.size(), 15u);
  for (const auto& c : cases.items()) {
    const std::string name = c.find("name")->as_string();
    const Image in = image_of(test::ref(ref, c.find("input")->as_string()));
    const Image out = run(make_from(*c.find("transform")), in, /*seed=*/3);
    const torch::Tensor theirs = test::ref(ref, name);
    ASSERT_EQ(tensor_of(out).sizes(), theirs.sizes()) << name;
    // The same OpenCV (4.6) and PIL arithmetic: equal bytes.
    EXPECT_TRUE(torch::equal(tensor_of(out), theirs))
        << name << ": "
        << (tensor_of(out).to(torch::kInt) - theirs.to(torch::kInt)).abs().max().item<int>()
        << " largest difference";
  }
}

TEST(RotateResizeCropTransformTest, RotationIsClockwiseAboutTheCentre) {
  // 90 degrees clockwise: the left column becomes the top row.
  const Image in = grey(3, 3, {1, 2, 3, 4, 5, 6, 7, 8, 9});
  const Image out = run(make(R"({"type": "RandomRotation", "degrees": [90, 90]})"), in);
  EXPECT_EQ(out.data, (std::vector<uint8_t>{7, 4, 1, 8, 5, 2, 9, 6, 3}));
  // -90: counter-clockwise.
  const Image ccw = run(make(R"({"type": "RandomRotation", "degrees": [-90, -90]})"), in);
  EXPECT_EQ(ccw.data, (std::vector<uint8_t>{3, 6, 9, 2, 5, 8, 1, 4, 7}));
  // expand: a 2x4 image turned by 90 degrees becomes 4x2, nothing cut.
  const Image wide = grid(2, 4);
  const Image tall =
      run(make(R"({"type": "RandomRotation", "degrees": [90, 90], "expand": true})"), wide);
  ASSERT_EQ(tall.height, 4);
  ASSERT_EQ(tall.width, 2);
  EXPECT_EQ(tall.data, (std::vector<uint8_t>{10, 0, 11, 1, 12, 2, 13, 3}));
  // Without expand the size is kept and the corners come from outside: `fill`.
  const Image cut =
      run(make(R"({"type": "RandomRotation", "degrees": [90, 90], "fill": 99})"), grid(2, 4));
  ASSERT_EQ(cut.height, 2);
  ASSERT_EQ(cut.width, 4);
  EXPECT_EQ(cut.data[0], 99);
}

TEST(RotateResizeCropTransformTest, RotationAnglesStayInTheRange) {
  // A single bright pixel one step right of the centre of a 41x41 image lands at angle t on
  // the circle of radius 10: degrees 10 keeps it within 10 degrees of where it started.
  auto t = make(R"({"type": "RandomRotation", "degrees": 10, "interpolation": "nearest"})");
  bool moved_up = false, moved_down = false;
  for (uint64_t seed = 0; seed < 40; ++seed) {
    Image in(41, 41, 1);
    in.data[size_t(20) * 41 + 30] = 255;
    const Image out = run(t, in, seed);
    int found_y = -1;
    for (int y = 0; y < 41; ++y)
      for (int x = 0; x < 41; ++x)
        if (out.data[size_t(y) * 41 + x] == 255) {
          found_y = y;
          EXPECT_GE(x, 29) << seed; // cos(10 deg) * 10 = 9.85
        }
    if (found_y < 0) continue;                    // nearest sampling may miss a one-pixel dot
    EXPECT_LE(std::abs(found_y - 20), 2) << seed; // sin(10 deg) * 10 = 1.74
    moved_up |= found_y < 20;
    moved_down |= found_y > 20;
  }
  EXPECT_TRUE(moved_up && moved_down) << "both signs of the angle are drawn";
}

TEST(RotateResizeCropTransformTest, ResizeEdgeScalesOneEdgeAndTruncatesTheOther) {
  const Image in = grid(10, 20);
  auto size_of = [&](const std::string& json) {
    const Image out = run(make(json), in);
    return std::vector<int>{out.height, out.width};
  };
  EXPECT_EQ(size_of(R"({"type": "ResizeEdge", "scale": 5})"), (std::vector<int>{5, 10}));
  EXPECT_EQ(size_of(R"({"type": "mmcls.ResizeEdge", "scale": 5, "edge": "long"})"),
            (std::vector<int>{2, 5}));
  EXPECT_EQ(size_of(R"({"type": "ResizeEdge", "scale": 7, "edge": "width"})"),
            (std::vector<int>{3, 7})); // int(7 * 10 / 20) = 3
  EXPECT_EQ(size_of(R"({"type": "ResizeEdge", "scale": 7, "edge": "height",
                        "backend": "pillow"})"),
            (std::vector<int>{7, 14}));
  // Nearest doubling repeats each pixel.
  const Image big = run(make(R"({"type": "ResizeEdge", "scale": 4, "interpolation": "nearest"})"),
                        grey(2, 2, {1, 2, 3, 4}));
  EXPECT_EQ(big.data, (std::vector<uint8_t>{1, 1, 2, 2, 1, 1, 2, 2, 3, 3, 4, 4, 3, 3, 4, 4}));
}

TEST(RotateResizeCropTransformTest, CenterCropRoundsHalfToEvenAndCutsToTheImage) {
  // 5x5 -> 3x3: offsets 1.
  Image out = run(make(R"({"type": "CenterCrop", "crop_size": 3})"), grid(5, 5));
  EXPECT_EQ(out.data, (std::vector<uint8_t>{11, 12, 13, 21, 22, 23, 31, 32, 33}));
  // Width 6, crop 3: (6 - 3) / 2 = 1.5 rounds to 2; height 8, crop 3: 2.5 rounds to 2.
  out = run(make(R"({"type": "CenterCrop", "crop_size": [3, 3]})"), grid(8, 6));
  EXPECT_EQ(out.data, (std::vector<uint8_t>{22, 23, 24, 32, 33, 34, 42, 43, 44}));
  // [w, h] order; a crop wider than the image keeps the whole width.
  out = run(make(R"({"type": "CenterCrop", "crop_size": [9, 1]})"), grid(3, 4));
  ASSERT_EQ(out.height, 1);
  EXPECT_EQ(out.data, (std::vector<uint8_t>{10, 11, 12, 13}));
  // auto_pad: padded at the bottom and right with pad_val, then cropped at the centre.
  out = run(make(R"({"type": "CenterCrop", "crop_size": [4, 2], "auto_pad": true,
                       "pad_cfg": {"type": "Pad", "pad_val": 7}})"),
            grid(1, 2));
  EXPECT_EQ(out.data, (std::vector<uint8_t>{0, 1, 7, 7, 7, 7, 7, 7}));
}

TEST(RotateResizeCropTransformTest, ConfigErrorsNameThePath) {
  expect_config_error(R"({"type": "RandomRotation"})", "pipeline[0].degrees: required key");
  expect_config_error(R"({"type": "RandomRotation", "degrees": -1})",
                      "pipeline[0].degrees: expected a number >= 0 or a list [min, max]");
  expect_config_error(R"({"type": "RandomRotation", "degrees": [5, 1]})",
                      "pipeline[0].degrees: expected a number >= 0 or a list [min, max]");
  expect_config_error(
      R"({"type": "RandomRotation", "degrees": 2, "expand": true, "center": [1, 1]})",
      "pipeline[0].center: expected no centre with expand true");
  expect_config_error(R"({"type": "RandomRotation", "degrees": 2, "interpolation": "cubic"})",
                      "pipeline[0].interpolation: expected one of");
  expect_config_error(R"({"type": "ResizeEdge", "scale": 0})", "pipeline[0].scale: expected");
  expect_config_error(R"({"type": "ResizeEdge", "scale": 8, "edge": "shortest"})",
                      "pipeline[0].edge: expected one of");
  expect_config_error(
      R"({"type": "ResizeEdge", "scale": 8, "backend": "pillow", "interpolation": "area"})",
      "pipeline[0].interpolation: expected 'nearest', 'bilinear', 'bicubic' or 'lanczos'");
  expect_config_error(R"({"type": "CenterCrop", "crop_size": [3, 0]})",
                      "pipeline[0].crop_size: expected an int > 0 or a list [w, h]");
  expect_config_error(R"({"type": "CenterCrop", "crop_size": 3, "pad_cfg": {"type": "Reflect"}})",
                      "pipeline[0].pad_cfg.type: expected \"Pad\"");
  expect_config_error(
      R"({"type": "CenterCrop", "crop_size": 3, "pad_cfg": {"type": "Pad", "mode": 1}})",
      "pipeline[0].pad_cfg.mode: unknown key");
}

} // namespace
} // namespace selfsup::core
