// RandomResizedCropAndInterpolationWithTwoPic (BEiT / CAE): the two pictures against upstream
// MMSelfSup 1.0's own class on fixed boxes (tests/fixtures/two_pic, made by
// make_two_pic_fixture.py), the random box against a sampler written here, a hand-made image,
// the views it leaves for packing, and its config errors.
#include <gtest/gtest.h>

#include <opencv2/core.hpp>
#include <opencv2/imgcodecs.hpp>
#include <opencv2/imgproc.hpp>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>
#include <vector>

#include <selfsup/config.h>
#include <selfsup/core/builtins.h>
#include <selfsup/core/data.h>
#include <selfsup/errors.h>
#include <selfsup/registry.h>

#include "test_support.h"

namespace selfsup::core {
namespace {

namespace fs = std::filesystem;

constexpr const char* kType = "RandomResizedCropAndInterpolationWithTwoPic";

fs::path fixture_dir() {
  return fs::path(SELFSUP_SOURCE_DIR) / "tests" / "fixtures" / "two_pic";
}

Image from_mat(const cv::Mat& m) {
  Image img(m.rows, m.cols, m.channels());
  for (int y = 0; y < m.rows; ++y)
    std::copy(m.ptr<uint8_t>(y), m.ptr<uint8_t>(y) + size_t(m.cols) * size_t(m.channels()),
              img.data.begin() + std::ptrdiff_t(size_t(y) * size_t(m.cols) * size_t(m.channels())));
  return img;
}

Image load_png(const fs::path& path) {
  const cv::Mat m = cv::imread(path.string(), cv::IMREAD_UNCHANGED);
  if (m.empty()) throw std::runtime_error("cannot read " + path.string());
  return from_mat(m);
}

cv::Mat as_mat(Image& img) {
  return cv::Mat(img.height, img.width, CV_8UC(img.channels), img.data.data());
}

class TwoPicTransformTest : public ::testing::Test {
protected:
  void SetUp() override { register_builtins(); }

  static std::shared_ptr<Transform> make(const std::string& json) {
    return build<Transform>(Config(Json::parse(json, "test"), "pipeline[2]"));
  }
  static Sample apply(const std::string& json, Image img, uint64_t seed = 0) {
    Sample s;
    s.img = std::move(img);
    Rng rng(seed);
    make(json)->apply(s, rng);
    return s;
  }
};

TEST_F(TwoPicTransformTest, MatchesUpstreamPicturesBitForBit) {
  const Image input = load_png(fixture_dir() / "input.png");
  std::ifstream cases(fixture_dir() / "cases.txt");
  ASSERT_TRUE(cases) << "no cases.txt in " << fixture_dir();
  std::string line;
  int n = 0;
  while (std::getline(cases, line)) {
    if (line.empty()) continue;
    const size_t space = line.find(' ');
    const std::string name = line.substr(0, space);
    Json opts = Json::parse(line.substr(space + 1), name);
    opts.set("type", Json(std::string(kType)));
    const Sample s = apply(opts.dump(), input);
    std::vector<Image> got = s.views;
    if (got.empty()) got.push_back(s.img);
    const bool two = opts.find("second_size") != nullptr;
    ASSERT_EQ(got.size(), two ? 2u : 1u) << name;
    EXPECT_EQ(s.img.data.empty(), two) << name << ": two pictures leave no single image";
    for (size_t i = 0; i < got.size(); ++i) {
      const Image want = load_png(fixture_dir() / (name + "_" + std::to_string(i) + ".png"));
      ASSERT_EQ(got[i].height, want.height) << name << " picture " << i;
      ASSERT_EQ(got[i].width, want.width) << name << " picture " << i;
      ASSERT_EQ(got[i].channels, want.channels) << name << " picture " << i;
      size_t differ = 0;
      for (size_t k = 0; k < want.data.size(); ++k) differ += got[i].data[k] != want.data[k];
      EXPECT_EQ(differ, 0u) << name << " picture " << i << ": pixels differing from upstream";
    }
    ++n;
  }
  EXPECT_EQ(n, 4);
}

// Upstream's get_params, written again: 10 tries of area ~U(scale), ratio log-uniform, sizes
// rounded half to even, row then column offset; else the central crop (never reached here).
cv::Rect upstream_box(int h, int w, Rng& rng) {
  for (int i = 0; i < 10; ++i) {
    const double area = rng.uniform(0.08, 1.0) * h * w;
    const double ratio = std::exp(rng.uniform(std::log(3.0 / 4.0), std::log(4.0 / 3.0)));
    const int cw = int(std::nearbyint(std::sqrt(area * ratio)));
    const int ch = int(std::nearbyint(std::sqrt(area / ratio)));
    if (cw <= w && ch <= h) {
      const int top = int(rng.randint(0, h - ch));
      const int left = int(rng.randint(0, w - cw));
      return cv::Rect(left, top, cw, ch);
    }
  }
  ADD_FAILURE() << "the test's boxes should all be found by sampling";
  return cv::Rect(0, 0, w, h);
}

TEST_F(TwoPicTransformTest, RandomBoxIsUpstreamsAndSharedByBothPictures) {
  Image input = load_png(fixture_dir() / "input.png");
  const std::string json = std::string(R"({"type": ")") + kType +
                           R"(", "size": 24, "second_size": 12, "interpolation": "bicubic",
                              "second_interpolation": "lanczos"})";
  std::vector<int> widths;
  for (uint64_t seed = 0; seed < 40; ++seed) {
    const Sample s = apply(json, input, seed);
    ASSERT_EQ(s.views.size(), 2u);
    Rng rng(seed);
    const cv::Rect box = upstream_box(input.height, input.width, rng);
    widths.push_back(box.width);
    const cv::Mat roi = as_mat(input)(box);
    cv::Mat picture, target;
    cv::resize(roi, picture, cv::Size(24, 24), 0, 0, cv::INTER_AREA);  // PIL BICUBIC = 3
    cv::resize(roi, target, cv::Size(12, 12), 0, 0, cv::INTER_LINEAR); // PIL LANCZOS = 1
    EXPECT_EQ(s.views[0].data, from_mat(picture).data) << "seed " << seed;
    EXPECT_EQ(s.views[1].data, from_mat(target).data) << "seed " << seed;
  }
  std::sort(widths.begin(), widths.end());
  EXPECT_LT(widths.front(), widths.back()) << "the boxes should vary with the seed";
}

