#include "deepcluster_sampler.h"

#include <random>
#include <string>

#include <torch/torch.h>

#include <selfsup/errors.h>

#include "clustering.h"

namespace selfsup::plugins::deepcluster {

OptionTable<DeepClusterSamplerOptions> DeepClusterSamplerOptions::table() {
  using O = DeepClusterSamplerOptions;
  return OptionTable<O>("MMSelfSup's DeepClusterSampler: DefaultSampler with optional drawing "
                        "with replacement and the class-balanced indices of DeepClusterHook",
                        O())
      .optional("shuffle", &O::shuffle, "shuffle the order each epoch")
      .optional("seed", &O::seed, "the shuffle seed (default: the run's seed)", check::ge(0))
      .optional("replace", &O::replace, "draw N indices with replacement (with shuffle)")
      .optional("round_up", &O::round_up,
                "pad with indices from the start so every rank gets the same count");
}

DeepClusterSampler::DeepClusterSampler(DeepClusterSamplerOptions options)
    : options_(std::move(options)) {}

void DeepClusterSampler::bind(int64_t dataset_size, int rank, int world_size, uint64_t seed) {
  if (world_size < 1 || rank < 0 || rank >= world_size)
    throw ValueError("DeepClusterSampler: rank " + std::to_string(rank) + " of world size " +
                     std::to_string(world_size));
  dataset_size_ = dataset_size;
  rank_ = rank;
  world_size_ = world_size;
  seed_ = options_.seed ? uint64_t(*options_.seed) : seed;
  if (options_.round_up) {
    num_samples_ = (dataset_size + world_size - 1) / world_size;
    total_size_ = num_samples_ * world_size;
  } else {
    num_samples_ = (dataset_size - rank + world_size - 1) / world_size;
    total_size_ = dataset_size;
  }
}

std::vector<int64_t> DeepClusterSampler::shard(std::vector<int64_t> order) const {
  const auto n = int64_t(order.size());
  for (int64_t i = n; i < total_size_ && n > 0; ++i) order.push_back(order[size_t(i % n)]);
  std::vector<int64_t> mine;
  for (int64_t i = rank_; i < total_size_ && i < int64_t(order.size()); i += world_size_)
    mine.push_back(order[size_t(i)]);
  return mine;
}

std::vector<int64_t> DeepClusterSampler::indices(int64_t epoch) const {
  if (const auto it = uniform_.find(epoch); it != uniform_.end()) return shard(it->second);
  const int64_t n = dataset_size_;
  std::vector<int64_t> order(static_cast<size_t>(n));
  std::mt19937_64 gen(seed_ * 6364136223846793005ULL + uint64_t(epoch) + 1442695040888963407ULL);
  if (options_.shuffle && options_.replace) {
    for (auto& i : order) i = int64_t(gen() % uint64_t(n));
  } else {
    for (int64_t i = 0; i < n; ++i) order[size_t(i)] = i;
    if (options_.shuffle)
      for (int64_t i = n - 1; i > 0; --i)
        std::swap(order[size_t(i)], order[size_t(gen() % uint64_t(i + 1))]);
  }
  return shard(std::move(order));
}

void DeepClusterSampler::set_uniform_indices(const torch::Tensor& labels, int64_t num_classes,
                                             int64_t epoch) {
  if (!options_.shuffle)
    throw ValueError("DeepClusterSampler: uniform sampling needs shuffle=true (as upstream)");
  if (labels.numel() != dataset_size_)
    throw ValueError("DeepClusterSampler: " + std::to_string(labels.numel()) +
                     " cluster labels for a dataset of " + std::to_string(dataset_size_));
  uniform_.clear();
  uniform_[epoch] = clustering::uniform_indices(labels, num_classes, uint64_t(epoch));
}

} // namespace selfsup::plugins::deepcluster
