#pragma once
// MMEngine's DefaultSampler: an epoch-seeded shuffle (or the natural order), padded to a
// multiple of the world size when `round_up`, and sharded by rank (every world_size-th index
// from the rank's own offset), so every rank sees a disjoint part of equal length.
#include <cstdint>
#include <optional>
#include <vector>

#include <selfsup/config.h>
#include <selfsup/core/export.h>
#include <selfsup/interfaces/sampler.h>
#include <selfsup/options.h>

namespace selfsup::core {

struct SELFSUP_CORE_API DefaultSamplerOptions {
  bool shuffle = true;
  std::optional<int64_t> seed; // absent: the run's seed given to bind()
  bool round_up = true;
  static OptionTable<DefaultSamplerOptions> table();
};

class SELFSUP_CORE_API DefaultSampler final : public Sampler {
public:
  explicit DefaultSampler(DefaultSamplerOptions options);
  ~DefaultSampler() override;

  void bind(int64_t dataset_size, int rank, int world_size, uint64_t seed) override;
  std::vector<int64_t> indices(int64_t epoch) const override;
  int64_t size() const override { return num_samples_; }

private:
  DefaultSamplerOptions options_;
  int64_t dataset_size_ = 0;
  int rank_ = 0, world_size_ = 1;
  uint64_t seed_ = 0;
  int64_t num_samples_ = 0, total_size_ = 0;
};

} // namespace selfsup::core
