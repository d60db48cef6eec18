#pragma once
// Sampler: which dataset indices a process visits in an epoch, and in what order (MMEngine's
// samplers). Kind "sampler", chosen by `train_dataloader.sampler.type`.
#include <cstdint>
#include <vector>

#include <selfsup/export.h>

namespace selfsup {

class SELFSUP_SDK_API Sampler {
public:
  static constexpr const char* kKind = "sampler";
  virtual ~Sampler();
  /// Binds to a dataset of `dataset_size` samples and to this process's place among
  /// `world_size` ranks. `seed` is the run's seed (a sampler's own `seed` key wins).
  virtual void bind(int64_t dataset_size, int rank, int world_size, uint64_t seed) = 0;
  /// The indices (positions in the dataset) this rank visits in `epoch`, in order. A pure
  /// function of the binding and the epoch, so a resumed run sees the same order.
  [[nodiscard]] virtual std::vector<int64_t> indices(int64_t epoch) const = 0;
  /// How many indices each epoch yields on this rank.
  [[nodiscard]] virtual int64_t size() const = 0;
};

} // namespace selfsup
