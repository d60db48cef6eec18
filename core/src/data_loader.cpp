// Batching and the threaded loader.
//
// Workers build whole batches. Batch numbers are taken in increasing order (never more than
// num_workers * prefetch ahead of the consumer) and delivered in order, and every sample's
// random source is seeded from (seed, epoch, dataset index), so the batches of an epoch are
// the same whatever the number of threads.
#include <selfsup/core/data.h>

#include <opencv2/core.hpp>

#include <algorithm>
#include <cstring>
#include <map>
#include <mutex>
#include <random>
#include <string>
#include <utility>
#include <vector>

#include <selfsup/core/sampler.h>
#include <selfsup/errors.h>
#include <selfsup/options.h>
#include <selfsup/registry.h>
#include <selfsup/schema.h>

namespace selfsup::core {

// ---------------------------------------------------------------------------------------
// collate

namespace {

std::string sample_name(const std::vector<Sample>& samples, size_t b) {
  return "sample " + std::to_string(samples[b].sample_idx);
}

std::string describe_tensor(const torch::Tensor& t) {
  if (!t.defined()) return "an undefined tensor";
  std::string dims;
  for (const int64_t d : t.sizes()) dims += (dims.empty() ? "" : ", ") + std::to_string(d);
  return std::string(c10::toString(t.scalar_type())) + " [" + dims + "]" +
         (t.device().is_cpu() ? "" : " on " + t.device().str());
}

// Every sample of a batch must carry the same keys in `field`.
template <class V>
void check_same_keys(const std::vector<Sample>& samples,
                     const std::map<std::string, V> Sample::*field, const std::string& what) {
  const auto& ref = samples[0].*field;
  for (size_t b = 1; b < samples.size(); ++b) {
    const auto& map = samples[b].*field;
    auto fail = [&](const std::string& key, size_t with, size_t without) {
      throw ValueError("collate: " + sample_name(samples, with) + " has " + what + " '" + key +
                       "', but " + sample_name(samples, without) +
                       " has not (every sample of a batch must carry the same keys)");
    };
    for (const auto& entry : ref)
      if (!map.count(entry.first)) fail(entry.first, 0, b);
    for (const auto& entry : map)
      if (!ref.count(entry.first)) fail(entry.first, b, 0);
  }
}

// Stacks each named tensor along a new dim 0.
std::map<std::string, torch::Tensor>
stack_named(const std::vector<Sample>& samples,
            const std::map<std::string, torch::Tensor> Sample::*field, const std::string& what) {
  check_same_keys(samples, field, what);
  std::map<std::string, torch::Tensor> out;
  std::vector<torch::Tensor> parts(samples.size());
  for (const auto& [key, ref] : samples[0].*field) {
    for (size_t b = 0; b < samples.size(); ++b) {
      const torch::Tensor& t = (samples[b].*field).at(key);
      if (!t.defined() || !t.device().is_cpu())
        throw ValueError("collate: " + what + " '" + key + "' of " + sample_name(samples, b) +
                         " is " + describe_tensor(t) + " (expected a CPU tensor)");
      if (t.scalar_type() != ref.scalar_type() || t.sizes() != ref.sizes())
        throw ValueError("collate: " + what + " '" + key + "' of " + sample_name(samples, b) +
                         " is " + describe_tensor(t) + ", but " + sample_name(samples, 0) +
                         " has " + describe_tensor(ref) +
                         " (tensors batched together must agree in shape and dtype)");
      parts[b] = t;
    }
    out.emplace(key, torch::stack(parts));
  }
  return out;
}

} // namespace

Batch collate(const std::vector<Sample>& samples) {
  if (samples.empty()) throw ValueError("collate: no samples to batch");
  auto views_of = [](const Sample& s) -> std::pair<const Image*, size_t> {
    if (!s.views.empty()) return {s.views.data(), s.views.size()};
    if (!s.img.empty()) return {&s.img, 1};
    return {nullptr, 0};
  };
  const auto [first, num_views] = views_of(samples[0]);
  if (num_views == 0)
    throw ValueError("collate: sample " + std::to_string(samples[0].sample_idx) +
                     " has no image and no views");
  const auto B = int64_t(samples.size());
  Batch batch;
  batch.gt_label = torch::empty({B}, torch::kInt64);
  batch.sample_idx = torch::empty({B}, torch::kInt64);
  auto* labels = batch.gt_label.data_ptr<int64_t>();
  auto* indices = batch.sample_idx.data_ptr<int64_t>();
  for (size_t v = 0; v < num_views; ++v) {
    const Image& ref = first[v];
    batch.views.push_back(torch::empty({B, ref.channels, ref.height, ref.width}, torch::kUInt8));
  }
  for (int64_t b = 0; b < B; ++b) {
    const Sample& s = samples[size_t(b)];
    labels[b] = s.gt_label;
    indices[b] = s.sample_idx;
    const auto [imgs, n] = views_of(s);
    if (n != num_views)
      throw ValueError("collate: sample " + std::to_string(s.sample_idx) + " has " +
                       std::to_string(n) + " views, but sample " +
                       std::to_string(samples[0].sample_idx) + " has " + std::to_string(num_views));
    for (size_t v = 0; v < num_views; ++v) {
      const Image& img = imgs[v];
      const Image& ref = first[v];
      if (img.height != ref.height || img.width != ref.width || img.channels != ref.channels)
        throw ValueError("collate: view " + std::to_string(v) + " of sample " +
                         std::to_string(s.sample_idx) + " is " + std::to_string(img.height) + "x" +
                         std::to_string(img.width) + "x" + std::to_string(img.channels) +
                         " (HxWxC), but sample " + std::to_string(samples[0].sample_idx) + " has " +
                         std::to_string(ref.height) + "x" + std::to_string(ref.width) + "x" +
                         std::to_string(ref.channels));
      const size_t hw = size_t(img.height) * size_t(img.width);
      const size_t c = size_t(img.channels);
      uint8_t* dst = batch.views[v].data_ptr<uint8_t>() + size_t(b) * hw * c;
      const uint8_t* src = img.data.data();
      if (c == 1) {
        std::memcpy(dst, src, hw);
      } else if (c == 3) { // HWC -> CHW
        uint8_t* d0 = dst;
        uint8_t* d1 = dst + hw;
        uint8_t* d2 = dst + 2 * hw;
        for (size_t i = 0; i < hw; ++i, src += 3) {
          d0[i] = src[0];
          d1[i] = src[1];
          d2[i] = src[2];
        }
      } else {
        for (size_t i = 0; i < hw; ++i)
          for (size_t k = 0; k < c; ++k) dst[k * hw + i] = src[i * c + k];
      }
    }
  }
  batch.data = stack_named(samples, &Sample::data, "algorithm key");
  batch.pseudo_label = stack_named(samples, &Sample::pseudo_label, "pseudo-label");
  check_same_keys(samples, &Sample::meta, "meta key");
  for (const auto& entry : samples[0].meta) {
    std::vector<std::string>& values = batch.meta[entry.first];
    values.reserve(samples.size());
    for (const Sample& s : samples) values.push_back(s.meta.at(entry.first));
  }
  return batch;
}

DataSamples to_data_samples(const Batch& batch, torch::Device device) {
  DataSamples out;
  out.gt_label = batch.gt_label.to(device);
  out.sample_idx = batch.sample_idx.to(device);
  for (const auto& [key, t] : batch.data) out.data.emplace(key, t.to(device));
  for (const auto& [key, t] : batch.pseudo_label) out.pseudo_label.emplace(key, t.to(device));
  out.meta = batch.meta;
  return out;
}

// ---------------------------------------------------------------------------------------
// DataLoader

DataLoader::DataLoader(std::shared_ptr<PipelinedDataset> dataset, LoaderOptions options,
                       std::shared_ptr<Sampler> sampler)
    : dataset_(std::move(dataset)), options_(options), sampler_(std::move(sampler)) {
  if (!dataset_) throw ValueError("DataLoader: no dataset");
  if (!sampler_) {
    DefaultSamplerOptions o;
    o.shuffle = options_.shuffle;
    sampler_ = std::make_shared<DefaultSampler>(o);
  }
  sampler_->bind(dataset_->size(), options_.rank, options_.world_size, options_.seed);
  if (options_.batch_size <= 0)
    throw ValueError("DataLoader: batch_size must be > 0, got " +
                     std::to_string(options_.batch_size));
  if (options_.num_workers < 0)
    throw ValueError("DataLoader: num_workers must be >= 0, got " +
                     std::to_string(options_.num_workers));
  if (options_.prefetch < 1)
    throw ValueError("DataLoader: prefetch must be >= 1, got " + std::to_string(options_.prefetch));
  if (options_.num_workers > 0) {
    // The loader's threads are the parallelism: OpenCV runs sequentially inside them, as
    // MMEngine sets up its workers (env_cfg.mp_cfg.opencv_num_threads=0). Results do not
    // depend on this; it only avoids oversubscribing the cores.
    static std::once_flag once;
    std::call_once(once, [] { cv::setNumThreads(0); });
  }
}

DataLoader::~DataLoader() {
  stop();
}

namespace {

using namespace selfsup::check;

// `collate_fn`: only MMEngine's default_collate (stacking), which takes no options.
struct CollateOptions {
  std::string type = "default_collate";
  static OptionTable<CollateOptions> table() {
    return OptionTable<CollateOptions>("the batch collation", CollateOptions())
        .required("type", &CollateOptions::type, "default_collate", one_of({"default_collate"}));
  }
};

// An MMEngine dataloader dict. The defaults are LoaderOptions' (the C++ API's), taken
// from there so they are stated once.
struct DataLoaderConfig {
  int64_t batch_size = 0;
  int num_workers = 0;
  bool persistent_workers = false;
  bool drop_last = false;
  int prefetch_factor = 0;
  bool pin_memory = false;
  Config sampler;
  CollateOptions collate_fn;
  Config dataset;

