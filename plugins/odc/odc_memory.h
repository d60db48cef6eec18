#pragma once
#include <cstdint>
#include <vector>

#include <torch/types.h>

#include <selfsup/interfaces/modules.h>
#include <selfsup/options.h>

namespace selfsup::plugins::odc {

struct ODCMemoryOptions {
  int64_t length = 0, feat_dim = 0;
  double momentum = 0.5;
  int64_t num_classes = 0, min_cluster = 20;
  bool debug = false;
  static OptionTable<ODCMemoryOptions> table();
};

/// MMSelfSup's ODCMemory: the samples memory (an L2-normalised feature and a cluster label per
/// dataset sample) and the centroids memory. Buffers `feature_bank` [length, feat_dim],
/// `label_bank` [length] and `centroids` [num_classes, feat_dim] (all three are saved in
/// checkpoints; upstream saves only the centroids). In a distributed run every rank keeps the
/// whole memory and applies the same gathered updates (upstream keeps the features on rank 0).
class ODCMemory final : public Memory {
public:
  explicit ODCMemory(const ODCMemoryOptions& options);

  /// From the initial clustering: labels [N] (every cluster non-empty, else ValueError), the
  /// features [N, feat_dim] L2-normalised (+1e-10) into the first N rows, then the centroids.
  void init_memory(const torch::Tensor& features, const torch::Tensor& labels);
  /// Per iteration: the batch's features are L2-normalised, gathered over ranks, mixed into
  /// the bank (new = nrm((1 - momentum) old + momentum f)) and each sample gets the label of
  /// its most similar centroid. Returns the fraction of changed labels.
  torch::Tensor update_samples_memory(const torch::Tensor& idx, const torch::Tensor& feature);
  /// Memory::update: update_samples_memory without its ratio.
  void update(const torch::Tensor& idx, const torch::Tensor& feature) override;
  /// Samples of clusters smaller than min_cluster move to their most similar other centroid;
  /// each cluster so emptied takes one half of a 2-means split of the largest cluster.
  void deal_with_small_clusters();
  /// Centroids = means of their samples' features: all non-empty ones, or only `cinds`.
  void update_centroids_memory(const std::vector<int64_t>& cinds = {});

  [[nodiscard]] bool initialized() const { return initialized_; }
  /// The rows the initial clustering filled (0..N-1; N < length when the training loader
  /// takes `indices`): views of `label_bank` and `feature_bank`. Cluster sizes, centroids,
  /// small clusters and loss weights count these rows only, never the untouched rest.
  [[nodiscard]] torch::Tensor labels() const { return label_bank.slice(0, 0, rows_); }
  [[nodiscard]] torch::Tensor features() const { return feature_bank.slice(0, 0, rows_); }
  [[nodiscard]] int64_t rows() const { return rows_; }
  torch::Tensor feature_bank, label_bank, centroids;
  ODCMemoryOptions options;

private:
  [[nodiscard]] torch::Tensor compute_centroids(const std::vector<int64_t>& cinds) const;
  void redirect_empty_clusters(const std::vector<int64_t>& empty);
  bool initialized_ = false;
  int64_t rows_ = 0;        // rows filled by init_memory
  uint64_t partitions_ = 0; // seeds the random fallback of the 2-means split
};

} // namespace selfsup::plugins::odc
