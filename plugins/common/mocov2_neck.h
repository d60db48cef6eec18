#pragma once
// MoCoV2Neck: MMSelfSup's MoCo v2 projection, [avgpool] -> fc -> relu -> fc (no BN). Module
// names follow MMSelfSup (mlp.0, mlp.2) so weights map 1:1.
#include <cstdint>
#include <memory>
#include <ostream>
#include <vector>

#include <torch/arg.h>
#include <torch/nn/modules/container/sequential.h>
#include <torch/types.h>

#include <selfsup/config.h>
#include <selfsup/interfaces/modules.h>
#include <selfsup/options.h>

namespace selfsup::plugins::common {

struct MoCoV2NeckOptions {
  MoCoV2NeckOptions(int64_t in, int64_t hid, int64_t out)
      : in_channels_(in), hid_channels_(hid), out_channels_(out) {}
  static OptionTable<MoCoV2NeckOptions> table();

  TORCH_ARG(int64_t, in_channels);
  TORCH_ARG(int64_t, hid_channels);
  TORCH_ARG(int64_t, out_channels);
  TORCH_ARG(bool, with_avg_pool) = true;

private:
  MoCoV2NeckOptions() = default;
};

/// `[avgpool] -> fc (bias) -> relu -> fc (bias)` on exactly one input tensor. Returns one
/// [N, out_channels] tensor.
class MoCoV2Neck final : public selfsup::Neck {
public:
  explicit MoCoV2Neck(const MoCoV2NeckOptions& options);
  std::vector<torch::Tensor> forward(const std::vector<torch::Tensor>& x) override;
  void pretty_print(std::ostream& stream) const override;
  void reset();

  MoCoV2NeckOptions options;

private:
  torch::nn::Sequential mlp_{nullptr};
};

std::shared_ptr<selfsup::Neck> make_mocov2_neck(const Config& cfg);

} // namespace selfsup::plugins::common
