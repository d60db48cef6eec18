// IDX reader, FashionMNIST, PipelinedDataset (`pipeline`, `indices`) and sample seeds.
#include <gtest/gtest.h>

#include <cstdint>
#include <filesystem>
#include <set>
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

using test::has_substr;
using test::idx_bytes;
using test::message_of;
using test::write_file;

std::vector<uint8_t> iota_bytes(size_t n, int start = 0) {
  std::vector<uint8_t> v(n);
  for (size_t i = 0; i < n; ++i) v[i] = uint8_t((start + int(i)) & 0xFF);
  return v;
}

Config dataset_cfg(const std::string& text) {
  return Config(Json::parse(text, "test"), "dataset");
}

// A fake Fashion-MNIST root of 5 train and 6 test images, gzip-compressed.
class IdxFashionMnistTest : public ::testing::Test {
protected:
  void SetUp() override {
    register_builtins();
    fake_ = test::make_fake_fmnist(dir_.path(), 5, 6);
  }
  std::string root_json() const { return "\"data_root\": \"" + dir_.str() + "\""; }
  /// The config of a FashionMNIST dataset over the fake root, plus `keys` (JSON members).
  [[nodiscard]] Config fmnist_cfg(const std::string& keys = "") const {
    return dataset_cfg("{\"type\": \"FashionMNIST\", " + root_json() +
                       (keys.empty() ? "" : ", " + keys) + "}");
  }
  /// The FashionMNIST dataset of fmnist_cfg(keys).
  [[nodiscard]] std::shared_ptr<Dataset> fmnist(const std::string& keys = "") const {
    return build<Dataset>(fmnist_cfg(keys));
  }
  test::TempDir dir_;
  test::FakeFmnist fake_;
};

TEST(IdxTest, ReadsGzipAndPlainFiles) {
  test::TempDir dir;
  const auto data = iota_bytes(2 * 3 * 4);
  for (bool gz : {true, false}) {
    const fs::path p = dir.path() / (gz ? "a.idx.gz" : "a.idx");
    write_file(p, idx_bytes(0x08, {2, 3, 4}, data), gz);
    const IdxArray a = read_idx(p.string());
    EXPECT_EQ(a.dims, (std::vector<int64_t>{2, 3, 4}));
    EXPECT_EQ(a.data, data);
  }
}

TEST(IdxTest, ReadsLargeMultiBlockGzip) {
  test::TempDir dir;
  const auto data = iota_bytes(300 * 1000, 7); // more than one read buffer
  const fs::path p = dir.path() / "big.gz";
  write_file(p, idx_bytes(0x08, {300, 1000}, data), true);
  const IdxArray a = read_idx(p.string());
  EXPECT_EQ(a.dims, (std::vector<int64_t>{300, 1000}));
  EXPECT_EQ(a.data, data);
}

TEST(IdxTest, IgnoresTrailingBytes) {
  test::TempDir dir;
  const fs::path p = dir.path() / "trailing";
  write_file(p, idx_bytes(0x08, {3}, {1, 2, 3}) + "extra", false);
  EXPECT_EQ(read_idx(p.string()).data, (std::vector<uint8_t>{1, 2, 3}));
}

TEST(IdxTest, MissingFileNamesIt) {
  test::TempDir dir;
  const std::string p = (dir.path() / "nope-idx1-ubyte.gz").string();
  EXPECT_TRUE(has_substr(message_of<ValueError>([&] { (void)read_idx(p); }), p));
}

TEST(IdxTest, TruncatedPayloadNamesFile) {
  test::TempDir dir;
  for (bool gz : {true, false}) {
    const fs::path p = dir.path() / (gz ? "short.gz" : "short");
    write_file(p, idx_bytes(0x08, {10, 10}, iota_bytes(50)), gz);
    EXPECT_TRUE(
        has_substr(message_of<ValueError>([&] { (void)read_idx(p.string()); }), p.string()));
    EXPECT_TRUE(
        has_substr(message_of<ValueError>([&] { (void)read_idx(p.string()); }), "truncated"));
  }
}