TEST_F(TwoPicTransformTest, HandMadeBlocksAverage) {
  // 4x4 grey, v(y, x) = 16 y + 4 x: halving averages each 2x2 block, both with INTER_AREA
  // ('bicubic' upstream) and with INTER_LINEAR at an exact factor 2 ('lanczos' upstream).
  Image img(4, 4, 1);
  for (int y = 0; y < 4; ++y)
    for (int x = 0; x < 4; ++x) img.data[size_t(y) * 4 + size_t(x)] = uint8_t(16 * y + 4 * x);
  const Sample s = apply(std::string(R"({"type": ")") + kType +
                             R"(", "size": 2, "second_size": 2, "scale": [1, 1], "ratio": [1, 1],
                                "interpolation": "bicubic", "second_interpolation": "lanczos"})",
                         img);
  ASSERT_EQ(s.views.size(), 2u);
  const std::vector<uint8_t> blocks = {10, 18, 42, 50};
  EXPECT_EQ(s.views[0].data, blocks);
  EXPECT_EQ(s.views[1].data, blocks);
  // Without second_size: one picture, in place of the image, no views.
  const Sample one = apply(std::string(R"({"type": ")") + kType +
                               R"(", "size": [2, 4], "scale": [1, 1], "ratio": [1, 1],
                                  "interpolation": "bicubic"})",
                           img);
  EXPECT_TRUE(one.views.empty());
  EXPECT_EQ(one.img.width, 2); // [w, h], as upstream's cv2.resize dsize
  EXPECT_EQ(one.img.height, 4);
  // Each row halved: pairs (16 y + 4 x, 16 y + 4 x + 4) average to 16 y + 2 and 16 y + 10.
  EXPECT_EQ(one.img.data, (std::vector<uint8_t>{2, 10, 18, 26, 34, 42, 50, 58}));
}

TEST_F(TwoPicTransformTest, RandomInterpolationPicksBothFlags) {
  Image input = load_png(fixture_dir() / "input.png");
  const std::string json = std::string(R"({"type": ")") + kType +
                           R"(", "size": 24, "scale": [1, 1], "ratio": [1.3333333333333333,
                              1.3333333333333333], "interpolation": "random"})";
  cv::Mat cubic, area;
  cv::resize(as_mat(input), cubic, cv::Size(24, 24), 0, 0, cv::INTER_CUBIC);
  cv::resize(as_mat(input), area, cv::Size(24, 24), 0, 0, cv::INTER_AREA);
  int n_cubic = 0, n_area = 0;
  for (uint64_t seed = 0; seed < 30; ++seed) {
    const Sample s = apply(json, input, seed);
    n_cubic += s.img.data == from_mat(cubic).data;
    n_area += s.img.data == from_mat(area).data;
  }
  EXPECT_EQ(n_cubic + n_area, 30);
  EXPECT_GT(n_cubic, 0);
  EXPECT_GT(n_area, 0);
}

TEST_F(TwoPicTransformTest, PackedAsTwoViews) {
  const std::string json = std::string(R"([{"type": ")") + kType +
                           R"(", "size": 8, "second_size": 4},
                              {"type": "PackSelfSupInputs"}])";
  const Pipeline pipeline(Config(Json::parse(json, "test"), "pipeline"));
  Image img(20, 30, 3);
  for (size_t i = 0; i < img.data.size(); ++i) img.data[i] = uint8_t(i * 13 % 251);
  Sample s;
  s.img = img;
  Rng rng(3);
  pipeline.apply(s, rng);
  ASSERT_EQ(s.views.size(), 2u);
  EXPECT_EQ(s.views[0].height, 8);
  EXPECT_EQ(s.views[1].height, 4);
}

TEST_F(TwoPicTransformTest, ConfigErrorsNameTheKey) {
  const auto error_of = [&](const std::string& rest) {
    return test::message_of<ConfigError>(
        [&] { (void)make(std::string(R"({"type": ")") + kType + "\"" + rest + "}"); });
  };
  EXPECT_TRUE(test::has_substr(error_of(""), "pipeline[2].size"));
  EXPECT_TRUE(test::has_substr(error_of(R"(, "size": 0)"), "pipeline[2].size"));
  EXPECT_TRUE(
      test::has_substr(error_of(R"(, "size": 8, "second_size": [1, 2, 3])"), "second_size"));
  EXPECT_TRUE(test::has_substr(error_of(R"(, "size": 8, "interpolation": "cubic")"),
                               "pipeline[2].interpolation"));
  EXPECT_TRUE(test::has_substr(error_of(R"(, "size": 8, "second_interpolation": "random")"),
                               "pipeline[2].second_interpolation"));
  EXPECT_TRUE(test::has_substr(error_of(R"(, "size": 8, "scale": [0.9, 0.1])"), "scale"));
  EXPECT_TRUE(test::has_substr(error_of(R"(, "size": 8, "backend": "pillow")"), "backend"));
}

} // namespace
} // namespace selfsup::core
