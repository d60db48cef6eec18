#pragma once
// ResNet (MMSelfSup / mmcls `ResNet`, `ResNet_CIFAR`) under torchvision's parameter names:
// conv1, bn1, layer1.0.conv1, ..., layer4.2.downsample.1 (no fc), so exported backbone
// weights load into torchvision's resnet with `strict=False` on `fc.*`.
#include <cstdint>
#include <memory>
#include <ostream>
#include <string>
#include <vector>

#include <torch/arg.h>
#include <torch/nn/module.h>
#include <torch/nn/modules/batchnorm.h>
#include <torch/nn/modules/conv.h>
#include <torch/types.h>

#include <selfsup/config.h>
#include <selfsup/interfaces/modules.h>
#include <selfsup/schema.h>

#include "resnet_blocks.h"

namespace selfsup::plugins::backbones {

struct ResNetOptions {
  explicit ResNetOptions(int64_t depth) : depth_(depth) {}
  /// Reads and validates the schema's keys; errors name the JSON path.
  static ResNetOptions from_config(const Config& cfg);

  /// 18, 34 (BasicBlock) or 50, 101, 152 (Bottleneck).
  TORCH_ARG(int64_t, depth);
  TORCH_ARG(int64_t, in_channels) = 3;
  /// Output channels of the stem conv; <= 0 means `base_channels`.
  TORCH_ARG(int64_t, stem_channels) = 0;
  /// Width of stage 1; stage i is base * 2^(i-1) (x4 for Bottleneck).
  TORCH_ARG(int64_t, base_channels) = 64;
  TORCH_ARG(int64_t, num_stages) = 4;
  /// Per-stage strides / dilations; empty means the first `num_stages` of the defaults.
  TORCH_ARG(std::vector<int64_t>, strides) = {};
  TORCH_ARG(std::vector<int64_t>, dilations) = {};
  /// 0 = stem output (after ReLU, before max-pool), 1..num_stages = stage outputs.
  TORCH_ARG(std::vector<int64_t>, out_indices) = {4};
  /// 'imagenet' (7x7/2 conv + 3x3/2 max-pool) or 'cifar' (3x3/1 conv, no max-pool).
  TORCH_ARG(std::string, stem) = "imagenet";
  /// -1: nothing frozen; >= 0: the stem; n: also stages 1..n.
  TORCH_ARG(int64_t, frozen_stages) = -1;
  TORCH_ARG(bool, norm_eval) = false;
  TORCH_ARG(bool, zero_init_residual) = false;
  TORCH_ARG(NormCfg, norm_cfg) = {};
};

class ResNetImpl final : public selfsup::Backbone {
public:
  explicit ResNetImpl(const ResNetOptions& options);

  std::vector<torch::Tensor> forward(const torch::Tensor& x) override;
  [[nodiscard]] std::vector<int64_t> out_channels() const override { return out_channels_; }
  /// Module::train plus MMSelfSup's rules: frozen stages and (with norm_eval) every
  /// BatchNorm stay in eval mode.
  void train(bool on = true) override;
  void pretty_print(std::ostream& stream) const override;

  /// Builds the layers and initialises the weights (once, from the constructor).
  void reset();

  ResNetOptions options;

private:
  void freeze_stages();

  bool bottleneck_ = false;
  std::vector<int64_t> out_indices_; // sorted, unique
  std::vector<int64_t> out_channels_;
  torch::nn::Conv2d conv1_{nullptr};
  torch::nn::BatchNorm2d bn1_{nullptr};
  std::vector<ResLayer> layers_;
};

/// The schema of `ResNet` (`default_stem` "imagenet") or `ResNet_CIFAR` ("cifar").
selfsup::Schema resnet_schema(const std::string& default_stem);
std::shared_ptr<selfsup::Backbone> make_resnet(const Config& cfg);

} // namespace selfsup::plugins::backbones