TEST(IdxTest, TruncatedHeaderNamesFile) {
  test::TempDir dir;
  const fs::path p = dir.path() / "hdr";
  write_file(p, std::string("\0\0\x08\x03\0\0", 6));
  EXPECT_TRUE(has_substr(message_of<ValueError>([&] { (void)read_idx(p.string()); }), p.string()));
  const fs::path q = dir.path() / "tiny";
  write_file(q, std::string("\0\0", 2));
  EXPECT_TRUE(has_substr(message_of<ValueError>([&] { (void)read_idx(q.string()); }), q.string()));
}

TEST(IdxTest, TruncatedGzipStreamNamesFile) {
  test::TempDir dir;
  const fs::path p = dir.path() / "cut.gz";
  std::vector<uint8_t> noise(10000);
  uint32_t x = 1;
  for (auto& v : noise) v = uint8_t((x = x * 1664525u + 1013904223u) >> 24); // incompressible
  write_file(p, idx_bytes(0x08, {100, 100}, noise), true);
  fs::resize_file(p, fs::file_size(p) / 2);
  EXPECT_TRUE(has_substr(message_of<ValueError>([&] { (void)read_idx(p.string()); }), p.string()));
}

TEST(IdxTest, WrongMagicNamesFile) {
  test::TempDir dir;
  const fs::path p = dir.path() / "text.gz";
  write_file(p, "this is not an IDX file at all");
  EXPECT_TRUE(has_substr(message_of<ValueError>([&] { (void)read_idx(p.string()); }), p.string()));
  EXPECT_TRUE(has_substr(message_of<ValueError>([&] { (void)read_idx(p.string()); }), "magic"));
  const fs::path q = dir.path() / "badtype";
  write_file(q, idx_bytes(0x42, {1}, {0}), false);
  EXPECT_TRUE(has_substr(message_of<ValueError>([&] { (void)read_idx(q.string()); }), "magic"));
}

TEST(IdxTest, UnsupportedTypeNamesFile) {
  test::TempDir dir;
  const fs::path p = dir.path() / "floats.gz";
  write_file(p, idx_bytes(0x0D, {2}, iota_bytes(8)), true);
  EXPECT_TRUE(has_substr(message_of<ValueError>([&] { (void)read_idx(p.string()); }), p.string()));
  EXPECT_TRUE(has_substr(message_of<ValueError>([&] { (void)read_idx(p.string()); }), "0x0D"));
}

TEST(IdxTest, SampleSeedMixesAllInputs) {
  std::set<uint64_t> seen;
  for (uint64_t seed : {0ull, 1ull})
    for (int64_t epoch : {0, 1, 2})
      for (int64_t index : {0, 1, 2, 1000}) seen.insert(sample_seed(seed, epoch, index));
  EXPECT_EQ(seen.size(), 2u * 3u * 4u);
  EXPECT_EQ(sample_seed(42, 3, 7), sample_seed(42, 3, 7));
}

TEST_F(IdxFashionMnistTest, ReadsGzipTrainSplit) {
  auto ds = fmnist();
  ASSERT_EQ(ds->size(), 5);
  EXPECT_EQ(ds->num_classes(), 10);
  const Sample s = ds->get(3);
  EXPECT_EQ(s.img.height, 28);
  EXPECT_EQ(s.img.width, 28);
  EXPECT_EQ(s.img.channels, 1);
  EXPECT_EQ(s.gt_label, 3);
  EXPECT_EQ(s.sample_idx, 3);
  EXPECT_EQ(s.img.data, fake_.train.image(3));
  EXPECT_NE(s.img.data, fake_.train.image(2));
  EXPECT_THROW((void)ds->get(5), ValueError);
}

