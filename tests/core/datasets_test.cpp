// Image decoding (JPEG, PNG), CIFAR records and the CIFAR10/CIFAR100/ImageFolder datasets.
// Every image and file is made here, on the fly; OpenCV's encoder and decoder (a second,
// independent user of libjpeg-turbo/libpng) write the inputs and serve as the oracle.
#include <gtest/gtest.h>

#include <cctype>
#include <cstdint>
#include <filesystem>
#include <string>
#include <utility>
#include <vector>

#include <opencv2/core.hpp>
#include <opencv2/imgcodecs.hpp>
#include <zlib.h>

#include <selfsup/config.h>
#include <selfsup/core/builtins.h>
#include <selfsup/core/config_file.h>
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

// ---------------------------------------------------------------------------------------
// Helpers

/// A deterministic pattern image of OpenCV type `type` (CV_8UC1, CV_8UC3, CV_16UC3, ...).
cv::Mat pattern(int h, int w, int type, int seed = 0) {
  cv::Mat m(h, w, type);
  const int c = m.channels();
  const bool wide = m.depth() == CV_16U;
  for (int y = 0; y < h; ++y)
    for (int x = 0; x < w * c; ++x) {
      const int v = (x * 37 + y * 91 + seed * 53 + (x * y) % 17) % 256;
      if (wide)
        m.ptr<uint16_t>(y)[x] = uint16_t(v * 256 + (x & 1) * 3); // high byte v
      else
        m.ptr<uint8_t>(y)[x] = uint8_t(v);
    }
  return m;
}

std::string encode(const cv::Mat& m, const std::string& ext) {
  std::vector<uchar> buf;
  EXPECT_TRUE(cv::imencode(ext, m, buf));
  return {buf.begin(), buf.end()};
}

torch::Tensor decode(const std::string& bytes, const std::string& name = "img",
                     int64_t max_pixels = kDefaultMaxImagePixels) {
  return decode_image(reinterpret_cast<const uint8_t*>(bytes.data()), bytes.size(), name,
                      max_pixels);
}

/// An 8-bit Mat as an HWC tensor, channels reversed (OpenCV's BGR -> RGB) when `to_rgb`.
torch::Tensor as_tensor(const cv::Mat& m, bool to_rgb) {
  torch::Tensor t = torch::from_blob(m.data, {m.rows, m.cols, m.channels()}, torch::kUInt8).clone();
  return to_rgb && m.channels() == 3 ? t.flip({2}).contiguous() : t;
}

std::vector<uint8_t> bytes_of(const cv::Mat& m) {
  return {m.data, m.data + m.total() * m.elemSize()};
}

Config dataset_cfg(const std::string& text) {
  return Config(Json::parse(text, "test"), "dataset");
}

// ---------------------------------------------------------------------------------------
// decode_image

TEST(DecodeImageTest, PngColourIsExactRgb) {
  const cv::Mat bgr = pattern(5, 7, CV_8UC3);
  const torch::Tensor t = decode(encode(bgr, ".png"));
  ASSERT_EQ(t.sizes(), (std::vector<int64_t>{5, 7, 3}));
  EXPECT_TRUE(t.equal(as_tensor(bgr, /*to_rgb=*/true)));
}

TEST(DecodeImageTest, PngGreyStaysOneChannel) {
  const cv::Mat grey = pattern(4, 9, CV_8UC1, 3);
  const torch::Tensor t = decode(encode(grey, ".png"));
  ASSERT_EQ(t.sizes(), (std::vector<int64_t>{4, 9, 1}));
  EXPECT_TRUE(t.equal(as_tensor(grey, false)));
}

TEST(DecodeImageTest, Png16BitAndAlphaReduceToEightBitRgb) {
  const cv::Mat wide = pattern(3, 4, CV_16UC3, 1);
  const torch::Tensor t = decode(encode(wide, ".png"));
  ASSERT_EQ(t.sizes(), (std::vector<int64_t>{3, 4, 3}));
  cv::Mat eight;
  wide.convertTo(eight, CV_8U, 1.0 / 256.0); // libpng keeps the high byte
  EXPECT_TRUE(t.equal(as_tensor(eight, true)));

  const cv::Mat bgra = pattern(6, 2, CV_8UC4, 2);
  const torch::Tensor a = decode(encode(bgra, ".png"));
  ASSERT_EQ(a.sizes(), (std::vector<int64_t>{6, 2, 3}));
  EXPECT_TRUE(a.equal(as_tensor(bgra, false).slice(2, 0, 3).flip({2}))); // alpha dropped
}

