#pragma once
// CrossCorrelationLoss (Barlow Twins): the redundancy-reduction loss of a cross-correlation
// matrix.
#include <memory>
#include <ostream>

#include <torch/arg.h>
#include <torch/types.h>

#include <selfsup/config.h>
#include <selfsup/interfaces/modules.h>
#include <selfsup/options.h>

namespace selfsup::plugins::common {

struct CrossCorrelationLossOptions {
  static OptionTable<CrossCorrelationLossOptions> table();
  /// Weight of the off-diagonal (redundancy) term.
  TORCH_ARG(double, lambd) = 0.0051;
};

/// `sum_i (C_ii - 1)^2 + lambd * sum_{i != j} C_ij^2` of a square matrix C, as MMSelfSup's
/// CrossCorrelationLoss. `forward(C, target)` ignores `target` (pass an undefined tensor).
class CrossCorrelationLoss final : public selfsup::Loss {
public:
  explicit CrossCorrelationLoss(const CrossCorrelationLossOptions& options) : options(options) {}
  torch::Tensor forward(const torch::Tensor& cross_correlation,
                        const torch::Tensor& target) override;
  void pretty_print(std::ostream& stream) const override;

  CrossCorrelationLossOptions options;
};

std::shared_ptr<selfsup::Loss> make_cross_correlation_loss(const Config& cfg);

} // namespace selfsup::plugins::common
