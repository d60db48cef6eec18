#pragma once
#include <cstdint>
#include <map>
#include <optional>
#include <vector>

#include <torch/types.h>

#include <selfsup/interfaces/sampler.h>
#include <selfsup/options.h>

namespace selfsup::plugins::deepcluster {

struct DeepClusterSamplerOptions {
  bool shuffle = true;
  std::optional<int64_t> seed; // absent: the run's seed given to bind()
  bool replace = false;
  bool round_up = true;
  static OptionTable<DeepClusterSamplerOptions> table();
};

/// MMSelfSup's DeepClusterSampler: MMEngine's DefaultSampler (epoch-seeded order, padded to a
/// multiple of the world size, sharded by rank) that may draw with replacement (`replace`,
/// ODC), and that visits the class-balanced indices DeepClusterHook sets for an epoch
/// (set_uniform_indices) instead of its own order in that epoch.
class DeepClusterSampler final : public Sampler {
public:
  explicit DeepClusterSampler(DeepClusterSamplerOptions options);
  void bind(int64_t dataset_size, int rank, int world_size, uint64_t seed) override;
  [[nodiscard]] std::vector<int64_t> indices(int64_t epoch) const override;
  [[nodiscard]] int64_t size() const override { return num_samples_; }

  /// Class-balanced indices from cluster labels [N] for `epoch` (clustering.h's
  /// uniform_indices seeded with the epoch, as upstream's np.random.seed(epoch)); earlier
  /// epochs' sets are dropped. Needs shuffle, as upstream.
  void set_uniform_indices(const torch::Tensor& labels, int64_t num_classes, int64_t epoch);
  [[nodiscard]] bool replace() const { return options_.replace; }

private:
  [[nodiscard]] std::vector<int64_t> shard(std::vector<int64_t> order) const;

  DeepClusterSamplerOptions options_;
  int64_t dataset_size_ = 0;
  int rank_ = 0, world_size_ = 1;
  uint64_t seed_ = 0;
  int64_t num_samples_ = 0, total_size_ = 0;
  std::map<int64_t, std::vector<int64_t>> uniform_; // epoch -> class-balanced order
};

} // namespace selfsup::plugins::deepcluster