/// A PNG written by hand (OpenCV writes no palettes or 2-bit grey): IHDR, `extra` chunks
/// (name, data), then one IDAT of the unfiltered `rows` (packed bytes each).
std::string handmade_png(int w, int h, int depth, int color,
                         const std::vector<std::pair<std::string, std::string>>& extra,
                         const std::vector<std::string>& rows) {
  auto be32 = [](uint32_t v) {
    return std::string{char(v >> 24), char((v >> 16) & 0xFF), char((v >> 8) & 0xFF),
                       char(v & 0xFF)};
  };
  auto chunk = [&](const std::string& type, const std::string& data) {
    const std::string body = type + data;
    const uLong crc = crc32(0, reinterpret_cast<const Bytef*>(body.data()), uInt(body.size()));
    return be32(uint32_t(data.size())) + body + be32(uint32_t(crc));
  };
  std::string raw;
  for (const auto& r : rows) raw += '\0' + r; // filter type 0
  std::vector<Bytef> z(compressBound(uLong(raw.size())));
  uLongf zn = uLongf(z.size());
  EXPECT_EQ(compress(z.data(), &zn, reinterpret_cast<const Bytef*>(raw.data()), uLong(raw.size())),
            Z_OK);
  std::string out("\x89PNG\r\n\x1A\n", 8);
  out += chunk("IHDR", be32(uint32_t(w)) + be32(uint32_t(h)) +
                           std::string{char(depth), char(color), 0, 0, 0});
  for (const auto& [type, data] : extra) out += chunk(type, data);
  out += chunk("IDAT", std::string(reinterpret_cast<const char*>(z.data()), zn));
  return out + chunk("IEND", "");
}

TEST(DecodeImageTest, PngPaletteLowBitGreyAndGreyAlpha) {
  // A palette with a transparent entry: RGB, alpha dropped.
  const std::string plte("\xFF\x00\x00\x00\xFF\x00\x0A\x14\x1E", 9);
  const torch::Tensor p =
      decode(handmade_png(3, 2, 8, 3, {{"PLTE", plte}, {"tRNS", std::string(1, '\0')}},
                          {std::string("\x00\x01\x02", 3), std::string("\x02\x01\x00", 3)}));
  ASSERT_EQ(p.sizes(), (std::vector<int64_t>{2, 3, 3}));
  EXPECT_TRUE(p[0][0].equal(torch::tensor({255, 0, 0}, torch::kUInt8)));
  EXPECT_TRUE(p[0][2].equal(torch::tensor({10, 20, 30}, torch::kUInt8)));
  EXPECT_TRUE(p[1][1].equal(torch::tensor({0, 255, 0}, torch::kUInt8)));
  // 2-bit grey 0, 1, 2, 3, 3 -> 0, 85, 170, 255, 255.
  const torch::Tensor g = decode(handmade_png(5, 1, 2, 0, {}, {std::string("\x1B\xC0", 2)}));
  ASSERT_EQ(g.sizes(), (std::vector<int64_t>{1, 5, 1}));
  EXPECT_TRUE(g.flatten().equal(torch::tensor({0, 85, 170, 255, 255}, torch::kUInt8)));
  // Grey + alpha: one grey channel.
  const torch::Tensor ga =
      decode(handmade_png(2, 1, 8, 4, {}, {std::string("\x64\x00\xC8\xFF", 4)}));
  ASSERT_EQ(ga.sizes(), (std::vector<int64_t>{1, 2, 1}));
  EXPECT_TRUE(ga.flatten().equal(torch::tensor({100, 200}, torch::kUInt8)));
}

TEST(DecodeImageTest, JpegMatchesOpenCvDecoder) {
  for (const int type : {CV_8UC3, CV_8UC1}) {
    const std::string jpg = encode(pattern(16, 24, type, 5), ".jpg");
    const torch::Tensor t = decode(jpg);
    const cv::Mat oracle =
        cv::imdecode(std::vector<uchar>(jpg.begin(), jpg.end()), cv::IMREAD_UNCHANGED);
    ASSERT_EQ(t.size(2), oracle.channels());
    const torch::Tensor want = as_tensor(oracle, true).to(torch::kInt);
    EXPECT_LE((t.to(torch::kInt) - want).abs().max().item<int>(), 1);
  }
}

TEST(DecodeImageTest, TruncatedJpegIsAnErrorNamingTheInput) {
  const std::string jpg = encode(pattern(64, 64, CV_8UC3, 1), ".jpg");
  for (const size_t keep : {jpg.size() / 2, size_t(300), size_t(4)}) {
    const std::string msg =
        message_of<ValueError>([&] { (void)decode(jpg.substr(0, keep), "cut.jpg"); });
    EXPECT_TRUE(has_substr(msg, "cut.jpg")) << keep;
    EXPECT_TRUE(has_substr(msg, "JPEG")) << keep;
  }
}

