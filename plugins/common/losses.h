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
#include <selfsup/options.h>

namespace selfsup::plugins::common {

// ---- CrossEntropyLoss ------------------------------------------------------------------

struct CrossEntropyLossOptions {
  static OptionTable<CrossEntropyLossOptions> table();

  /// false only: sigmoid (binary) cross-entropy is not ported.
  TORCH_ARG(bool, use_sigmoid) = false;
  /// Soft labels: `target` is [N, C] class probabilities instead of [N] indices.
  TORCH_ARG(bool, use_soft) = false;
  /// 'mean', 'sum' or 'none'.
  TORCH_ARG(std::string, reduction) = "mean";
  TORCH_ARG(double, loss_weight) = 1.0;
  /// Per-class weights; unset for none.
  TORCH_ARG(std::optional<std::vector<double>>, class_weight) = std::nullopt;
};

/// mmcls CrossEntropyLoss: per-sample `w[y_i] * CE_i` (hard labels) or
/// `sum_c w_c * -p_ic * log_softmax_ic` (soft labels), reduced by a plain mean or sum over
/// samples (not renormalised by the weights, unlike torch's `weight=`), times loss_weight.
class CrossEntropyLoss final : public selfsup::Loss {
public:
  explicit CrossEntropyLoss(const CrossEntropyLossOptions& options);
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
  static OptionTable<CosineSimilarityLossOptions> table();
  TORCH_ARG(double, shift_factor) = 0.0;
  TORCH_ARG(double, scale_factor) = 1.0;
};

/// `mean_i (shift - scale * cos(pred_i, target_i))`, cosine over the last dim.
class CosineSimilarityLoss final : public selfsup::Loss {
public:
  explicit CosineSimilarityLoss(const CosineSimilarityLossOptions& options) : options(options) {}
  torch::Tensor forward(const torch::Tensor& pred, const torch::Tensor& target) override;
  void pretty_print(std::ostream& stream) const override;

  CosineSimilarityLossOptions options;
};

std::shared_ptr<selfsup::Loss> make_cross_entropy_loss(const Config& cfg);
std::shared_ptr<selfsup::Loss> make_cosine_similarity_loss(const Config& cfg);

} // namespace selfsup::plugins::common
