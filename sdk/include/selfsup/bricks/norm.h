#pragma once
// Norm-layer brick shared by plugins: MMCV's `norm_cfg` ({type: 'BN' | 'SyncBN',
// requires_grad, eps, momentum}) and the BatchNorm layers it makes. SyncBN is a BatchNorm whose
// training-mode statistics are those of the global batch of a data-parallel run (torch's
// SyncBatchNorm); in one process it is BN, as MMEngine reverts it.
#include <cstdint>
#include <memory>
#include <ostream>
#include <string>

#include <torch/nn/modules/batchnorm.h>

#include <selfsup/config.h>
#include <selfsup/export.h>
#include <selfsup/options.h>

namespace selfsup::bricks {

/// torch's BatchNorm1d (same parameters, buffers and names, so checkpoints and exports are
/// unchanged) that, when `sync` is set, in training mode and with dist().world_size() > 1,
/// normalises with the per-channel mean and variance of the global batch: each rank's count,
/// mean and sum of squared deviations (fp32 for reduced-precision inputs) are gathered with
/// dist().all_gather_with_grad, whose backward sums the ranks' gradients, so with the
/// gradients averaged over the ranks (the OptimWrapper's sync) every parameter gets the
/// gradient of the whole batch in one process. The running statistics follow the global
/// batch (unbiased variance with the global count), as torch's SyncBatchNorm. Otherwise it is
/// torch's BatchNorm1d.
class SELFSUP_SDK_API BatchNorm1dImpl : public torch::nn::BatchNorm1dImpl {
public:
  explicit BatchNorm1dImpl(const torch::nn::BatchNormOptions& options, bool sync = false);
  torch::Tensor forward(const torch::Tensor& input);
  /// A copy of the same class (`sync` kept), not torch's base BatchNorm1d.
  [[nodiscard]] std::shared_ptr<torch::nn::Module>
  clone(const c10::optional<torch::Device>& device = c10::nullopt) const override;
  void pretty_print(std::ostream& stream) const override;
  [[nodiscard]] bool sync() const { return sync_; }

private:
  bool sync_;
};
TORCH_MODULE(BatchNorm1d);

/// torch's BatchNorm2d with the same optional synchronisation as BatchNorm1dImpl.
class SELFSUP_SDK_API BatchNorm2dImpl : public torch::nn::BatchNorm2dImpl {
public:
  explicit BatchNorm2dImpl(const torch::nn::BatchNormOptions& options, bool sync = false);
  torch::Tensor forward(const torch::Tensor& input);
  /// A copy of the same class (`sync` kept), not torch's base BatchNorm2d.
  [[nodiscard]] std::shared_ptr<torch::nn::Module>
  clone(const c10::optional<torch::Device>& device = c10::nullopt) const override;
  void pretty_print(std::ostream& stream) const override;
  [[nodiscard]] bool sync() const { return sync_; }

private:
  bool sync_;
};
TORCH_MODULE(BatchNorm2d);

struct SELFSUP_SDK_API NormCfg {
  std::string type = "BN"; // 'SyncBN': synchronised across ranks; BN in one process
  bool requires_grad = true;
  double eps = 1e-5;
  double momentum = 0.1;

  /// The declaration of the keys (type required; the rest default to the values above).
  static OptionTable<NormCfg> table();
  /// Reads a norm_cfg dict; other keys and types are ConfigErrors naming the path.
  static NormCfg from_config(const Config& cfg);
  /// BatchNorm1d (synchronised for 'SyncBN'), weight 1 and bias 0 when affine (mmcv's
  /// Constant(1) init).
  [[nodiscard]] BatchNorm1d make_1d(int64_t channels, bool affine = true) const;
  /// BatchNorm2d (synchronised for 'SyncBN'), weight 1 and bias 0 (torchvision's and mmcv's
  /// scheme).
  [[nodiscard]] BatchNorm2d make_2d(int64_t channels) const;
};

} // namespace selfsup::bricks
