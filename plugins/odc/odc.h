#pragma once
#include <memory>
#include <vector>

#include <selfsup/interfaces/algorithm.h>
#include <selfsup/interfaces/clustering.h>
#include <selfsup/schema.h>

#include "odc_memory.h"

namespace selfsup::plugins::odc {

/// ODC (Zhan et al. 2020), online deep clustering, as MMSelfSup 1.0 builds it: backbone ->
/// ODCNeck -> ClsHead trained on each sample's label in the ODCMemory (looked up by
/// sample_idx), then the memory takes the batch's features and re-assigns their labels
/// (change_ratio is logged). The initial clustering comes from DeepClusterHook
/// (init_memory=true), centroid updates, small-cluster handling and re-weighting from ODCHook.
/// The loss is the class-weighted mean of the head's per-sample cross-entropy, renormalised
/// by the weights as MMSelfSup 0.x (docs/algorithms.md).
class ODC final : public BaseModel, public ClusteringAlgorithm {
public:
  explicit ODC(const Config& cfg);
  static Schema schema();

  std::vector<torch::Tensor> extract_feat(const std::vector<torch::Tensor>& inputs) override;
  LossMap loss(const std::vector<torch::Tensor>& inputs, const DataSamples& samples) override;
  std::vector<torch::Tensor> predict(const std::vector<torch::Tensor>& inputs,
                                     const DataSamples& samples) override;
  /// BeforeRun: the memory has a row for every training sample.
  void on_run_event(RunEvent event, RunnerContext& context) override;

  [[nodiscard]] int64_t num_classes() const override { return num_classes_; }
  void set_clustering_features(bool on) override { clustering_features_ = on; }
  /// The memory's labels come from init_memory; this only checks the count.
  void assign_labels(const torch::Tensor& labels) override;
  [[nodiscard]] torch::Tensor loss_weight() override { return loss_weight_; }
  void reinit_head() override;
  void init_memory(const torch::Tensor& features, const torch::Tensor& labels) override;

  [[nodiscard]] ODCMemory& memory_bank() const { return *memory_bank_; }
  void pretty_print(std::ostream& stream) const override;

private:
  ODC(const Config& cfg, const Config& derived);

  Config head_cfg_;
  std::shared_ptr<ODCMemory> memory_bank_;
  int64_t num_classes_;
  torch::Tensor loss_weight_;
  bool clustering_features_ = false;
};

} // namespace selfsup::plugins::odc
