#pragma once
#include <vector>

#include <torch/nn/modules/dropout.h>
#include <torch/nn/modules/linear.h>

#include <selfsup/bricks/norm.h>
#include <selfsup/interfaces/modules.h>
#include <selfsup/options.h>

namespace selfsup::plugins::odc {

struct ODCNeckOptions {
  int64_t in_channels = 0, hid_channels = 0, out_channels = 0;
  bool with_avg_pool = true;
  // The momentum is fixed at 0.001 (upstream: dict(**norm_cfg, momentum=0.001)).
  bricks::NormCfg norm_cfg = [] {
    bricks::NormCfg n{"SyncBN"};
    n.momentum = 0.001;
    return n;
  }();
  static OptionTable<ODCNeckOptions> table();
};

/// MMSelfSup's ODCNeck: [avgpool] -> fc0 -> BN1d (momentum 0.001, no affine) -> ReLU ->
/// Dropout(0.5) -> fc1 -> ReLU. Linear layers keep PyTorch's default initialisation.
class ODCNeck final : public Neck {
public:
  explicit ODCNeck(const ODCNeckOptions& options);
  std::vector<torch::Tensor> forward(const std::vector<torch::Tensor>& x) override;
  void pretty_print(std::ostream& stream) const override;

  ODCNeckOptions options;

private:
  torch::nn::Linear fc0_{nullptr}, fc1_{nullptr};
  bricks::BatchNorm1d bn0_{nullptr};
  torch::nn::Dropout dropout_{nullptr};
};

} // namespace selfsup::plugins::odc
