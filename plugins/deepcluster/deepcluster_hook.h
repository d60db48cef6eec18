#pragma once
#include <cstdint>
#include <memory>
#include <optional>

#include <torch/types.h>

#include <selfsup/config.h>
#include <selfsup/interfaces/training.h>
#include <selfsup/options.h>

namespace selfsup::plugins::deepcluster {

struct DeepClusterHookOptions {
  Config extract_dataloader, clustering;
  bool unif_sampling = false, reweight = false;
  double reweight_pow = 0.5;
  bool init_memory = false, initial = true;
  int64_t interval = 1;
  std::optional<int64_t> seed;
  static OptionTable<DeepClusterHookOptions> table();
};

/// MMSelfSup's DeepClusterHook: before training (`initial`) and after every `interval`-th
/// epoch, the features of the whole training set (extract_dataloader, through the run's
/// feature extraction with the algorithm's clustering features: the neck on the backbone) are
/// clustered on rank 0 (clustering: {type: 'Kmeans', k, pca_dim}: PCA whitening unless
/// pca_dim is -1, L2 normalisation, Faiss k-means of 20 iterations seeded from `seed` (default:
/// the run's) and the epoch), the labels broadcast and handed to the algorithm (and to a
/// DeepClusterImageNet training set); then the class-balanced sampler (`unif_sampling`, needs
/// a DeepClusterSampler), the loss re-weighting (`reweight`), the head's re-initialisation and,
/// for ODC, the memory bank's initialisation (`init_memory`).
class DeepClusterHook final : public Hook {
public:
  explicit DeepClusterHook(DeepClusterHookOptions options);
  static std::shared_ptr<Hook> make(const Config& cfg);

  void before_run(RunnerContext& context) override;
  void after_train_epoch(RunnerContext& context) override;

  /// One re-clustering now; returns the labels [N].
  torch::Tensor deepcluster(RunnerContext& context);

private:
  DeepClusterHookOptions options_;
  int64_t k_ = 0, pca_dim_ = 256;
};

} // namespace selfsup::plugins::deepcluster
