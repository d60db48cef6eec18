#include <selfsup/core/sampler.h>

#include <random>
#include <string>

#include <selfsup/core/data.h>
#include <selfsup/errors.h>
#include <selfsup/registry.h>

#include "builtins.h"

namespace selfsup::core {

OptionTable<DefaultSamplerOptions> DefaultSamplerOptions::table() {
  using O = DefaultSamplerOptions;
  return OptionTable<O>("MMEngine's DefaultSampler: shuffles with a seed per epoch, pads to a "
                        "multiple of the world size (round_up) and gives each rank every "
                        "world_size-th index.",
                        O())
      .optional("shuffle", &O::shuffle, "shuffle the order each epoch")
      .optional("seed", &O::seed, "the shuffle seed (default: the run's seed)", check::ge(0))
      .optional("round_up", &O::round_up,
                "pad with indices from the start so every rank gets the same count");
}

DefaultSampler::DefaultSampler(DefaultSamplerOptions options) : options_(std::move(options)) {}

DefaultSampler::~DefaultSampler() = default;

void DefaultSampler::bind(int64_t dataset_size, int rank, int world_size, uint64_t seed) {
  if (world_size < 1 || rank < 0 || rank >= world_size)
    throw ValueError("DefaultSampler: rank " + std::to_string(rank) + " of world size " +
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

std::vector<int64_t> DefaultSampler::indices(int64_t epoch) const {
  const int64_t n = dataset_size_;
  std::vector<int64_t> order(static_cast<size_t>(n));
  for (int64_t i = 0; i < n; ++i) order[size_t(i)] = i;
  if (options_.shuffle && n > 1) {
    // Fisher-Yates from a generator seeded by (seed, epoch).
    std::mt19937_64 gen(sample_seed(seed_, epoch, -1));
    for (int64_t i = n - 1; i > 0; --i) {
      const auto j = int64_t(gen() % uint64_t(i + 1));
      std::swap(order[size_t(i)], order[size_t(j)]);
    }
  }
  // Pad by repeating the order from its start (MMEngine: indices * k, cut to total_size).
  for (int64_t i = n; i < total_size_ && n > 0; ++i) order.push_back(order[size_t(i % n)]);
  std::vector<int64_t> mine;
  mine.reserve(size_t(num_samples_));
  for (int64_t i = rank_; i < total_size_; i += world_size_) mine.push_back(order[size_t(i)]);
  return mine;
}

void register_samplers(Registrar& r) {
  r.add<Sampler>(
      "DefaultSampler",
      [](const Config& c) {
        return std::make_shared<DefaultSampler>(DefaultSamplerOptions::table().parse(c));
      },
      DefaultSamplerOptions::table().schema());
}

} // namespace selfsup::core
