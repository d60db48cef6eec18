#pragma once
// ResNet (MMSelfSup / mmcls `ResNet`, `ResNet_CIFAR`) under torchvision's parameter names:
// conv1, bn1, layer1.0.conv1, ..., layer4.2.downsample.1 (no fc), so exported backbone
// weights load into torchvision's resnet with `strict=False` on `fc.*`.
#include <cstdint>
#include <memory>
#include <optional>
#include <ostream>
#include <string>
#include <vector>

#include <torch/arg.h>
#include <torch/nn/module.h>
#include <torch/nn/modules/batchnorm.h>
#include <torch/nn/modules/conv.h>
#include <torch/types.h>

#include <selfsup/bricks/norm.h>
#include <selfsup/config.h>
#include <selfsup/interfaces/modules.h>
#include <selfsup/options.h>

#include "resnet_blocks.h"

namespace selfsup::plugins::backbones {

struct ResNetOptions {
  explicit ResNetOptions(int64_t depth) : depth_(depth) {}
  /// The declaration of the options of `ResNet` (`stem` "imagenet") or `ResNet_CIFAR`
  /// (`stem` "cifar") under `scope`'s semantics: "mmselfsup" (the bare names) or "mmcls"
  /// (`mmcls.ResNet`: out_indices 0..num_stages-1 by stage, default [3], and
  /// zero_init_residual true, as mmcls 1.0.0rc6). Schema, parsing and checks; errors name the
  /// JSON path.
  static OptionTable<ResNetOptions> table(const std::string& default_stem = "imagenet",
                                          const std::string& scope = "mmselfsup");

  /// 18, 34 (BasicBlock) or 50, 101, 152 (Bottleneck).
  TORCH_ARG(int64_t, depth);
  TORCH_ARG(int64_t, in_channels) = 3;
  /// Output channels of the stem conv (64, as mmselfsup and mmcls, whatever base_channels).
  TORCH_ARG(int64_t, stem_channels) = 64;
  /// Width of stage 1; stage i is base * 2^(i-1) (x4 for Bottleneck).
  TORCH_ARG(int64_t, base_channels) = 64;
  TORCH_ARG(int64_t, num_stages) = 4;
  /// Per-stage strides / dilations; unset means the first `num_stages` of kStrides /
  /// kDilations.
  TORCH_ARG(std::optional<std::vector<int64_t>>, strides) = std::nullopt;
  TORCH_ARG(std::optional<std::vector<int64_t>>, dilations) = std::nullopt;
  /// Scope "mmselfsup": 0 = stem output (after ReLU, before max-pool), 1..num_stages = stage
  /// outputs. Scope "mmcls": 0..num_stages-1 = stage outputs.
  TORCH_ARG(std::vector<int64_t>, out_indices) = {4};
  /// 'imagenet' (7x7/2 conv + 3x3/2 max-pool) or 'cifar' (3x3/1 conv, no max-pool).
  TORCH_ARG(std::string, stem) = "imagenet";
  /// 'pytorch' only: the stride sits on the 3x3 conv of a Bottleneck.
  TORCH_ARG(std::string, style) = "pytorch";
  /// -1: nothing frozen; >= 0: the stem; n: also stages 1..n.
  TORCH_ARG(int64_t, frozen_stages) = -1;
  TORCH_ARG(bool, norm_eval) = false;
  TORCH_ARG(bool, zero_init_residual) = false;
  TORCH_ARG(NormCfg, norm_cfg) = {};
  /// Whose semantics apply (not a config key: the registered name chooses it): "mmselfsup"
  /// or "mmcls" (see table()).
  TORCH_ARG(std::string, scope) = "mmselfsup";

public:
  /// The per-stage defaults (MMSelfSup's), of which the first `num_stages` apply.
  static constexpr int64_t kStrides[4] = {1, 2, 2, 2};
  static constexpr int64_t kDilations[4] = {1, 1, 1, 1};

private:
  ResNetOptions() = default;
};

class ResNet : public selfsup::Backbone {
public:
  explicit ResNet(const ResNetOptions& options);

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
  std::vector<int64_t> out_indices_; // sorted, unique; 0 = stem, i = stage i (any scope)
  std::vector<int64_t> out_channels_;
  torch::nn::Conv2d conv1_{nullptr};
  bricks::BatchNorm2d bn1_{nullptr};
  std::vector<ResLayer> layers_;
};

/// A ResNet (`ResNet`) or one with the CIFAR stem by default (`ResNet_CIFAR`), with
/// MMSelfSup's semantics, and their mmcls scope variants (`mmcls.ResNet`,
/// `mmcls.ResNet_CIFAR`).
std::shared_ptr<selfsup::Backbone> make_resnet(const Config& cfg);
std::shared_ptr<selfsup::Backbone> make_resnet_cifar(const Config& cfg);
std::shared_ptr<selfsup::Backbone> make_mmcls_resnet(const Config& cfg);
std::shared_ptr<selfsup::Backbone> make_mmcls_resnet_cifar(const Config& cfg);

} // namespace selfsup::plugins::backbones
