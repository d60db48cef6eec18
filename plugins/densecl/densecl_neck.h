#pragma once
#include <cstdint>
#include <optional>
#include <ostream>
#include <vector>

#include <torch/arg.h>
#include <torch/nn/modules/container/sequential.h>
#include <torch/types.h>

#include <selfsup/config.h>
#include <selfsup/interfaces/modules.h>
#include <selfsup/options.h>

namespace selfsup::plugins::densecl {

struct DenseCLNeckOptions {
  DenseCLNeckOptions(int64_t in, int64_t hid, int64_t out)
      : in_channels_(in), hid_channels_(hid), out_channels_(out) {}
  static OptionTable<DenseCLNeckOptions> table();

  TORCH_ARG(int64_t, in_channels);
  TORCH_ARG(int64_t, hid_channels);
  TORCH_ARG(int64_t, out_channels);
  /// Adaptive-pool the map to num_grid x num_grid before the dense branch (absent: keep it).
  TORCH_ARG(std::optional<int64_t>, num_grid);

private:
  DenseCLNeckOptions() = default;
};

/// MMSelfSup's DenseCLNeck: two branches on the single backbone map x [N, C, H, W].
///   global: avgpool -> mlp (Linear in->hid, ReLU, Linear hid->out)        -> [N, out]
///   dense:  [pool to num_grid^2] -> mlp2 (1x1 conv in->hid, ReLU, 1x1 conv hid->out)
///           -> [N, out, S^2], and its average over positions                -> [N, out]
/// forward returns {global, dense grid, pooled dense}. Module names (mlp.0, mlp.2, mlp2.0,
/// mlp2.2) are upstream's, so weights map one to one.
class DenseCLNeck final : public selfsup::Neck {
public:
  explicit DenseCLNeck(const DenseCLNeckOptions& options);
  std::vector<torch::Tensor> forward(const std::vector<torch::Tensor>& x) override;
  void pretty_print(std::ostream& stream) const override;

  DenseCLNeckOptions options;

private:
  torch::nn::Sequential mlp_{nullptr}, mlp2_{nullptr};
};

} // namespace selfsup::plugins::densecl
