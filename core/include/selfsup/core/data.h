#pragma once
// The data layer of the engine: IDX files, pipelines, datasets with `pipeline` and
// `indices`, batching, and the threaded loader.
#include <condition_variable>
#include <cstdint>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include <torch/types.h>

#include <selfsup/config.h>
#include <selfsup/schema.h>
#include <selfsup/core/export.h>
#include <selfsup/interfaces/algorithm.h>
#include <selfsup/interfaces/data.h>
#include <selfsup/interfaces/sampler.h>

namespace selfsup::core {

/// An IDX array (the MNIST file format), gzip-compressed or not.
struct IdxArray {
  std::vector<int64_t> dims;
  std::vector<uint8_t> data; // only unsigned-byte (0x08) payloads are supported
};

/// Reads an IDX file; throws ValueError naming the file on a bad magic, a truncated payload
/// or an unsupported element type.
SELFSUP_CORE_API IdxArray read_idx(const std::string& path);

/// The largest image decode_image accepts by default (2^28 pixels, 768 MiB as RGB): anything
/// bigger is refused from its header, before any pixel buffer is allocated.
constexpr int64_t kDefaultMaxImagePixels = int64_t(1) << 28;

/// Decodes a JPEG or PNG image (by magic bytes) to a uint8 HWC tensor (C = 1 or 3).
/// Throws ValueError naming `name` on anything it cannot decode.
/// Channels are in RGB order (C = 3) or grey (C = 1): 16-bit PNGs are reduced to 8 bits,
/// palettes expanded, alpha dropped, CMYK JPEGs converted to RGB; a truncated JPEG is an error.
SELFSUP_CORE_API torch::Tensor decode_image(const uint8_t* data, size_t size,
                                            const std::string& name);
/// The same, refusing images of more than `max_pixels` pixels (width * height).
SELFSUP_CORE_API torch::Tensor decode_image(const uint8_t* data, size_t size,
                                            const std::string& name, int64_t max_pixels);

/// CIFAR binary records: images [N,32,32,3] uint8 (RGB, HWC), labels [N] int64.
struct CifarRecords {
  torch::Tensor images; /* [N,32,32,3] uint8 */
  torch::Tensor labels; /* [N] int64 */
  /// CIFAR-100 (label_bytes = 2) only: the coarse (super-class) labels [N] int64, in [0, 20).
  torch::Tensor coarse_labels;
};
/// Parses CIFAR binary records (label_bytes = 1 for CIFAR-10, 2 for CIFAR-100), each
/// label_bytes + 3072 bytes: the label byte(s) (CIFAR-100: coarse, then fine), then the
/// 1024-byte R, G and B planes of a 32x32 image. `labels` is the last label byte, checked to
/// be < num_classes. Throws ValueError naming `name` (and the record index) for an empty
/// input, a size that is not a whole number of records, or a label out of range.
SELFSUP_CORE_API CifarRecords parse_cifar(const uint8_t* data, size_t size, int label_bytes,
                                          int num_classes, const std::string& name);

/// A list of transforms applied in order (a config list of transform dicts).
class SELFSUP_CORE_API Pipeline {
public:
  Pipeline() = default;
  /// Builds each element of a config list through the registry.
  explicit Pipeline(const Config& list);
  void apply(Sample& sample, Rng& rng) const;
  [[nodiscard]] size_t size() const { return steps_.size(); }

private:
  std::vector<std::shared_ptr<Transform>> steps_;
};

/// The per-sample seed: a hash of (run seed, epoch, dataset index).
SELFSUP_CORE_API uint64_t sample_seed(uint64_t seed, int64_t epoch, int64_t index);

/// A registered dataset plus MMEngine's generic dataset keys: `pipeline` (list of
/// transforms) and `indices` (an int N for the first N samples, or a list of indices).
class SELFSUP_CORE_API PipelinedDataset {
public:
  explicit PipelinedDataset(const Config& cfg);
  [[nodiscard]] int64_t size() const { return int64_t(indices_.size()); }
  /// The sample at position i (after `indices`), run through the pipeline with `rng`.
  [[nodiscard]] Sample get(int64_t i, Rng& rng) const;
  [[nodiscard]] const Dataset& raw() const { return *dataset_; }

private:
  std::shared_ptr<Dataset> dataset_;
  Pipeline pipeline_;
  std::vector<int64_t> indices_;
};

/// One batch: each view stacked to uint8 [B,C,H,W] (all samples of a view must agree in
/// shape), labels and dataset indices, and the packed per-sample data by name.
struct Batch {
  std::vector<torch::Tensor> views;
  torch::Tensor gt_label;                               // [B] int64
  torch::Tensor sample_idx;                             // [B] int64
  std::map<std::string, torch::Tensor> data;            // algorithm_keys, [B, ...]
  std::map<std::string, torch::Tensor> pseudo_label;    // pseudo_label_keys, [B, ...]
  std::map<std::string, std::vector<std::string>> meta; // meta_keys, B strings each
};

/// Stacks samples: their `views` (or `img` when a sample has no views), and each named tensor
/// of `data` and `pseudo_label` along a new dim 0 (all samples must have the same keys, and
/// per key the same shape and dtype); `meta` strings are gathered per key. Throws ValueError
/// naming the view or key and the two samples that disagree.
SELFSUP_CORE_API Batch collate(const std::vector<Sample>& samples);

/// The algorithm's view of a batch (labels, indices and packed data) on `device`.
SELFSUP_CORE_API DataSamples to_data_samples(const Batch& batch, torch::Device device);

struct LoaderOptions {
  int64_t batch_size = 32;
  bool shuffle = true; // for the DefaultSampler made when none is given
  bool drop_last = false;
  int num_workers = 2;
  int prefetch = 2; // batches prepared ahead per worker
  uint64_t seed = 0;
  int rank = 0; // this process's share of the data (the sampler's sharding)
  int world_size = 1;
};

/// Batches from a PipelinedDataset, prepared by a pool of threads with bounded prefetch.
/// Order and content depend only on (seed, epoch), never on the number of threads.
class SELFSUP_CORE_API DataLoader {
public:
  /// `sampler` null: a DefaultSampler with options.shuffle and options.seed. The sampler is
  /// bound here to the dataset, options.rank/world_size and options.seed.
  DataLoader(std::shared_ptr<PipelinedDataset> dataset, LoaderOptions options,
             std::shared_ptr<Sampler> sampler = nullptr);
  /// From an MMEngine-style dataloader config: batch_size, num_workers, persistent_workers,
  /// drop_last, prefetch_factor, sampler {type: a registered sampler, ...}, collate_fn
  /// {type: default_collate}, dataset {...}. `rank`/`world_size` shard the data.
  static std::unique_ptr<DataLoader> from_config(const Config& cfg, uint64_t seed, int rank = 0,
                                                 int world_size = 1);
  /// The keys of a dataloader dict (for `selfsup list --verbose` and checks).
  static Schema schema();
  ~DataLoader();
  DataLoader(const DataLoader&) = delete;
  DataLoader& operator=(const DataLoader&) = delete;

