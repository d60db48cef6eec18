#pragma once
// The building blocks of ResNet, under torchvision's parameter names: a norm-layer config
// (`norm_cfg`), BasicBlock and Bottleneck ('pytorch' style: the stride sits on the 3x3 conv),
// and ResLayer (a numbered run of blocks, `layer1.0`, `layer1.1`, ...).
#include <cstdint>
#include <memory>
#include <ostream>
#include <string>
#include <vector>

#include <torch/nn/module.h>
#include <torch/nn/modules/batchnorm.h>
#include <torch/nn/modules/container/sequential.h>
#include <torch/nn/modules/conv.h>
#include <torch/types.h>

#include <selfsup/bricks/norm.h>
#include <selfsup/config.h>

namespace selfsup::plugins::backbones {

using NormCfg = selfsup::bricks::NormCfg;

/// `kernel` x `kernel` conv without bias, padding = dilation * (kernel / 2), Kaiming-normal
/// (fan_out, relu) initialised as torchvision does.
torch::nn::Conv2d make_conv(int64_t in, int64_t out, int64_t kernel, int64_t stride,
                            int64_t dilation = 1);

/// A residual block: forward plus access to the norm layer that `zero_init_residual` zeroes.
class ResBlock : public torch::nn::Module {
public:
  virtual torch::Tensor forward(const torch::Tensor& x) = 0;
  /// The last norm layer of the residual branch (bn2 of BasicBlock, bn3 of Bottleneck).
  [[nodiscard]] virtual bricks::BatchNorm2d last_norm() const = 0;
};

/// torchvision's BasicBlock: conv1 (3x3, stride) - bn1 - relu - conv2 (3x3) - bn2, + identity.
class BasicBlock final : public ResBlock {
public:
  static constexpr int64_t kExpansion = 1;
  BasicBlock(int64_t inplanes, int64_t planes, int64_t stride, int64_t dilation,
             const NormCfg& norm);
  torch::Tensor forward(const torch::Tensor& x) override;
  [[nodiscard]] bricks::BatchNorm2d last_norm() const override { return bn2_; }
  void pretty_print(std::ostream& stream) const override;

private:
  torch::nn::Conv2d conv1_{nullptr}, conv2_{nullptr};
  bricks::BatchNorm2d bn1_{nullptr}, bn2_{nullptr};
  torch::nn::Sequential downsample_{nullptr};
};

/// torchvision's Bottleneck (v1.5): conv1 (1x1) - bn1 - relu - conv2 (3x3, stride) - bn2 -
/// relu - conv3 (1x1, x4) - bn3, + identity.
class Bottleneck final : public ResBlock {
public:
  static constexpr int64_t kExpansion = 4;
  Bottleneck(int64_t inplanes, int64_t planes, int64_t stride, int64_t dilation,
             const NormCfg& norm);
  torch::Tensor forward(const torch::Tensor& x) override;
  [[nodiscard]] bricks::BatchNorm2d last_norm() const override { return bn3_; }
  void pretty_print(std::ostream& stream) const override;

private:
  torch::nn::Conv2d conv1_{nullptr}, conv2_{nullptr}, conv3_{nullptr};
  bricks::BatchNorm2d bn1_{nullptr}, bn2_{nullptr}, bn3_{nullptr};
  torch::nn::Sequential downsample_{nullptr};
};

/// One stage: `num_blocks` blocks registered as "0", "1", ...; the first one carries the
/// stride and, when the shape changes, a `downsample` (1x1 conv + norm) shortcut.
class ResLayerImpl final : public torch::nn::Module {
public:
  ResLayerImpl(bool bottleneck, int64_t inplanes, int64_t planes, int64_t num_blocks,
               int64_t stride, int64_t dilation, const NormCfg& norm);
  torch::Tensor forward(torch::Tensor x);
  [[nodiscard]] const std::vector<std::shared_ptr<ResBlock>>& blocks() const { return blocks_; }
  void pretty_print(std::ostream& stream) const override;

private:
  std::vector<std::shared_ptr<ResBlock>> blocks_;
};
TORCH_MODULE(ResLayer);

} // namespace selfsup::plugins::backbones
