#pragma once
#include <vector>

#include <selfsup/interfaces/algorithm.h>
#include <selfsup/interfaces/clustering.h>
#include <selfsup/schema.h>

namespace selfsup::plugins::deepcluster {

/// DeepCluster (Caron et al. 2018) as MMSelfSup 1.0 builds it: backbone -> neck
/// (AvgPool2dNeck) -> ClsHead trained on the cluster of each sample, which DeepClusterHook
/// re-computes every epoch (feature extraction, PCA whitening, k-means) and hands over with
/// assign_labels; the labels are looked up by DataSamples::sample_idx. The loss is the
/// class-weighted mean of the head's per-sample cross-entropy with the `loss_weight` buffer
/// (uniform 1/k), renormalised by the weights as MMSelfSup 0.x (docs/algorithms.md says why).
class DeepCluster final : public BaseModel, public ClusteringAlgorithm {
public:
  explicit DeepCluster(const Config& cfg);
  static Schema schema();

  std::vector<torch::Tensor> extract_feat(const std::vector<torch::Tensor>& inputs) override;
  LossMap loss(const std::vector<torch::Tensor>& inputs, const DataSamples& samples) override;
  /// The head's class scores for view 0.
  std::vector<torch::Tensor> predict(const std::vector<torch::Tensor>& inputs,
                                     const DataSamples& samples) override;

  [[nodiscard]] int64_t num_classes() const override { return num_classes_; }
  void set_clustering_features(bool on) override { clustering_features_ = on; }
  void assign_labels(const torch::Tensor& labels) override;
  [[nodiscard]] torch::Tensor loss_weight() override { return loss_weight_; }
  void reinit_head() override;

  /// The cluster of every sample ([N] int64; empty before the first assignment).
  [[nodiscard]] const torch::Tensor& labels() const { return labels_; }
  void pretty_print(std::ostream& stream) const override;

private:
  DeepCluster(const Config& cfg, const Config& derived);

  Config head_cfg_;
  int64_t num_classes_;
  torch::Tensor loss_weight_;
  torch::Tensor labels_;
  bool clustering_features_ = false;
};

} // namespace selfsup::plugins::deepcluster