TEST(DecodeImageTest, CorruptPngIsAnErrorNamingTheInput) {
  const std::string png = encode(pattern(32, 32, CV_8UC3, 2), ".png");
  EXPECT_TRUE(has_substr(
      message_of<ValueError>([&] { (void)decode(png.substr(0, png.size() / 2), "cut.png"); }),
      "cut.png"));
  std::string flipped = png;
  const size_t idat = png.find("IDAT");
  ASSERT_NE(idat, std::string::npos);
  flipped[idat + 10] = char(flipped[idat + 10] ^ 0x5A); // inside IDAT: a CRC error
  EXPECT_TRUE(has_substr(message_of<ValueError>([&] { (void)decode(flipped, "crc.png"); }),
                         "crc.png: corrupt or unsupported PNG"));
}

TEST(DecodeImageTest, OtherBytesAreRefusedByMagic) {
  const std::string msg = message_of<ValueError>([&] { (void)decode("GIF89a....", "a.gif"); });
  EXPECT_TRUE(has_substr(msg, "a.gif: not a JPEG or PNG image"));
  EXPECT_TRUE(has_substr(msg, "47 49 46 38"));
  EXPECT_TRUE(has_substr(message_of<ValueError>([&] { (void)decode("", "empty.png"); }),
                         "empty.png: empty file"));
}

TEST(DecodeImageTest, PixelLimitRefusesBeforeDecoding) {
  const std::string png = encode(pattern(100, 100, CV_8UC3), ".png");
  EXPECT_EQ(decode(png, "ok", 10000).size(0), 100);
  EXPECT_TRUE(has_substr(message_of<ValueError>([&] { (void)decode(png, "big.png", 9999); }),
                         "big.png: PNG image of 100x100 pixels is larger than the limit"));
  // A bomb: a tiny PNG whose header claims 60000x60000 (IHDR width and height rewritten, its
  // CRC recomputed) is refused from the header.
  std::string bomb = png;
  auto put32 = [&](size_t at, uint32_t v) {
    for (int i = 0; i < 4; ++i) bomb[at + size_t(i)] = char((v >> (24 - 8 * i)) & 0xFF);
  };
  put32(16, 60000);
  put32(20, 60000);
  uint32_t crc = 0xFFFFFFFFu; // CRC-32 of "IHDR" + 13 data bytes
  for (size_t i = 12; i < 12 + 17; ++i) {
    crc ^= uint8_t(bomb[i]);
    for (int k = 0; k < 8; ++k) crc = (crc >> 1) ^ (0xEDB88320u & (0u - (crc & 1u)));
  }
  put32(29, crc ^ 0xFFFFFFFFu);
  EXPECT_TRUE(has_substr(message_of<ValueError>([&] { (void)decode(bomb, "bomb.png"); }),
                         "60000x60000 pixels is larger than the limit"));
  // The same for a JPEG: its SOF header rewritten to 60000x60000.
  std::string jpg = encode(pattern(16, 16, CV_8UC3), ".jpg");
  const size_t sof = jpg.find("\xFF\xC0");
  ASSERT_NE(sof, std::string::npos);
  for (const size_t at : {sof + 5, sof + 7}) {
    jpg[at] = char(60000 >> 8);
    jpg[at + 1] = char(60000 & 0xFF);
  }
  EXPECT_TRUE(has_substr(message_of<ValueError>([&] { (void)decode(jpg, "bomb.jpg"); }),
                         "bomb.jpg: JPEG image of 60000x60000 pixels is larger than the limit"));
}

// ---------------------------------------------------------------------------------------
// parse_cifar

/// One CIFAR record: label byte(s), then the R, G, B planes of a 32x32 pattern.
std::string cifar_record(std::vector<uint8_t> labels, int seed) {
  std::string r(labels.begin(), labels.end());
  for (int ch = 0; ch < 3; ++ch)
    for (int p = 0; p < 1024; ++p) r += char((p * 7 + ch * 85 + seed * 31) & 0xFF);
  return r;
}

CifarRecords parse(const std::string& bytes, int label_bytes, int num_classes,
                   const std::string& name = "batch.bin") {
  return parse_cifar(reinterpret_cast<const uint8_t*>(bytes.data()), bytes.size(), label_bytes,
                     num_classes, name);
}