  static DataLoaderConfig prototype() {
    const LoaderOptions d;
    DataLoaderConfig p;
    p.num_workers = d.num_workers;
    p.drop_last = d.drop_last;
    p.prefetch_factor = d.prefetch;
    p.sampler = Config(Json::object({{"type", "DefaultSampler"}, {"shuffle", d.shuffle}}));
    return p;
  }
  static OptionTable<DataLoaderConfig> table() {
    using O = DataLoaderConfig;
    return OptionTable<O>("An MMEngine-style dataloader.", prototype())
        .required("batch_size", &O::batch_size, "samples per batch (per process)", gt(0))
        .optional("num_workers", &O::num_workers,
                  "threads building batches; 0 builds them in the consumer thread", ge(0))
        .optional("persistent_workers", &O::persistent_workers,
                  "accepted for compatibility (threads are restarted each epoch; cheap)")
        .optional("drop_last", &O::drop_last, "drop the last incomplete batch")
        .optional("prefetch_factor", &O::prefetch_factor, "batches prepared ahead per worker",
                  gt(0))
        .optional("pin_memory", &O::pin_memory, "accepted; no effect on CPU")
        .optional("sampler", &O::sampler,
                  "a registered sampler, e.g. {type: 'DefaultSampler', shuffle, seed, round_up}")
        .component("sampler")
        .optional("collate_fn", &O::collate_fn, "{type: 'default_collate'}")
        .required("dataset", &O::dataset, "the dataset dict (type, pipeline, indices, ...)")
        .component("dataset")
        .nested(dataset_keys());
  }