TEST_F(IdxFashionMnistTest, ReadsTestSplitGzipOrPlain) {
  test::TempDir plain;
  test::FakeFmnist fake = test::make_fake_fmnist(plain.path(), 2, 6, /*gzip=*/false);
  for (const auto& [root, want] : {std::make_pair(dir_.str(), &fake_.test.images),
                                   std::make_pair(plain.str(), &fake.test.images)}) {
    auto ds = build<Dataset>(dataset_cfg(
        "{\"type\": \"FashionMNIST\", \"split\": \"test\", \"data_root\": \"" + root + "\"}"));
    ASSERT_EQ(ds->size(), 6);
    EXPECT_EQ(ds->get(4).gt_label, 4);
    EXPECT_EQ(ds->get(4).img.data,
              std::vector<uint8_t>(want->begin() + 4 * 784, want->begin() + 5 * 784));
  }
}

TEST_F(IdxFashionMnistTest, BadSplitNamesKey) {
  EXPECT_TRUE(has_substr(message_of<ConfigError>([&] { (void)fmnist("\"split\": \"val\""); }),
                         "dataset.split"));
}

TEST_F(IdxFashionMnistTest, MissingFilesNameRootAndFile) {
  test::TempDir empty;
  const std::string msg = message_of<Error>([&] {
    (void)build<Dataset>(
        dataset_cfg("{\"type\": \"FashionMNIST\", \"data_root\": \"" + empty.str() + "\"}"));
  });
  EXPECT_TRUE(has_substr(msg, "dataset.data_root"));
  EXPECT_TRUE(has_substr(msg, "train-images-idx3-ubyte"));
}

TEST_F(IdxFashionMnistTest, MismatchedCountsNameFiles) {
  test::write_idx(dir_.path() / "train-labels-idx1-ubyte.gz", {4}, {0, 1, 2, 3});
  EXPECT_TRUE(
      has_substr(message_of<ValueError>([&] { (void)fmnist(); }), "train-labels-idx1-ubyte.gz"));
}

TEST_F(IdxFashionMnistTest, LabelOutOfRangeNamesFileAndIndex) {
  test::write_idx(dir_.path() / "train-labels-idx1-ubyte.gz", {5}, {0, 1, 10, 3, 4});
  const std::string msg = message_of<ValueError>([&] { (void)fmnist(); });
  EXPECT_TRUE(has_substr(msg, "train-labels-idx1-ubyte.gz: label 10 at index 2 is not in [0, 10)"));
}

TEST_F(IdxFashionMnistTest, WrongRankNamesFile) {
  test::write_idx(dir_.path() / "train-images-idx3-ubyte.gz", {5, 784},
                  std::vector<uint8_t>(5 * 784));
  EXPECT_TRUE(has_substr(message_of<ValueError>([&] { (void)fmnist(); }),
                         "train-images-idx3-ubyte.gz: expected a 3-D IDX array [N,H,W], got 2"));
  test::make_fake_fmnist(dir_.path(), 5, 6);
  test::write_idx(dir_.path() / "train-labels-idx1-ubyte.gz", {5, 1}, {0, 1, 2, 3, 4});
  EXPECT_TRUE(has_substr(message_of<ValueError>([&] { (void)fmnist(); }),
                         "train-labels-idx1-ubyte.gz: expected a 1-D IDX array [N], got 2"));
}

TEST_F(IdxFashionMnistTest, TruncatedOrWrongMagicSplitFileNamesIt) {
  const fs::path images = dir_.path() / "t10k-images-idx3-ubyte.gz";
  write_file(images, idx_bytes(0x08, {6, 28, 28}, iota_bytes(6 * 784)).substr(0, 3000), true);
  std::string msg = message_of<ValueError>([&] { (void)fmnist("\"split\": \"test\""); });
  EXPECT_TRUE(has_substr(msg, images.string() + ": truncated IDX payload"));
  write_file(images, "<html>404 Not Found</html>", true);
  msg = message_of<ValueError>([&] { (void)fmnist("\"split\": \"test\""); });
  EXPECT_TRUE(has_substr(msg, images.string() + ": not an IDX file (bad magic"));
}

TEST_F(IdxFashionMnistTest, EmptySplitNamesFile) {
  test::make_fake_fmnist(dir_.path(), 0, 6);
  EXPECT_TRUE(has_substr(message_of<ValueError>([&] { (void)fmnist(); }),
                         "train-images-idx3-ubyte.gz: holds no images"));
}

