// CIFAR-10 and CIFAR-100 from their binary versions (cifar-10-binary.tar.gz,
// cifar-100-binary.tar.gz), under MMPretrain's type names and keys.
#include <filesystem>
#include <memory>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include <selfsup/core/data.h>
#include <selfsup/errors.h>
#include <selfsup/options.h>
#include <selfsup/registry.h>

#include "common.h"

namespace selfsup::core {

namespace {

namespace fs = std::filesystem;

constexpr uint64_t kMaxCifarFileBytes = uint64_t(1) << 30;

struct CifarVariant {
  const char* type;    // registered name
  const char* title;   // "CIFAR-10"
  const char* folder;  // the archive's folder
  const char* archive; // the archive to download
  int label_bytes;     // per record
  int num_classes;     // of the (fine) label
  std::vector<std::string> train_files, test_files;
};

const CifarVariant& cifar10() {
  static const CifarVariant v{"CIFAR10",
                              "CIFAR-10",
                              "cifar-10-batches-bin",
                              "cifar-10-binary.tar.gz",
                              1,
                              10,
                              {"data_batch_1.bin", "data_batch_2.bin", "data_batch_3.bin",
                               "data_batch_4.bin", "data_batch_5.bin"},
                              {"test_batch.bin"}};
  return v;
}

const CifarVariant& cifar100() {
  static const CifarVariant v{
      "CIFAR100", "CIFAR-100", "cifar-100-binary", "cifar-100-binary.tar.gz",
      2,          100,         {"train.bin"},      {"test.bin"}};
  return v;
}

struct CifarOptions {
  std::string data_root;
  std::optional<std::string> split;
  std::optional<bool> test_mode;
  bool download = false;
  std::string label_type = "fine";

  static OptionTable<CifarOptions> table(const CifarVariant& v) {
    using O = CifarOptions;
    const std::string title = v.title;
    auto t = OptionTable<O>(
        title + " from its binary version (" + v.archive +
            "): 32x32 colour images, read whole into memory. Samples are 3-channel uint8 " +
            "images in BGR order (as every pipeline here; set the data_preprocessor's " +
            "bgr_to_rgb for RGB models) with gt_label and sample_idx.",
        O());
    t.required("data_root", &O::data_root,
               std::string("the extracted ") + v.folder + " folder, or the folder holding it",
               check::existing_dir())
        .optional("split", &O::split,
                  "\"train\" or \"test\" (default \"train\", or \"test\" "
                  "with test_mode: true)",
                  check::one_of({"train", "test"}))
        .optional("test_mode", &O::test_mode,
                  "MMPretrain/MMClassification's switch: true selects the test split when "
                  "`split` is not given")
        .optional("download", &O::download,
                  "accepted as false only: nothing is downloaded (fetch and extract the archive "
                  "yourself)");
    if (v.label_bytes == 2)
      t.optional("label_type", &O::label_type,
                 "\"fine\" (100 classes) or \"coarse\" (the 20 super-classes)",
                 check::one_of({"fine", "coarse"}));
    t.rule([](const O& o, const Config& cfg) {
      if (o.download)
        cfg.fail_key("download", "downloading is not supported; download and extract the "
                                 "binary archive from https://www.cs.toronto.edu/~kriz/cifar.html "
                                 "and set data_root to it, with download: false");
      if (o.split && o.test_mode && (*o.split == "test") != *o.test_mode)
        cfg.fail_key("test_mode", "test_mode: " + std::string(*o.test_mode ? "true" : "false") +
                                      " contradicts split: \"" + *o.split + "\"; give one of them");
    });
    return t;
  }
};

class Cifar final : public Dataset {
public:
  Cifar(const CifarVariant& v, const Config& cfg) {
    const CifarOptions o = CifarOptions::table(v).parse(cfg);
    const bool test = o.split ? *o.split == "test" : o.test_mode.value_or(false);
    const bool coarse = o.label_type == "coarse";
    num_classes_ = coarse ? 20 : v.num_classes;

    std::error_code ec;
    fs::path root = o.data_root;
    if (!fs::is_directory(root, ec))
      throw ValueError(cfg.path_of("data_root") + ": " + o.data_root +
                       " is not a folder (expected the extracted " + v.folder + " folder of " +
                       v.archive + ")");
    if (fs::is_directory(root / v.folder, ec)) root /= v.folder;

    std::vector<torch::Tensor> images, labels;
    for (const std::string& name : test ? v.test_files : v.train_files) {
      const fs::path file = root / name;
      if (!fs::exists(file, ec))
        throw ValueError(cfg.path_of("data_root") + ": " + file.string() + " not found (" +
                         v.title + " " + (test ? "test" : "train") +
                         " split: " + join(test ? v.test_files : v.train_files) +
                         " in the extracted " + v.folder + " folder of " + v.archive + ")");
      const std::vector<uint8_t> bytes =
          read_regular_file(file.string(), kMaxCifarFileBytes, std::string(v.title) + " batch");
      CifarRecords r =
          parse_cifar(bytes.data(), bytes.size(), v.label_bytes, v.num_classes, file.string());
      images.push_back(std::move(r.images));
      labels.push_back(coarse ? std::move(r.coarse_labels) : std::move(r.labels));
    }
    images_ = torch::cat(images).contiguous();
    labels_ = torch::cat(labels).contiguous();
  }

  [[nodiscard]] int64_t size() const override { return images_.size(0); }
  [[nodiscard]] int64_t num_classes() const override { return num_classes_; }

  [[nodiscard]] Sample get(int64_t index) const override {
    if (index < 0 || index >= size())
      throw ValueError("CIFAR: index " + std::to_string(index) + " out of range [0, " +
                       std::to_string(size()) + ")");
    Sample s;
    s.img = Image(32, 32, 3);
    const uint8_t* src = images_.data_ptr<uint8_t>() + index * 3072;
    for (size_t p = 0; p < 1024; ++p) { // RGB -> BGR
      s.img.data[p * 3 + 0] = src[p * 3 + 2];
      s.img.data[p * 3 + 1] = src[p * 3 + 1];
      s.img.data[p * 3 + 2] = src[p * 3 + 0];
    }
    s.gt_label = labels_.data_ptr<int64_t>()[index];
    s.sample_idx = index;
    return s;
  }

private:
  static std::string join(const std::vector<std::string>& names) {
    std::string out;
    for (const auto& n : names) out += (out.empty() ? "" : ", ") + n;
    return out;
  }

  torch::Tensor images_; // [N,32,32,3] uint8 RGB
  torch::Tensor labels_; // [N] int64
  int64_t num_classes_ = 0;
};

void add_cifar(Registrar& r, const CifarVariant& v) {
  r.add<Dataset>(
      v.type,
      [&v](const Config& cfg) -> std::shared_ptr<Dataset> {
        return std::make_shared<Cifar>(v, cfg);
      },
      CifarOptions::table(v).schema());
}

} // namespace

void register_cifar(Registrar& r) {
  add_cifar(r, cifar10());
  add_cifar(r, cifar100());
}

} // namespace selfsup::core
