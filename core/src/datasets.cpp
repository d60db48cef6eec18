// IDX files, the built-in FashionMNIST dataset, pipelines and PipelinedDataset.
#include <selfsup/core/data.h>

#include <zlib.h>

#include <algorithm>
#include <climits>
#include <cstdio>
#include <filesystem>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include <selfsup/errors.h>
#include <selfsup/options.h>
#include <selfsup/registry.h>

#include "builtins.h"
#include "datasets/common.h"

namespace selfsup::core {

namespace fs = std::filesystem;

// ---------------------------------------------------------------------------------------
// IDX

namespace {

struct GzFile {
  gzFile f = nullptr;
  ~GzFile() {
    if (f) gzclose(f);
  }
};

const char* idx_type_name(int t) {
  switch (t) {
  case 0x08:
    return "unsigned byte";
  case 0x09:
    return "signed byte";
  case 0x0B:
    return "short";
  case 0x0C:
    return "int";
  case 0x0D:
    return "float";
  case 0x0E:
    return "double";
  default:
    return nullptr;
  }
}

// Reads up to `n` bytes; returns how many were read. Throws on a stream error.
size_t read_some(gzFile f, uint8_t* dst, size_t n, const std::string& path) {
  size_t done = 0;
  while (done < n) {
    const unsigned chunk = unsigned(std::min<size_t>(n - done, size_t(1) << 30));
    const int got = gzread(f, dst + done, chunk);
    if (got < 0) {
      int errnum = 0;
      const char* msg = gzerror(f, &errnum);
      throw ValueError(path + ": cannot read IDX data (" + (msg ? msg : "zlib error") + ")");
    }
    if (got == 0) break;
    done += size_t(got);
  }
  return done;
}

} // namespace

IdxArray read_idx(const std::string& path) {
  std::error_code ec;
  if (!fs::exists(path, ec)) throw ValueError(path + ": IDX file not found");
  if (fs::is_directory(path, ec)) throw ValueError(path + ": is a directory, not an IDX file");
  GzFile file;
  file.f = gzopen(path.c_str(), "rb"); // zlib reads plain files transparently
  if (!file.f) throw ValueError(path + ": cannot open IDX file");
  gzbuffer(file.f, 1 << 17);

  uint8_t magic[4];
  if (read_some(file.f, magic, 4, path) != 4)
    throw ValueError(path + ": truncated IDX header (fewer than 4 bytes)");
  if (magic[0] != 0 || magic[1] != 0 || !idx_type_name(magic[2]) || magic[3] == 0) {
    char buf[64];
    std::snprintf(buf, sizeof buf, "0x%02X%02X%02X%02X", magic[0], magic[1], magic[2], magic[3]);
    throw ValueError(path + ": not an IDX file (bad magic " + buf +
                     ", expected 0x000008NN: two zero bytes, a type byte, a dimension count)");
  }
  if (magic[2] != 0x08) {
    char buf[16];
    std::snprintf(buf, sizeof buf, "0x%02X", magic[2]);
    throw ValueError(path + ": unsupported IDX element type " + buf + " (" +
                     idx_type_name(magic[2]) + "); only unsigned byte (0x08) is supported");
  }
  const int ndims = magic[3];
  IdxArray out;
  std::vector<uint8_t> header(size_t(ndims) * 4);
  if (read_some(file.f, header.data(), header.size(), path) != header.size())
    throw ValueError(path + ": truncated IDX header (expected " + std::to_string(ndims) +
                     " dimension sizes)");
  uint64_t total = 1;
  for (int d = 0; d < ndims; ++d) {
    const uint8_t* p = &header[size_t(d) * 4];
    const uint64_t n =
        (uint64_t(p[0]) << 24) | (uint64_t(p[1]) << 16) | (uint64_t(p[2]) << 8) | uint64_t(p[3]);
    out.dims.push_back(int64_t(n));
    if (n != 0 && total > (uint64_t(1) << 40) / n)
      throw ValueError(path + ": IDX dimensions too large (more than 2^40 elements)");
    total *= n;
    if (total > (uint64_t(1) << 40))
      throw ValueError(path + ": IDX dimensions too large (more than 2^40 elements)");
  }
  // The payload is read in pieces, so memory follows the bytes really there: a header that
  // announces more than the file holds (truncated or hostile) costs no more than the file
  // (found by fuzz/idx: 16 bytes announcing 2^40 elements made it allocate them all).
  constexpr uint64_t kPiece = uint64_t(16) << 20;
  size_t got = 0;
  while (got < total) {
    const size_t want = size_t(std::min<uint64_t>(kPiece, total - got));
    out.data.resize(got + want);
    const size_t n = read_some(file.f, out.data.data() + got, want, path);
    got += n;
    if (n < want) break;
  }
  if (got != total)
    throw ValueError(path + ": truncated IDX payload: expected " + std::to_string(total) +
                     " bytes of data, got " + std::to_string(got));
  // Trailing bytes after the payload are ignored.
  return out;
}

// ---------------------------------------------------------------------------------------
// Pipeline, sample seeds

Pipeline::Pipeline(const Config& list) {
  if (list.is_null()) return;
  if (!list.is_array())
    list.fail("expected a list of transform dicts, got " + describe_value(list.json()));
  steps_.reserve(list.size());
  for (size_t i = 0; i < list.size(); ++i) {
    const Config step = list.at(i);
    if (i > 0 && step.is_object() && step.has("type") && step["type"].json().is_string() &&
        step["type"].json().as_string() == "LoadImageFromFile")
      step.fail("LoadImageFromFile must be the first transform (the dataset decodes the image "
                "before the pipeline)");
    steps_.push_back(build<Transform>(step));
  }
}

void Pipeline::apply(Sample& sample, Rng& rng) const {
  for (const auto& t : steps_) t->apply(sample, rng);
}

namespace {
uint64_t splitmix64(uint64_t x) {
  x += 0x9E3779B97F4A7C15ULL;
  x = (x ^ (x >> 30)) * 0xBF58476D1CE4E5B9ULL;
  x = (x ^ (x >> 27)) * 0x94D049BB133111EBULL;
  return x ^ (x >> 31);
}
} // namespace

uint64_t sample_seed(uint64_t seed, int64_t epoch, int64_t index) {
  uint64_t h = splitmix64(seed);
  h = splitmix64(h ^ uint64_t(epoch));
  h = splitmix64(h ^ (uint64_t(index) * 0xD6E8FEB86659FD93ULL));
  return h;
}

// ---------------------------------------------------------------------------------------
// PipelinedDataset

PipelinedDataset::PipelinedDataset(const Config& cfg) {
  if (!cfg.is_object())
    cfg.fail("expected a dataset dict with a 'type' key, got " + describe_value(cfg.json()));
  Json raw = cfg.json();
  raw.erase("pipeline");
  raw.erase("indices");
  dataset_ = build<Dataset>(cfg.derive(std::move(raw), cfg.path()));
  if (!dataset_) cfg.fail("the dataset factory returned nothing");
  if (cfg.has("pipeline")) pipeline_ = Pipeline(cfg["pipeline"]);

  const int64_t n = dataset_->size();
  if (!cfg.has("indices")) {
    indices_.resize(size_t(n));
    for (int64_t i = 0; i < n; ++i) indices_[size_t(i)] = i;
    return;
  }
  const Config ind = cfg["indices"];
  if (ind.json().is_int()) {
    const int64_t k = ind.json().as_int();
    if (k < 0 || k > n)
      ind.fail("expected 0 <= indices <= dataset size " + std::to_string(n) + ", got " +
               std::to_string(k));
    indices_.resize(size_t(k));
    for (int64_t i = 0; i < k; ++i) indices_[size_t(i)] = i;
  } else if (ind.is_array()) {
    indices_.reserve(ind.size());
    for (size_t i = 0; i < ind.size(); ++i) {
      const Config e = ind.at(i);
      if (!e.json().is_int()) e.fail("expected an int index, got " + describe_value(e.json()));
      const int64_t v = e.json().as_int();
      if (v < 0 || v >= n)
        e.fail("index " + std::to_string(v) + " out of range [0, " + std::to_string(n) + ")");
      indices_.push_back(v);
    }
  } else {
    ind.fail("expected an int (the first N samples) or a list of ints, got " +
             describe_value(ind.json()));
  }
}

Sample PipelinedDataset::get(int64_t i, Rng& rng) const {
  if (i < 0 || i >= size())
    throw ValueError("dataset position " + std::to_string(i) + " out of range [0, " +
                     std::to_string(size()) + ")");
  const int64_t raw_index = indices_[size_t(i)];
  Sample s = dataset_->get(raw_index);
  s.sample_idx = raw_index;
  try {
    pipeline_.apply(s, rng);
  } catch (const ConfigError&) {
    throw;
  } catch (const std::exception& e) {
    throw ValueError("pipeline on sample " + std::to_string(raw_index) + ": " + e.what());
  }
  return s;
}

// ---------------------------------------------------------------------------------------
// FashionMNIST

namespace {

constexpr const char* kFashionMnistRoot = "/usr/share/datasets/fashion-mnist";

struct FashionMnistOptions {
  std::string data_root = kFashionMnistRoot;
  std::string split = "train";