TEST(ParseCifarTest, ReadsPlanesToHwcAndLabels) {
  const std::string bytes = cifar_record({3}, 0) + cifar_record({9}, 1) + cifar_record({0}, 2);
  const CifarRecords r = parse(bytes, 1, 10);
  ASSERT_EQ(r.images.sizes(), (std::vector<int64_t>{3, 32, 32, 3}));
  EXPECT_EQ(r.labels[0].item<int64_t>(), 3);
  EXPECT_EQ(r.labels[1].item<int64_t>(), 9);
  EXPECT_FALSE(r.coarse_labels.defined());
  // Pixel (y=2, x=5) of record 1, channel G = plane 1 at p = 2*32+5.
  const int p = 2 * 32 + 5;
  EXPECT_EQ(r.images[1][2][5][1].item<uint8_t>(), uint8_t((p * 7 + 85 + 31) & 0xFF));
  EXPECT_EQ(r.images[2][2][5][0].item<uint8_t>(), uint8_t((p * 7 + 62) & 0xFF));
}

TEST(ParseCifarTest, Cifar100HasCoarseThenFine) {
  const CifarRecords r = parse(cifar_record({19, 99}, 0) + cifar_record({0, 5}, 1), 2, 100);
  EXPECT_EQ(r.labels[0].item<int64_t>(), 99);
  EXPECT_EQ(r.coarse_labels[0].item<int64_t>(), 19);
  EXPECT_EQ(r.labels[1].item<int64_t>(), 5);
}

TEST(ParseCifarTest, PartialRecordNamesFileAndSizes) {
  const std::string bytes = cifar_record({1}, 0) + cifar_record({1}, 1).substr(0, 100);
  const std::string msg = message_of<ValueError>([&] { (void)parse(bytes, 1, 10, "cut.bin"); });
  EXPECT_TRUE(has_substr(msg, "cut.bin"));
  EXPECT_TRUE(has_substr(msg, "not a whole number of CIFAR-10 records of 3073 bytes"));
  EXPECT_TRUE(has_substr(message_of<ValueError>([&] { (void)parse("", 1, 10, "e.bin"); }),
                         "e.bin: empty CIFAR-10 file"));
}

TEST(ParseCifarTest, LabelOutOfRangeNamesFileAndRecord) {
  const std::string bytes = cifar_record({1}, 0) + cifar_record({2}, 1) + cifar_record({10}, 2);
  EXPECT_TRUE(has_substr(message_of<ValueError>([&] { (void)parse(bytes, 1, 10, "b.bin"); }),
                         "b.bin: record 2: label 10 is not in [0, 10)"));
  EXPECT_TRUE(has_substr(message_of<ValueError>([&] {
                           (void)parse(cifar_record({20, 1}, 0), 2, 100, "c.bin");
                         }),
                         "c.bin: record 0: coarse label 20 is not in [0, 20)"));
  EXPECT_TRUE(has_substr(message_of<ValueError>([&] {
                           (void)parse(cifar_record({1, 100}, 0), 2, 100, "f.bin");
                         }),
                         "f.bin: record 0: label 100 is not in [0, 100)"));
}

// ---------------------------------------------------------------------------------------
// CIFAR10 / CIFAR100 datasets

class CifarDatasetTest : public ::testing::Test {
protected:
  void SetUp() override {
    register_builtins();
    // data_root is the parent of cifar-10-batches-bin: 5 train batches of 2, a test batch of 3.
    for (int b = 1; b <= 5; ++b)
      write_file(c10_ / ("data_batch_" + std::to_string(b) + ".bin"),
                 cifar_record({uint8_t(b)}, b) + cifar_record({uint8_t(b + 1)}, b + 10));
    write_file(c10_ / "test_batch.bin",
               cifar_record({7}, 20) + cifar_record({8}, 21) + cifar_record({9}, 22));
    write_file(c100_ / "train.bin", cifar_record({4, 44}, 0) + cifar_record({5, 55}, 1));
    write_file(c100_ / "test.bin", cifar_record({6, 66}, 2));
  }
  [[nodiscard]] std::shared_ptr<Dataset> make(const std::string& type,
                                              const std::string& keys = "") const {
    return build<Dataset>(dataset_cfg("{\"type\": \"" + type + "\", \"data_root\": \"" +
                                      dir_.str() + "\"" + (keys.empty() ? "" : ", " + keys) + "}"));
  }
  test::TempDir dir_;
  fs::path c10_ = dir_.path() / "cifar-10-batches-bin";
  fs::path c100_ = dir_.path() / "cifar-100-binary";
};