  [[nodiscard]] int64_t num_batches() const;
  [[nodiscard]] const PipelinedDataset& dataset() const { return *dataset_; }
  [[nodiscard]] const LoaderOptions& options() const { return options_; }
  [[nodiscard]] Sampler& sampler() { return *sampler_; }
  /// Starts an epoch (its order is a function of seed and epoch) and its prefetching.
  void start_epoch(int64_t epoch);
  /// The next batch of the epoch, or nullopt at its end. Rethrows a worker's error.
  std::optional<Batch> next();

private:
  void stop();
  void worker();
  [[nodiscard]] Batch build_batch(int64_t batch) const;

  std::shared_ptr<PipelinedDataset> dataset_;
  LoaderOptions options_;
  std::shared_ptr<Sampler> sampler_;
  std::vector<int64_t> order_;
  int64_t epoch_ = 0;
  int64_t next_to_take_ = 0;   // next batch a worker will build
  int64_t next_to_return_ = 0; // next batch next() returns
  std::map<int64_t, Batch> ready_;
  std::exception_ptr error_;
  int64_t error_batch_ = -1; // the batch whose building failed (the lowest such)
  bool started_ = false;     // start_epoch has run (next() starts epoch 0 otherwise)
  bool stopping_ = false;
  std::mutex mutex_;
  std::condition_variable cv_;
  std::vector<std::thread> threads_;
};

} // namespace selfsup::core