  static OptionTable<FashionMnistOptions> table() {
    using O = FashionMnistOptions;
    return OptionTable<O>("Fashion-MNIST (Zalando): 28x28 grey images of 10 clothing classes, "
                          "read from IDX files (gzip or plain). Samples are 1-channel uint8 "
                          "images with gt_label and sample_idx.",
                          O())
        .optional("data_root", &O::data_root,
                  "folder holding {train,t10k}-{images-idx3,labels-idx1}-ubyte[.gz] (Debian "
                  "package dataset-fashion-mnist)",
                  check::existing_dir())
        .optional("split", &O::split, "\"train\" (60000 images) or \"test\" (10000 images)",
                  check::one_of({"train", "test"}));
  }
};

class FashionMnist final : public Dataset {
public:
  explicit FashionMnist(const Config& cfg) {
    const auto options = FashionMnistOptions::table().parse(cfg);
    const std::string& root = options.data_root;
    const std::string prefix = options.split == "train" ? "train" : "t10k";
    const std::string images_path = locate(cfg, root, prefix + "-images-idx3-ubyte");
    const std::string labels_path = locate(cfg, root, prefix + "-labels-idx1-ubyte");
    IdxArray images = read_idx(images_path);
    IdxArray labels = read_idx(labels_path);
    if (images.dims.size() != 3)
      throw ValueError(images_path + ": expected a 3-D IDX array [N,H,W], got " +
                       std::to_string(images.dims.size()) + " dimensions");
    if (labels.dims.size() != 1)
      throw ValueError(labels_path + ": expected a 1-D IDX array [N], got " +
                       std::to_string(labels.dims.size()) + " dimensions");
    if (images.dims[0] != labels.dims[0])
      throw ValueError(images_path + " has " + std::to_string(images.dims[0]) + " images but " +
                       labels_path + " has " + std::to_string(labels.dims[0]) + " labels");
    if (images.dims[0] == 0) throw ValueError(images_path + ": holds no images (N = 0)");
    if (images.dims[1] <= 0 || images.dims[2] <= 0 || images.dims[1] > INT_MAX ||
        images.dims[2] > INT_MAX)
      throw ValueError(images_path + ": bad image size " + std::to_string(images.dims[1]) + "x" +
                       std::to_string(images.dims[2]));
    for (size_t i = 0; i < labels.data.size(); ++i)
      if (labels.data[i] >= kNumClasses)
        throw ValueError(labels_path + ": label " + std::to_string(labels.data[i]) + " at index " +
                         std::to_string(i) + " is not in [0, 10)");
    n_ = images.dims[0];
    h_ = int(images.dims[1]);
    w_ = int(images.dims[2]);
    pixels_ = std::move(images.data);
    labels_ = std::move(labels.data);
  }

