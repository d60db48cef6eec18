// mmcls.ImageNet / mmcls.CustomDataset (MMPretrain's keys over the ImageFolder reader) and
// mmcv's LoadImageFromFile as the first transform of a pipeline.
#include <gtest/gtest.h>

#include <filesystem>
#include <string>
#include <vector>

#include <opencv2/core.hpp>
#include <opencv2/imgcodecs.hpp>

#include <selfsup/config.h>
#include <selfsup/core/builtins.h>
#include <selfsup/core/data.h>
#include <selfsup/errors.h>
#include <selfsup/registry.h>

#include "test_support.h"

namespace selfsup::core {
namespace {

namespace fs = std::filesystem;
using test::has_substr;
using test::message_of;
using test::write_file;

Config cfg_of(const std::string& text) {
  return Config(Json::parse(text, "test"), "dataset");
}

class ImageNetTest : public ::testing::Test {
protected:
  void SetUp() override { register_builtins(); }
  // A 4x4 PNG whose pixels are all `v` (BGR), at data_root/rel.
  void put(const std::string& rel, int v) const {
    std::vector<uchar> buf;
    ASSERT_TRUE(cv::imencode(".png", cv::Mat(4, 4, CV_8UC3, cv::Scalar(v, v + 1, v + 2)), buf));
    write_file(dir_.path() / rel, std::string(buf.begin(), buf.end()));
  }
  [[nodiscard]] std::string root() const { return dir_.str(); }
  [[nodiscard]] std::shared_ptr<Dataset> make(const std::string& type,
                                              const std::string& keys) const {
    return build<Dataset>(cfg_of("{\"type\": \"" + type + "\", \"data_root\": \"" + root() + "\"" +
                                 (keys.empty() ? "" : ", " + keys) + "}"));
  }
  [[nodiscard]] std::string config_error(const std::string& text) const {
    return message_of<ConfigError>([&] { (void)PipelinedDataset(cfg_of(text)); });
  }
  test::TempDir dir_;
};

TEST_F(ImageNetTest, AnnFileWithImgPathPrefixAsMmcls) {
  put("train/n01/a.png", 10);
  put("train/n02/b.png", 20);
  write_file(dir_.path() / "meta/train.txt", "n02/b.png 1\nn01/a.png 0\n");
  for (const char* type : {"mmcls.ImageNet", "mmpretrain.ImageNet", "ImageNet"}) {
    auto ds = make(type, R"("ann_file": "meta/train.txt", "data_prefix": {"img_path": "train/"},
                           "test_mode": false, "lazy_init": false, "serialize_data": true,
                           "metainfo": null)");
    ASSERT_EQ(ds->size(), 2) << type;
    EXPECT_EQ(ds->num_classes(), 2);
    const Sample s = ds->get(0);
    EXPECT_EQ(s.gt_label, 1);
    EXPECT_TRUE(has_substr(s.strings.at("img_path"), "train/n02/b.png"));
    ASSERT_EQ(s.img.channels, 3);
    EXPECT_EQ(s.img.data[0], 20); // B
    EXPECT_EQ(s.img.data[2], 22); // R
  }
}

TEST_F(ImageNetTest, WithoutAnnFileTheClassSubFoldersAreRead) {
  put("train/b_dog/x.png", 5);
  put("train/a_cat/y.png", 6);
  put("train/a_cat/z.png", 7);
  for (const char* type : {"mmcls.ImageNet", "mmcls.CustomDataset"}) {
    auto ds = make(type, R"("data_prefix": "train")");
    ASSERT_EQ(ds->size(), 3) << type;
    EXPECT_EQ(ds->num_classes(), 2);
    EXPECT_EQ(ds->get(0).gt_label, 0);
    EXPECT_EQ(ds->get(2).gt_label, 1);
  }
}

TEST_F(ImageNetTest, KeysThatWouldChangeTheSamplesAreRefused) {
  put("a/x.png", 1);
  auto error = [&](const std::string& keys) {
    return message_of<ConfigError>([&] { (void)make("mmcls.ImageNet", keys); });
  };
  EXPECT_TRUE(
      has_substr(error(R"("metainfo": {"classes": ["a"]})"), "dataset.metainfo: expected null"));
  EXPECT_TRUE(has_substr(error(R"("extensions": [".bmp"])"), "dataset.extensions[0]: expected"));
  EXPECT_TRUE(has_substr(error(R"("split": "train")"), "dataset.split: unknown key"));
  // The engine's own ImageFolder keeps its table: MMPretrain's extra keys are not its keys.
  EXPECT_TRUE(has_substr(
      message_of<ConfigError>([&] { (void)make("ImageFolder", R"("test_mode": true)"); }),
      "dataset.test_mode: unknown key"));
}

TEST_F(ImageNetTest, LoadImageFromFileFirstChecksTheImage) {
  put("a/x.png", 30);
  const std::string head =
      "{\"type\": \"mmcls.ImageNet\", \"data_root\": \"" + root() + "\", \"pipeline\": [";
  PipelinedDataset pd(cfg_of(head + R"({"type": "LoadImageFromFile",
      "file_client_args": {"backend": "disk"}, "imdecode_backend": "pillow"},
      {"type": "PackSelfSupInputs"}]})"));
  Rng rng(0);
  const Sample s = pd.get(0, rng);
  ASSERT_EQ(s.views.size(), 1u);
  EXPECT_EQ(s.views[0].data[0], 30);
  (void)PipelinedDataset(
      cfg_of(head + R"({"type": "LoadImageFromFile", "backend_args": {"backend": "local"},
                        "to_float32": false, "color_type": "color", "ignore_empty": false}]})"));

  EXPECT_TRUE(has_substr(
      config_error(head + R"({"type": "PackSelfSupInputs"}, {"type": "LoadImageFromFile"}]})"),
      "dataset.pipeline[1]: LoadImageFromFile must be the first transform"));
  EXPECT_TRUE(has_substr(config_error(head + R"({"type": "LoadImageFromFile",
                                                 "to_float32": true}]})"),
                         "dataset.pipeline[0].to_float32: expected false"));
  EXPECT_TRUE(has_substr(config_error(head + R"({"type": "LoadImageFromFile",
                                                 "color_type": "grayscale"}]})"),
                         "set color_type on the dataset"));
  EXPECT_TRUE(has_substr(config_error(head + R"({"type": "LoadImageFromFile",
                                                 "imdecode_backend": "tifffile"}]})"),
                         "dataset.pipeline[0].imdecode_backend: expected"));
  EXPECT_TRUE(has_substr(config_error(head + R"({"type": "LoadImageFromFile",
                             "file_client_args": {"backend": "petrel"}}]})"),
                         "only local files are read"));
  EXPECT_TRUE(has_substr(config_error(head + R"({"type": "LoadImageFromFile",
                                                 "ignore_empty": true}]})"),
                         "on_bad_image"));
}

} // namespace
} // namespace selfsup::core