TEST_F(IdxFashionMnistTest, UnknownKeyNamesPath) {
  EXPECT_TRUE(has_substr(message_of<ConfigError>([&] { (void)fmnist("\"spilt\": \"test\""); }),
                         "dataset.spilt"));
}

TEST_F(IdxFashionMnistTest, IndicesIntTakesFirstN) {
  PipelinedDataset ds(fmnist_cfg("\"indices\": 3"));
  ASSERT_EQ(ds.size(), 3);
  EXPECT_EQ(ds.raw().size(), 5);
  Rng rng(0);
  EXPECT_EQ(ds.get(2, rng).sample_idx, 2);
  EXPECT_THROW((void)ds.get(3, rng), ValueError);
}

TEST_F(IdxFashionMnistTest, IndicesListKeepsRawIndex) {
  PipelinedDataset ds(fmnist_cfg("\"indices\": [4, 0, 2]"));
  ASSERT_EQ(ds.size(), 3);
  Rng rng(0);
  const Sample s = ds.get(0, rng);
  EXPECT_EQ(s.sample_idx, 4);
  EXPECT_EQ(s.gt_label, 4);
  EXPECT_EQ(s.img.data, fake_.train.image(4));
  EXPECT_EQ(ds.get(2, rng).sample_idx, 2);
}

TEST_F(IdxFashionMnistTest, IndicesErrorsNamePath) {
  auto error_of = [&](const std::string& indices) {
    return message_of<ConfigError>(
        [&] { PipelinedDataset ds(fmnist_cfg("\"indices\": " + indices)); });
  };
  EXPECT_TRUE(has_substr(error_of("6"), "dataset.indices"));
  EXPECT_TRUE(has_substr(error_of("-1"), "dataset.indices"));
  EXPECT_TRUE(has_substr(error_of("[0, 9]"), "dataset.indices[1]"));
  EXPECT_TRUE(has_substr(error_of("[0, \"a\"]"), "dataset.indices[1]"));
  EXPECT_TRUE(has_substr(error_of("\"all\""), "dataset.indices"));
}

TEST_F(IdxFashionMnistTest, PipelineRunsAndErrorsNamePath) {
  PipelinedDataset ds(
      fmnist_cfg(R"("pipeline": [{"type": "RandomSolarize", "threshold": 0, "prob": 1.0},
                                 {"type": "PackSelfSupInputs"}])"));
  Rng rng(1);
  const Sample s = ds.get(1, rng);
  ASSERT_EQ(s.views.size(), 1u);
  EXPECT_EQ(s.views[0].data[0], 255 - fake_.train.image(1)[0]);
  EXPECT_TRUE(has_substr(message_of<ConfigError>([&] {
                           PipelinedDataset bad(fmnist_cfg(
                               R"("pipeline": [{"type": "RandomFlip", "prob": 0.5},
                                               {"type": "RandomFlip", "prob": 1.5}])"));
                         }),
                         "dataset.pipeline[1].prob"));
}

TEST(IdxRealFashionMnistTest, LoadsInstalledDataset) {
  const fs::path root = "/usr/share/datasets/fashion-mnist";
  if (!fs::exists(root / "t10k-images-idx3-ubyte.gz") &&
      !fs::exists(root / "t10k-images-idx3-ubyte"))
    GTEST_SKIP() << "dataset-fashion-mnist is not installed";
  register_builtins();
  auto ds = build<Dataset>(dataset_cfg("{\"type\": \"FashionMNIST\", \"split\": \"test\"}"));
  ASSERT_EQ(ds->size(), 10000);
  const Sample s = ds->get(0);
  EXPECT_EQ(s.img.height, 28);
  EXPECT_EQ(s.img.width, 28);
  EXPECT_EQ(s.img.channels, 1);
  EXPECT_GE(s.gt_label, 0);
  EXPECT_LT(s.gt_label, 10);
}

} // namespace
} // namespace selfsup::core