TEST_F(CifarDatasetTest, Cifar10TrainIsFiveBatchesInBgr) {
  auto ds = make("CIFAR10");
  ASSERT_EQ(ds->size(), 10);
  EXPECT_EQ(ds->num_classes(), 10);
  const Sample s = ds->get(3); // batch 2, second record
  EXPECT_EQ(s.gt_label, 3);
  EXPECT_EQ(s.sample_idx, 3);
  ASSERT_EQ(s.img.channels, 3);
  ASSERT_EQ(s.img.height, 32);
  const std::string rec = cifar_record({3}, 12);
  const int p = 40;
  EXPECT_EQ(s.img.data[size_t(p) * 3 + 0], uint8_t(rec[1 + 2048 + p])); // B plane
  EXPECT_EQ(s.img.data[size_t(p) * 3 + 2], uint8_t(rec[1 + p]));        // R plane
  EXPECT_THROW((void)ds->get(10), ValueError);
}

TEST_F(CifarDatasetTest, TestSplitBySplitOrTestMode) {
  EXPECT_EQ(make("CIFAR10", "\"split\": \"test\"")->size(), 3);
  EXPECT_EQ(make("CIFAR10", "\"test_mode\": true")->size(), 3);
  EXPECT_EQ(make("CIFAR10", "\"split\": \"test\", \"test_mode\": true")->get(2).gt_label, 9);
  // data_root may also be the batches folder itself.
  auto direct = build<Dataset>(dataset_cfg("{\"type\": \"CIFAR10\", \"data_root\": \"" +
                                           c10_.string() + "\", \"split\": \"test\"}"));
  EXPECT_EQ(direct->size(), 3);
}

TEST_F(CifarDatasetTest, ContradictionsAndDownloadNameTheKey) {
  EXPECT_TRUE(has_substr(message_of<ConfigError>([&] {
                           (void)make("CIFAR10", "\"split\": \"train\", \"test_mode\": true");
                         }),
                         "dataset.test_mode"));
  EXPECT_TRUE(
      has_substr(message_of<ConfigError>([&] { (void)make("CIFAR10", "\"download\": true"); }),
                 "dataset.download: downloading is not supported"));
  EXPECT_TRUE(
      has_substr(message_of<ConfigError>([&] { (void)make("CIFAR10", "\"split\": \"val\""); }),
                 "dataset.split"));
  EXPECT_TRUE(has_substr(
      message_of<ConfigError>([&] { (void)make("CIFAR10", "\"label_type\": \"coarse\""); }),
      "dataset.label_type"));
}

TEST_F(CifarDatasetTest, Cifar100FineOrCoarse) {
  auto fine = make("CIFAR100");
  ASSERT_EQ(fine->size(), 2);
  EXPECT_EQ(fine->num_classes(), 100);
  EXPECT_EQ(fine->get(1).gt_label, 55);
  auto coarse = make("CIFAR100", "\"label_type\": \"coarse\", \"split\": \"test\"");
  EXPECT_EQ(coarse->num_classes(), 20);
  EXPECT_EQ(coarse->get(0).gt_label, 6);
}

TEST_F(CifarDatasetTest, MissingTruncatedOrBadBatchNamesTheFile) {
  fs::remove(c10_ / "data_batch_4.bin");
  std::string msg = message_of<ValueError>([&] { (void)make("CIFAR10"); });
  EXPECT_TRUE(has_substr(msg, "dataset.data_root"));
  EXPECT_TRUE(has_substr(msg, (c10_ / "data_batch_4.bin").string() + " not found"));

  write_file(c10_ / "data_batch_4.bin", cifar_record({1}, 0).substr(0, 3000));
  msg = message_of<ValueError>([&] { (void)make("CIFAR10"); });
  EXPECT_TRUE(has_substr(msg, (c10_ / "data_batch_4.bin").string()));
  EXPECT_TRUE(has_substr(msg, "not a whole number"));

  write_file(c10_ / "data_batch_4.bin", cifar_record({1}, 0) + cifar_record({12}, 0));
  EXPECT_TRUE(has_substr(message_of<ValueError>([&] { (void)make("CIFAR10"); }),
                         (c10_ / "data_batch_4.bin").string() + ": record 1: label 12"));

  EXPECT_TRUE(
      has_substr(message_of<ConfigError>([&] {
                   (void)build<Dataset>(dataset_cfg(
                       "{\"type\": \"CIFAR100\", \"data_root\": \"/nonexistent/c100\"}"));
                 }),
                 "dataset.data_root: expected an existing folder, got \"/nonexistent/c100\""));
}

// ---------------------------------------------------------------------------------------
// ImageFolder

