#pragma once
// Norm-layer brick shared by plugins: MMCV's `norm_cfg` ({type: 'BN' | 'SyncBN',
// requires_grad, eps, momentum}) and the BatchNorm layers it makes.
#include <cstdint>
#include <string>

#include <torch/nn/modules/batchnorm.h>

#include <selfsup/config.h>
#include <selfsup/export.h>
#include <selfsup/options.h>

namespace selfsup::bricks {

struct SELFSUP_SDK_API NormCfg {
  std::string type = "BN"; // 'SyncBN' acts as 'BN' in one process, as MMEngine reverts it
  bool requires_grad = true;
  double eps = 1e-5;
  double momentum = 0.1;

  /// The declaration of the keys (type required; the rest default to the values above).
  static OptionTable<NormCfg> table();
  /// Reads a norm_cfg dict; other keys and types are ConfigErrors naming the path.
  static NormCfg from_config(const Config& cfg);
  /// BatchNorm1d, weight 1 and bias 0 when affine (mmcv's Constant(1) init).
  [[nodiscard]] torch::nn::BatchNorm1d make_1d(int64_t channels, bool affine = true) const;
  /// BatchNorm2d, weight 1 and bias 0 (torchvision's and mmcv's scheme).
  [[nodiscard]] torch::nn::BatchNorm2d make_2d(int64_t channels) const;
};

} // namespace selfsup::bricks