  // The keys PipelinedDataset reads beside the dataset's own.
  static Schema dataset_keys() {
    return Schema("MMEngine's generic dataset keys")
        .optional("pipeline", ArgType::List, Json(), "the transforms, a list of transform dicts")
        .component("pipeline", "transform")
        .optional("indices", ArgType::Any, Json(),
                  "an int N (the first N samples) or a list of sample indices");
  }
};

} // namespace

Schema DataLoader::schema() {
  return DataLoaderConfig::table().schema();
}

std::unique_ptr<DataLoader> DataLoader::from_config(const Config& cfg, uint64_t seed, int rank,
                                                    int world_size) {
  const DataLoaderConfig c = DataLoaderConfig::table().parse(cfg);
  LoaderOptions opt;
  opt.batch_size = c.batch_size;
  opt.num_workers = c.num_workers;
  opt.prefetch = c.prefetch_factor;
  opt.drop_last = c.drop_last;
  opt.seed = seed;
  opt.rank = rank;
  opt.world_size = world_size;
  auto sampler = build<Sampler>(c.sampler);
  auto dataset = std::make_shared<PipelinedDataset>(c.dataset);
  auto loader = std::make_unique<DataLoader>(std::move(dataset), opt, std::move(sampler));
  if (loader->num_batches() == 0) {
    // An epoch without a batch would end at once, forever: say why instead.
    const int64_t n = loader->dataset().size();
    const int64_t share = loader->sampler().size();
    std::string what = "no batch in an epoch: the dataset has " + std::to_string(n) +
                       (n == 1 ? " sample" : " samples");
    if (world_size > 1)
      what += " (" + std::to_string(share) + " for this process, rank " + std::to_string(rank) +
              " of " + std::to_string(world_size) + ")";
    if (share == 0) {
      what += "; give the dataset samples (check its files and `indices`)";
    } else {
      what += ", fewer than batch_size " + std::to_string(opt.batch_size) +
              ", and drop_last is true, so the only, incomplete batch is dropped; lower "
              "batch_size or set drop_last to false";
    }
    cfg.fail(what);
  }
  return loader;
}

int64_t DataLoader::num_batches() const {
  const int64_t n = sampler_->size();
  const int64_t bs = options_.batch_size;
  return options_.drop_last ? n / bs : (n + bs - 1) / bs;
}

void DataLoader::stop() {
  {
    std::lock_guard<std::mutex> lock(mutex_);
    stopping_ = true;
  }
  cv_.notify_all();
  for (auto& t : threads_)
    if (t.joinable()) t.join();
  threads_.clear();
}

void DataLoader::start_epoch(int64_t epoch) {
  stop();
  order_ = sampler_->indices(epoch);
  if (int64_t(order_.size()) != sampler_->size())
    throw ValueError("sampler: yielded " + std::to_string(order_.size()) + " indices for epoch " +
                     std::to_string(epoch) + " but declared " + std::to_string(sampler_->size()));
  for (int64_t i : order_)
    if (i < 0 || i >= dataset_->size())
      throw ValueError("sampler: index " + std::to_string(i) + " outside the dataset of " +
                       std::to_string(dataset_->size()));
  {
    std::lock_guard<std::mutex> lock(mutex_);
    epoch_ = epoch;
    next_to_take_ = 0;
    next_to_return_ = 0;
    ready_.clear();
    error_ = nullptr;
    error_batch_ = -1;
    stopping_ = false;
    started_ = true;
  }
  const int64_t workers = std::min<int64_t>(options_.num_workers, num_batches());
  try {
    for (int64_t w = 0; w < workers; ++w) threads_.emplace_back([this] { worker(); });
  } catch (...) {
    stop();
    throw;
  }
}

Batch DataLoader::build_batch(int64_t batch) const {
  const int64_t n = int64_t(order_.size());
  const int64_t begin = batch * options_.batch_size;
  const int64_t end = std::min(n, begin + options_.batch_size);
  std::vector<Sample> samples;
  samples.reserve(size_t(end - begin));
  for (int64_t k = begin; k < end; ++k) {
    const int64_t index = order_[size_t(k)];
    Rng rng(sample_seed(options_.seed, epoch_, index));
    samples.push_back(dataset_->get(index, rng));
  }
  return collate(samples);
}

void DataLoader::worker() {
  const int64_t total = num_batches();
  const int64_t window = int64_t(options_.num_workers) * options_.prefetch;
  std::unique_lock<std::mutex> lock(mutex_);
  for (;;) {
    cv_.wait(lock, [&] {
      return stopping_ || error_ || next_to_take_ >= total ||
             next_to_take_ < next_to_return_ + window;
    });
    if (stopping_ || error_ || next_to_take_ >= total) return;
    const int64_t b = next_to_take_++;
    lock.unlock();
    std::optional<Batch> batch;
    std::exception_ptr err;
    try {
      batch = build_batch(b);
    } catch (...) {
      err = std::current_exception();
    }
    lock.lock();
    if (err) {
      // Keep the error of the earliest failing batch; earlier batches still arrive first.
      if (!error_ || b < error_batch_) {
        error_ = err;
        error_batch_ = b;
      }
    } else {
      try {
        ready_.emplace(b, std::move(*batch));
      } catch (...) {
        if (!error_ || b < error_batch_) {
          error_ = std::current_exception();
          error_batch_ = b;
        }
      }
    }
    cv_.notify_all();
  }
}

std::optional<Batch> DataLoader::next() {
  if (!started_) start_epoch(epoch_);
  const int64_t total = num_batches();
  if (options_.num_workers == 0 || threads_.empty()) {
    if (next_to_return_ >= total) return std::nullopt;
    if (error_) std::rethrow_exception(error_);
    const int64_t b = next_to_return_;
    try {
      Batch batch = build_batch(b);
      ++next_to_return_;
      return batch;
    } catch (...) {
      error_ = std::current_exception();
      error_batch_ = b;
      throw;
    }
  }
  std::unique_lock<std::mutex> lock(mutex_);
  if (next_to_return_ >= total) return std::nullopt;
  const int64_t b = next_to_return_;
  cv_.wait(lock, [&] { return ready_.count(b) > 0 || (error_ && error_batch_ <= b); });
  auto it = ready_.find(b);
  if (it == ready_.end()) std::rethrow_exception(error_);
  Batch batch = std::move(it->second);
  ready_.erase(it);
  ++next_to_return_;
  lock.unlock();
  cv_.notify_all();
  return batch;
}

} // namespace selfsup::core