class ImageFolderTest : public ::testing::Test {
protected:
  void SetUp() override { register_builtins(); }
  /// Writes `m` encoded as `rel`'s extension under the temp root; returns the Mat.
  cv::Mat put(const std::string& rel, const cv::Mat& m) const {
    std::string ext = fs::path(rel).extension().string();
    for (char& ch : ext) ch = char(std::tolower(static_cast<unsigned char>(ch)));
    write_file(dir_.path() / rel, encode(m, ext));
    return m;
  }
  [[nodiscard]] std::shared_ptr<Dataset> make(const std::string& keys = "",
                                              const std::string& root = "") const {
    return build<Dataset>(dataset_cfg("{\"type\": \"ImageFolder\", \"data_root\": \"" +
                                      (root.empty() ? dir_.str() : root) + "\"" +
                                      (keys.empty() ? "" : ", " + keys) + "}"));
  }
  [[nodiscard]] std::string config_error(const std::string& keys) const {
    return message_of<ConfigError>([&] { (void)make(keys); });
  }
  [[nodiscard]] std::string value_error(const std::string& keys = "") const {
    return message_of<ValueError>([&] { (void)make(keys); });
  }
  test::TempDir dir_;
};

TEST_F(ImageFolderTest, ClassSubFoldersAreSortedLabels) {
  const cv::Mat cat = put("cat/b.png", pattern(8, 6, CV_8UC3, 1));
  put("cat/a.jpg", pattern(10, 10, CV_8UC3, 2));
  put("dog/deep/er/c.png", pattern(5, 5, CV_8UC1, 3));
  write_file(dir_.path() / "dog/.hidden.png", "not read: hidden");
  auto ds = make();
  ASSERT_EQ(ds->size(), 3);
  EXPECT_EQ(ds->num_classes(), 2);
  const Sample a = ds->get(0), b = ds->get(1), c = ds->get(2);
  EXPECT_EQ(a.gt_label, 0);
  EXPECT_EQ(b.gt_label, 0);
  EXPECT_EQ(c.gt_label, 1);
  EXPECT_TRUE(has_substr(a.strings.at("img_path"), "cat/a.jpg"));
  // b.png read back exactly, in BGR like OpenCV; the grey c.png expanded to 3 channels.
  ASSERT_EQ(b.img.channels, 3);
  EXPECT_EQ(b.img.data, bytes_of(cat));
  EXPECT_EQ(c.img.channels, 3);
  EXPECT_EQ(c.img.height, 5);
  EXPECT_EQ(c.sample_idx, 2);
}

TEST_F(ImageFolderTest, FlatFolderIsUnlabelled) {
  put("x.png", pattern(4, 4, CV_8UC3));
  put("y.JPEG", pattern(4, 4, CV_8UC3));
  write_file(dir_.path() / "notes.txt", "ignored: not an image extension");
  auto ds = make();
  ASSERT_EQ(ds->size(), 2);
  EXPECT_EQ(ds->num_classes(), 0);
  EXPECT_EQ(ds->get(0).gt_label, -1);
  EXPECT_EQ(ds->get(1).gt_label, -1);
}

TEST_F(ImageFolderTest, ImagesBesideClassFoldersNeedWithLabelFalse) {
  put("top.png", pattern(4, 4, CV_8UC3));
  put("sub/inner.png", pattern(4, 4, CV_8UC3));
  EXPECT_TRUE(has_substr(value_error(), dir_.str() + ": 1 image(s) lie directly in it"));
  EXPECT_TRUE(has_substr(value_error("\"with_label\": true"), "top.png"));
  auto ds = make("\"with_label\": false");
  ASSERT_EQ(ds->size(), 2); // recursive, sorted by path
  EXPECT_EQ(ds->get(1).gt_label, -1);
}

TEST_F(ImageFolderTest, EmptyOrMissingFoldersNameThem) {
  std::string msg = value_error();
  EXPECT_TRUE(has_substr(msg, dir_.str() + ": no images (.jpg, .jpeg, .png)"));
  write_file(dir_.path() / "readme.md", "text");
  EXPECT_TRUE(has_substr(value_error(), "1 other file(s), e.g. " + dir_.str() + "/readme.md"));
  fs::create_directories(dir_.path() / "b_empty");
  put("a/x.png", pattern(3, 3, CV_8UC3));
  fs::remove(dir_.path() / "readme.md");
  EXPECT_TRUE(has_substr(value_error(),
                         (dir_.path() / "b_empty").string() + ": class folder has no images"));
  msg = message_of<ConfigError>([&] { (void)make("", dir_.str() + "/nope"); });
  EXPECT_TRUE(has_substr(msg, "dataset.data_root: expected an existing folder"));
  EXPECT_TRUE(has_substr(msg, dir_.str() + "/nope"));
  // A missing data_root/data_prefix is found when the dataset is built.
  EXPECT_TRUE(has_substr(value_error(R"("data_prefix": "nope")"),
                         "dataset.data_root: image folder " + dir_.str() + "/nope not found"));
}

