#pragma once
// Data-side interfaces: Image, Sample, Rng, Dataset and Transform. Images are 8-bit HWC,
// channels in BGR order like MMSelfSup's cv2 pipelines; no OpenCV type crosses the boundary.
// Per-sample values besides the images travel as named tensors and strings.
#include <cmath>
#include <cstdint>
#include <map>
#include <random>
#include <string>
#include <vector>

#include <torch/types.h>

#include <selfsup/export.h>

namespace selfsup {

struct Image {
  int height = 0;
  int width = 0;
  int channels = 0;
  std::vector<uint8_t> data; // height * width * channels, row-major HWC

  Image() = default;
  Image(int h, int w, int c) : height(h), width(w), channels(c), data(size_t(h) * w * c) {}
  [[nodiscard]] bool empty() const { return data.empty(); }
};

/// One dataset item travelling through a pipeline: MMSelfSup's `results` dict, typed.
/// Transforms change `img` and write named values (`tensors`, `strings`);
/// PackSelfSupInputs moves the ones its key lists name into `data`, `pseudo_label` and
/// `meta` (MMSelfSup's SelfSupDataSample), the maps that collate batches by name. Values it
/// does not name do not reach the batch, as in MMSelfSup.
struct Sample {
  Image img;                // the working image
  std::vector<Image> views; // filled by MultiView / packing; the loader batches these
  int64_t gt_label = -1;    // always batched
  int64_t sample_idx = -1;  // always batched

  /// Per-sample tensors written by transforms, by name: a MIM "mask", "rot_label",
  /// "patch_box", "unpatched_img", a "clustering_label"... CPU tensors, any dtype and shape.
  std::map<std::string, torch::Tensor> tensors;
  /// Per-sample strings written by datasets or transforms, e.g. "img_path".
  std::map<std::string, std::string> strings;

  /// Packed by PackSelfSupInputs `algorithm_keys` (MMSelfSup sets these on the data sample).
  std::map<std::string, torch::Tensor> data;
  /// Packed by PackSelfSupInputs `pseudo_label_keys` (MMSelfSup's `pseudo_label`).
  std::map<std::string, torch::Tensor> pseudo_label;
  /// Packed by PackSelfSupInputs `meta_keys` (MMSelfSup's metainfo), as text.
  std::map<std::string, std::string> meta;
};

/// The per-sample random source. Seeded from (run seed, epoch, sample index), so a
/// pipeline's output does not depend on which thread ran it.
class Rng {
public:
  explicit Rng(uint64_t seed) : engine_(seed) {}
  /// Uniform in [lo, hi).
  double uniform(double lo = 0.0, double hi = 1.0) {
    return lo + (hi - lo) * (double(engine_() >> 11) * (1.0 / 9007199254740992.0));
  }
  /// Uniform integer in [lo, hi].
  int64_t randint(int64_t lo, int64_t hi) {
    return lo + int64_t(engine_() % uint64_t(hi - lo + 1));
  }
  bool bernoulli(double p) { return uniform() < p; }
  uint64_t next() { return engine_(); }

private:
  std::mt19937_64 engine_;
};

/// A finite, indexable, thread-safe source of samples (before the pipeline).
class SELFSUP_SDK_API Dataset {
public:
  static constexpr const char* kKind = "dataset";
  virtual ~Dataset();
  [[nodiscard]] virtual int64_t size() const = 0;
  /// The raw sample at `index` (0 <= index < size()); must be safe to call concurrently.
  [[nodiscard]] virtual Sample get(int64_t index) const = 0;
  /// Number of classes of `gt_label`, or 0 if unlabelled.
  [[nodiscard]] virtual int64_t num_classes() const { return 0; }
};

/// One step of a data pipeline; must be safe to call concurrently (state lives in `rng`).
class SELFSUP_SDK_API Transform {
public:
  static constexpr const char* kKind = "transform";
  virtual ~Transform();
  virtual void apply(Sample& sample, Rng& rng) const = 0;
};

} // namespace selfsup
