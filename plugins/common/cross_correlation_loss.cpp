#include "cross_correlation_loss.h"

#include <torch/torch.h>

namespace selfsup::plugins::common {

OptionTable<CrossCorrelationLossOptions> CrossCorrelationLossOptions::table() {
  using O = CrossCorrelationLossOptions;
  return OptionTable<O>("Barlow Twins' loss of a cross-correlation matrix C: sum of (C_ii - 1)^2 "
                        "plus lambd times the sum of the squared off-diagonal entries",
                        O())
      .optional("lambd", &O::lambd_, "weight of the off-diagonal term", check::ge(0));
}

torch::Tensor CrossCorrelationLoss::forward(const torch::Tensor& cross_correlation,
                                            const torch::Tensor& /*target*/) {
  const torch::Tensor& c = cross_correlation;
  TORCH_CHECK(c.dim() == 2 && c.size(0) == c.size(1),
              "CrossCorrelationLoss: expected a square matrix [D, D], got ", c.sizes());
  const torch::Tensor diag = c.diagonal();
  const torch::Tensor on_diag = (diag - 1).pow(2).sum();
  // The off-diagonal squares, the diagonal masked to zero (no cancellation).
  const torch::Tensor off_mask = 1 - torch::eye(c.size(0), c.options());
  const torch::Tensor off_diag = (c * off_mask).pow(2).sum();
  return on_diag + options.lambd() * off_diag;
}

void CrossCorrelationLoss::pretty_print(std::ostream& stream) const {
  stream << "selfsup::plugins::common::CrossCorrelationLoss(lambd=" << options.lambd() << ")";
}

std::shared_ptr<selfsup::Loss> make_cross_correlation_loss(const Config& cfg) {
  return std::make_shared<CrossCorrelationLoss>(CrossCorrelationLossOptions::table().parse(cfg));
}

} // namespace selfsup::plugins::common