TEST_F(ImageFolderTest, AnnotationListWithPrefix) {
  const cv::Mat one = put("imgs/a/1.png", pattern(6, 6, CV_8UC3, 1));
  put("imgs/b/2.png", pattern(6, 6, CV_8UC3, 2));
  write_file(dir_.path() / "meta/train.txt", "b/2.png 4\n\na/1.png\t1\r\n");
  auto ds = make(R"("ann_file": "meta/train.txt", "data_prefix": {"img_path": "imgs"})");
  ASSERT_EQ(ds->size(), 2);
  EXPECT_EQ(ds->num_classes(), 5);
  EXPECT_EQ(ds->get(0).gt_label, 4);
  EXPECT_EQ(ds->get(1).gt_label, 1);
  EXPECT_EQ(ds->get(1).img.data, bytes_of(one));
  // Unlabelled lines (label -1); with_label false reads whole lines as paths.
  write_file(dir_.path() / "meta/u.txt", "a/1.png\nb/2.png\n");
  auto u = make(R"("ann_file": "meta/u.txt", "data_prefix": "imgs")");
  EXPECT_EQ(u->get(0).gt_label, -1);
  EXPECT_EQ(u->num_classes(), 0);
  put("imgs/c 7.png", pattern(2, 2, CV_8UC3));
  write_file(dir_.path() / "meta/s.txt", "c 7.png\n");
  auto s = make(R"("ann_file": "meta/s.txt", "data_prefix": "imgs", "with_label": false)");
  EXPECT_EQ(s->get(0).gt_label, -1);
}

TEST_F(ImageFolderTest, AnnotationErrorsNameFileAndLine) {
  put("a.png", pattern(2, 2, CV_8UC3));
  const std::string ann = (dir_.path() / "l.txt").string();
  write_file(ann, "a.png 0\na.png\n");
  EXPECT_TRUE(has_substr(value_error(R"("ann_file": "l.txt")"), ann + ":2: expected `path label`"));
  write_file(ann, "a.png\na.png 3\n");
  EXPECT_TRUE(has_substr(value_error(R"("ann_file": "l.txt")"), ann + ":2: a label"));
  write_file(ann, "a.png 0\nmissing.png 1\n");
  EXPECT_TRUE(has_substr(value_error(R"("ann_file": "l.txt")"),
                         ann + ":2: image " + dir_.str() + "/missing.png not found"));
  write_file(ann, "\n  \n");
  EXPECT_TRUE(
      has_substr(value_error(R"("ann_file": "l.txt")"), ann + ": annotation file lists no images"));
  EXPECT_TRUE(has_substr(value_error(R"("ann_file": "none.txt")"), "dataset.ann_file"));
}

TEST_F(ImageFolderTest, ColorTypes) {
  const cv::Mat grey = put("g.png", pattern(3, 5, CV_8UC1, 4));
  const cv::Mat bgr = put("h.png", pattern(3, 5, CV_8UC3, 5));
  auto unchanged = make(R"("color_type": "unchanged")");
  EXPECT_EQ(unchanged->get(0).img.channels, 1);
  EXPECT_EQ(unchanged->get(0).img.data, bytes_of(grey));
  EXPECT_EQ(unchanged->get(1).img.channels, 3);
  auto gray = make(R"("color_type": "grayscale")");
  const Sample h = gray->get(1);
  ASSERT_EQ(h.img.channels, 1);
  const cv::Vec3b px = bgr.at<cv::Vec3b>(1, 2); // B, G, R
  EXPECT_EQ(int(h.img.data[1 * 5 + 2]), (px[2] * 299 + px[1] * 587 + px[0] * 114 + 500) / 1000);
  auto color = make();
  const Sample g = color->get(0);
  ASSERT_EQ(g.img.channels, 3);
  EXPECT_EQ(g.img.data[3 * 7 + 1], grey.at<uint8_t>(1, 2));
}