  [[nodiscard]] int64_t size() const override { return n_; }
  [[nodiscard]] int64_t num_classes() const override { return kNumClasses; }

  [[nodiscard]] Sample get(int64_t index) const override {
    if (index < 0 || index >= n_)
      throw ValueError("FashionMNIST: index " + std::to_string(index) + " out of range [0, " +
                       std::to_string(n_) + ")");
    Sample s;
    s.img = Image(h_, w_, 1);
    const size_t plane = size_t(h_) * size_t(w_);
    std::copy_n(pixels_.begin() + ptrdiff_t(plane * size_t(index)), plane, s.img.data.begin());
    s.gt_label = labels_[size_t(index)];
    s.sample_idx = index;
    return s;
  }

private:
  static constexpr int64_t kNumClasses = 10;

  // `<root>/<name>.gz`, else `<root>/<name>`.
  static std::string locate(const Config& cfg, const std::string& root, const std::string& name) {
    std::error_code ec;
    const fs::path gz = fs::path(root) / (name + ".gz");
    if (fs::is_regular_file(gz, ec)) return gz.string();
    const fs::path plain = fs::path(root) / name;
    if (fs::is_regular_file(plain, ec)) return plain.string();
    throw ValueError(cfg.path_of("data_root") + ": neither " + gz.string() + " nor " +
                     plain.string() +
                     " exists (Debian: `apt-get install dataset-fashion-mnist` installs them in " +
                     kFashionMnistRoot + ")");
  }

  int64_t n_ = 0;
  int h_ = 0;
  int w_ = 0;
  std::vector<uint8_t> pixels_;
  std::vector<uint8_t> labels_;
};

} // namespace

void register_datasets(Registrar& r) {
  r.add<Dataset>(
      "FashionMNIST",
      [](const Config& cfg) -> std::shared_ptr<Dataset> {
        return std::make_shared<FashionMnist>(cfg);
      },
      FashionMnistOptions::table().schema());
  register_cifar(r);
  register_image_folder(r);
}

} // namespace selfsup::core
