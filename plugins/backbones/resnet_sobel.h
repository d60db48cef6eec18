#pragma once
// ResNetSobel (MMSelfSup's, for DeepCluster): a fixed Sobel layer (grey level, then the
// horizontal and vertical Sobel derivatives) in front of a ResNet that takes its 2 channels.
#include <memory>
#include <ostream>
#include <vector>

#include <torch/nn/module.h>
#include <torch/nn/modules/container/sequential.h>
#include <torch/types.h>

#include <selfsup/config.h>
#include <selfsup/options.h>

#include "resnet.h"

namespace selfsup::plugins::backbones {

/// MMSelfSup's Sobel: `sobel` = Sequential(Conv2d(3, 1, 1) with weights 1/3 and bias 0 (the
/// mean of the channels), Conv2d(1, 2, 3, padding 1) with the kernels [[1, 0, -1], [2, 0, -2],
/// [1, 0, -1]] (d/dx) and [[1, 2, 1], [0, 0, 0], [-1, -2, -1]] (d/dy), bias 0). Its parameters
/// never train (requires_grad false), as upstream's.
class SobelImpl : public torch::nn::Module {
public:
  SobelImpl();
  torch::Tensor forward(const torch::Tensor& x);

private:
  torch::nn::Sequential sobel_{nullptr};
};
TORCH_MODULE(Sobel);

/// ResNet's options (its in_channels set to 2) and the Sobel layer `sobel_layer`, registered
/// after the ResNet's modules as upstream does, so the state_dict keys and their order are
/// MMSelfSup's: conv1, bn1, layer1..., sobel_layer.sobel.{0,1}.{weight,bias}.
///
/// Upstream difference: in MMSelfSup 1.0 the Runner's init_weights() applies the backbone's
/// init_cfg (Kaiming on every Conv2d) to the Sobel convolutions too, so a run through the
/// Runner trains behind a frozen random 3->1->2 convolution instead of the Sobel filter
/// (checked with mmengine 0.8.4). selfsup keeps the Sobel filter the layer and the DeepCluster
/// paper describe.
class ResNetSobel final : public ResNet {
public:
  explicit ResNetSobel(const ResNetOptions& options);
  std::vector<torch::Tensor> forward(const torch::Tensor& x) override;
  void pretty_print(std::ostream& stream) const override;

  /// The options table: ResNet's, with in_channels (the input image's) 3 only; the ResNet
  /// behind the Sobel layer takes 2.
  static OptionTable<ResNetOptions> table();

private:
  Sobel sobel_layer_{nullptr};
};

std::shared_ptr<selfsup::Backbone> make_resnet_sobel(const Config& cfg);

} // namespace selfsup::plugins::backbones