TEST_F(ImageFolderTest, CorruptImageErrorsNamingTheFile) {
  put("a.png", pattern(4, 4, CV_8UC3));
  const std::string png = encode(pattern(16, 16, CV_8UC3), ".png");
  write_file(dir_.path() / "b.png", png.substr(0, png.size() / 2));
  auto ds = make();
  ASSERT_EQ(ds->size(), 2); // listed now, decoded when read
  EXPECT_TRUE(has_substr(message_of<ValueError>([&] { (void)ds->get(1); }),
                         (dir_.path() / "b.png").string() + ": corrupt or unsupported PNG"));
  // Through a pipelined dataset too: the error names the file.
  PipelinedDataset pd(dataset_cfg("{\"type\": \"ImageFolder\", \"data_root\": \"" + dir_.str() +
                                  "\", \"pipeline\": [{\"type\": \"PackSelfSupInputs\"}]}"));
  Rng rng(0);
  EXPECT_TRUE(has_substr(message_of<ValueError>([&] { (void)pd.get(1, rng); }), "b.png"));
}

TEST_F(ImageFolderTest, SkipModeReportsOnceAndReadsTheNextImage) {
  const cv::Mat a = put("a.png", pattern(4, 4, CV_8UC3, 1));
  write_file(dir_.path() / "b.jpg", "\xFF\xD8\xFF garbage");
  const cv::Mat c = put("c.png", pattern(4, 4, CV_8UC3, 2));
  auto ds = make(R"("on_bad_image": "skip")");
  ASSERT_EQ(ds->size(), 3);
  testing::internal::CaptureStderr();
  const Sample s1 = ds->get(1);
  const Sample s2 = ds->get(1);
  const std::string err = testing::internal::GetCapturedStderr();
  EXPECT_EQ(s1.img.data, bytes_of(c)); // the next good image stands in
  EXPECT_EQ(s1.sample_idx, 1);
  EXPECT_EQ(s2.img.data, bytes_of(c));
  EXPECT_TRUE(has_substr(err, "b.jpg"));
  EXPECT_TRUE(has_substr(err, "1 so far"));
  EXPECT_EQ(err.find("b.jpg"), err.rfind("b.jpg")); // reported once
  EXPECT_EQ(ds->get(0).img.data, bytes_of(a));
}

TEST_F(ImageFolderTest, PixelLimitAppliesToFiles) {
  put("a.png", pattern(20, 20, CV_8UC3));
  EXPECT_TRUE(has_substr(message_of<ValueError>([&] { (void)make("\"max_pixels\": 399")->get(0); }),
                         "larger than the limit of 399 pixels"));
  EXPECT_TRUE(has_substr(config_error("\"max_pixels\": 0"), "dataset.max_pixels"));
}

TEST_F(ImageFolderTest, BadKeysNameTheirPath) {
  put("a.png", pattern(2, 2, CV_8UC3));
  EXPECT_TRUE(
      has_substr(config_error(R"("extensions": [".png", ".bmp"])"), "dataset.extensions[1]"));
  EXPECT_TRUE(has_substr(config_error(R"("data_prefix": {"img": "x"})"), "dataset.data_prefix"));
  EXPECT_TRUE(has_substr(config_error(R"("color_type": "rgb")"), "dataset.color_type"));
  EXPECT_TRUE(has_substr(config_error(R"("on_bad_image": "ignore")"), "dataset.on_bad_image"));
  EXPECT_TRUE(has_substr(config_error(R"("data_dir": "x")"), "dataset.data_dir"));
  EXPECT_TRUE(has_substr(message_of<ConfigError>([&] {
                           (void)build<Dataset>(dataset_cfg("{\"type\": \"ImageFolder\"}"));
                         }),
                         "give data_root"));
}

TEST_F(ImageFolderTest, ShippedConfigReadsAGeneratedFolder) {
  for (int i = 0; i < 4; ++i)
    put("class" + std::to_string(i % 2) + "/" + std::to_string(i) + ".png",
        pattern(40, 48, CV_8UC3, i));
  Json cfg = load_config_file(std::string(SELFSUP_SOURCE_DIR) +
                              "/configs/simclr/simclr_resnet18_imagefolder.json");
  apply_overrides(cfg, {"train_dataloader.dataset.data_root=" + dir_.str(),
                        "train_dataloader.batch_size=2", "train_dataloader.num_workers=1"});
  auto loader = DataLoader::from_config(Config(cfg)["train_dataloader"], 0);
  ASSERT_EQ(loader->num_batches(), 2);
  const std::optional<Batch> batch = loader->next();
  ASSERT_TRUE(batch.has_value());
  ASSERT_EQ(batch->views.size(), 2u);
  EXPECT_EQ(batch->views[1].sizes(), (std::vector<int64_t>{2, 3, 224, 224}));
  EXPECT_TRUE(has_substr(batch->meta.at("img_path").at(0), dir_.str()));
}

} // namespace
} // namespace selfsup::core
