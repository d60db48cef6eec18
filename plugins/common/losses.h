#pragma once
// Shared losses: mmcls CrossEntropyLoss and MMSelfSup CosineSimilarityLoss.
#include <memory>
#include <optional>
#include <ostream>
#include <string>
#include <vector>

#include <torch/arg.h>
#include <torch/nn/module.h>
#include <torch/types.h>

#include <selfsup/config.h>
#include <selfsup/interfaces/modules.h>
#include <selfsup/schema.h>

namespace selfsup::plugins::common {

// ---- CrossEntropyLoss ------------------------------------------------------------------

struct CrossEntropyLossOptions {
  static CrossEntropyLossOptions from_config(const Config& cfg);

  /// Soft labels: `target` is [N, C] class probabilities instead of [N] indices.
  TORCH_ARG(bool, use_soft) = false;
  /// 'mean', 'sum' or 'none'.
  TORCH_ARG(std::string, reduction) = "mean";
  TORCH_ARG(double, loss_weight) = 1.0;
  /// Per-class weights; empty for none.
  TORCH_ARG(std::vector<double>, class_weight) = {};
};

/// mmcls CrossEntropyLoss: per-sample `w[y_i] * CE_i` (hard labels) or
/// `sum_c w_c * -p_ic * log_softmax_ic` (soft labels), reduced by a plain mean or sum over
/// samples (not renormalised by the weights, unlike torch's `weight=`), times loss_weight.
class CrossEntropyLossImpl final : public selfsup::Loss {
public:
  explicit CrossEntropyLossImpl(const CrossEntropyLossOptions& options);
  /// `logits` [N, C] (or [N, C, d...]); `target` int labels [N] (or [N, d...]), or with
  /// use_soft float probabilities shaped like `logits`.
  torch::Tensor forward(const torch::Tensor& logits, const torch::Tensor& target) override;
  void pretty_print(std::ostream& stream) const override;

  CrossEntropyLossOptions options;

private:
  torch::Tensor class_weight_; // undefined when absent; not a buffer (a config value)
};

// ---- CosineSimilarityLoss --------------------------------------------------------------

struct CosineSimilarityLossOptions {
  static CosineSimilarityLossOptions from_config(const Config& cfg);
  TORCH_ARG(double, shift_factor) = 0.0;
  TORCH_ARG(double, scale_factor) = 1.0;
};

/// `mean_i (shift - scale * cos(pred_i, target_i))`, cosine over the last dim.
class CosineSimilarityLossImpl final : public selfsup::Loss {
public:
  explicit CosineSimilarityLossImpl(const CosineSimilarityLossOptions& options)
      : options(options) {}
  torch::Tensor forward(const torch::Tensor& pred, const torch::Tensor& target) override;
  void pretty_print(std::ostream& stream) const override;

  CosineSimilarityLossOptions options;
};

selfsup::Schema cross_entropy_loss_schema();
selfsup::Schema cosine_similarity_loss_schema();
std::shared_ptr<selfsup::Loss> make_cross_entropy_loss(const Config& cfg);
std::shared_ptr<selfsup::Loss> make_cosine_similarity_loss(const Config& cfg);

} // namespace selfsup::plugins::common
