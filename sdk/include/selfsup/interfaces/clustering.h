#pragma once
// ClusteringAlgorithm: what a re-clustering hook (DeepClusterHook) hands to an algorithm
// trained on cluster assignments (DeepCluster, ODC), whichever plugin provides either. An
// algorithm derives from it besides Algorithm; the hook finds it with dynamic_cast (the key
// function is in libselfsup_sdk.so, so the cast works across plugins).
#include <cstdint>

#include <torch/types.h>

#include <selfsup/export.h>

namespace selfsup {

class SELFSUP_SDK_API ClusteringAlgorithm {
public:
  virtual ~ClusteringAlgorithm();
  /// Classes of the classifier head (the number of clusters it predicts).
  [[nodiscard]] virtual int64_t num_classes() const = 0;
  /// While on, extract_feat returns what MMSelfSup's Extractor clusters: the neck's output
  /// on the backbone's last map.
  virtual void set_clustering_features(bool on) = 0;
  /// The cluster of every dataset sample ([N] int64), MMSelfSup's `dataset.assign_labels`.
  virtual void assign_labels(const torch::Tensor& labels) = 0;
  /// The per-class loss weights ([num_classes] float buffer), written in place by hooks.
  [[nodiscard]] virtual torch::Tensor loss_weight() = 0;
  /// Draws the classifier head's weights afresh (its own initialisation).
  virtual void reinit_head() = 0;
  /// Initialises a memory bank from features [N, D] and labels [N] (ODC); the default throws
  /// ValueError: the algorithm has no memory bank.
  virtual void init_memory(const torch::Tensor& features, const torch::Tensor& labels);
};

} // namespace selfsup
