#pragma once
#include <memory>
#include <mutex>

#include <torch/types.h>

#include <selfsup/config.h>
#include <selfsup/interfaces/data.h>
#include <selfsup/schema.h>

namespace selfsup::plugins::deepcluster {

/// MMSelfSup's DeepClusterImageNet: mmcls.ImageNet whose samples also carry their cluster as
/// the tensor "clustering_label" (-1 until DeepClusterHook assigns labels), for pipelines that
/// pack it (pseudo_label_keys=['clustering_label']). The algorithms read their own copy of
/// the labels by sample_idx; this one follows it.
class DeepClusterImageNet final : public Dataset {
public:
  explicit DeepClusterImageNet(std::shared_ptr<Dataset> images);
  /// Builds mmcls.ImageNet from the same keys.
  static std::shared_ptr<Dataset> make(const Config& cfg);
  /// mmcls.ImageNet's schema from `registry` (the keys are the same), with this doc.
  static Schema schema(const Registry& registry);

  [[nodiscard]] int64_t size() const override { return images_->size(); }
  [[nodiscard]] Sample get(int64_t index) const override;
  [[nodiscard]] int64_t num_classes() const override { return images_->num_classes(); }
  /// Sets every sample's cluster ([size()] int64); safe while loader threads read.
  void assign_labels(const torch::Tensor& labels) const;

private:
  std::shared_ptr<Dataset> images_;
  mutable std::mutex mutex_;
  mutable torch::Tensor labels_; // [N] int64, or undefined (all -1)
};

} // namespace selfsup::plugins::deepcluster
