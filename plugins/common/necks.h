#pragma once
// Shared necks: NonLinearNeck (the SimCLR/BYOL/SimSiam projection MLP), LinearNeck,
// AvgPool2dNeck. Module names follow MMSelfSup (fc0, bn0, fc1, ...; fc) so weights map 1:1.
#include <cstdint>
#include <memory>
#include <optional>
#include <ostream>
#include <string>
#include <vector>

#include <torch/arg.h>
#include <torch/nn/module.h>
#include <torch/nn/modules/batchnorm.h>
#include <torch/nn/modules/linear.h>
#include <torch/types.h>

#include <selfsup/bricks/norm.h>
#include <selfsup/config.h>
#include <selfsup/interfaces/modules.h>
#include <selfsup/json.h>
#include <selfsup/options.h>

namespace selfsup::plugins::common {

using NormCfg = selfsup::bricks::NormCfg;

// ---- NonLinearNeck ---------------------------------------------------------------------

/// MMEngine's `init_cfg: {type: 'Kaiming', layer: ['Linear'], ...}` (KaimingInit) on a neck's
/// fc layers: kaiming_{normal,uniform}_(weight, a, mode, nonlinearity), bias = `bias`
/// (Barlow Twins' projector). Applied when the neck is built.
struct LinearKaimingInit {
  static OptionTable<LinearKaimingInit> table();
  std::string type = "Kaiming";
  std::vector<std::string> layer{"Linear"};
  double a = 0;
  std::string mode = "fan_out";
  std::string nonlinearity = "relu";
  double bias = 0;
  std::string distribution = "normal";
  /// Initialises `fc` as configured.
  void apply(torch::nn::Linear& fc) const;
};

struct NonLinearNeckOptions {
  NonLinearNeckOptions(int64_t in, int64_t hid, int64_t out)
      : in_channels_(in), hid_channels_(hid), out_channels_(out) {}
  /// The declaration of the options: schema, parsing and checks.
  static OptionTable<NonLinearNeckOptions> table();

  TORCH_ARG(int64_t, in_channels);
  TORCH_ARG(int64_t, hid_channels);
  TORCH_ARG(int64_t, out_channels);
  TORCH_ARG(int64_t, num_layers) = 2;
  /// Bias of the hidden fc layers.
  TORCH_ARG(bool, with_bias) = false;
  TORCH_ARG(bool, with_last_bn) = true;
  TORCH_ARG(bool, with_last_bn_affine) = true;
  TORCH_ARG(bool, with_last_bias) = false;
  TORCH_ARG(bool, with_avg_pool) = true;
  /// Take the last input tensor (a ViT's cls token) instead of requiring exactly one.
  TORCH_ARG(bool, vit_backbone) = false;
  /// MMSelfSup's default, SyncBN: BN on one process.
  TORCH_ARG(NormCfg, norm_cfg) = NormCfg{"SyncBN"};
  /// Kaiming init of the fc layers; absent: LibTorch's default Linear init, as PyTorch's.
  TORCH_ARG(std::optional<LinearKaimingInit>, init_cfg) = std::nullopt;

private:
  NonLinearNeckOptions() = default;
};

/// `[avgpool] -> fc0 -> bn0 -> (relu -> fc_i -> bn_i) for i = 1..num_layers-1`; the last fc
/// uses `with_last_bias` and its BN exists iff `with_last_bn` (affine per
/// `with_last_bn_affine`). Returns one [N, C] tensor (C = hid if num_layers == 1, else out).
class NonLinearNeck final : public selfsup::Neck {
public:
  explicit NonLinearNeck(const NonLinearNeckOptions& options);
  std::vector<torch::Tensor> forward(const std::vector<torch::Tensor>& x) override;
  void pretty_print(std::ostream& stream) const override;
  void reset();

  NonLinearNeckOptions options;

private:
  std::vector<torch::nn::Linear> fcs_;
  std::vector<bricks::BatchNorm1d> bns_; // null where a layer has no BN
};

// ---- LinearNeck ------------------------------------------------------------------------

/// MMEngine's `init_cfg: {type: 'TruncNormal', layer: 'Linear', std, ...}` (TruncNormalInit)
/// on LinearNeck's fc (MaskFeat): weight ~ N(mean, std) truncated to [a, b], bias = `bias`.
struct LinearTruncNormalInit {
  static OptionTable<LinearTruncNormalInit> table();
  std::string type = "TruncNormal";
  Json layer = "Linear"; // 'Linear' or ['Linear']
  double mean = 0.0, std = 1.0, a = -2.0, b = 2.0, bias = 0.0;
  void apply(torch::nn::Linear& fc) const;
};

struct LinearNeckOptions {
  LinearNeckOptions(int64_t in, int64_t out) : in_channels_(in), out_channels_(out) {}
  static OptionTable<LinearNeckOptions> table();

  TORCH_ARG(int64_t, in_channels);
  TORCH_ARG(int64_t, out_channels);
  TORCH_ARG(bool, with_avg_pool) = true;
  TORCH_ARG(bool, vit_backbone) = false;
  TORCH_ARG(std::optional<LinearTruncNormalInit>, init_cfg) = std::nullopt;

private:
  LinearNeckOptions() = default;
};

/// `[avgpool] -> fc` (with bias). Returns one [N, out_channels] tensor.
class LinearNeck final : public selfsup::Neck {
public:
  explicit LinearNeck(const LinearNeckOptions& options);
  std::vector<torch::Tensor> forward(const std::vector<torch::Tensor>& x) override;
  void pretty_print(std::ostream& stream) const override;
  void reset();

  LinearNeckOptions options;

private:
  torch::nn::Linear fc_{nullptr};
};

// ---- AvgPool2dNeck ---------------------------------------------------------------------

struct AvgPool2dNeckOptions {
  static OptionTable<AvgPool2dNeckOptions> table();
  TORCH_ARG(int64_t, output_size) = 1;
};

/// Adaptive average pooling of the single input map to output_size x output_size.
class AvgPool2dNeck final : public selfsup::Neck {
public:
  explicit AvgPool2dNeck(const AvgPool2dNeckOptions& options) : options(options) {}
  std::vector<torch::Tensor> forward(const std::vector<torch::Tensor>& x) override;
  void pretty_print(std::ostream& stream) const override;

  AvgPool2dNeckOptions options;
};

std::shared_ptr<selfsup::Neck> make_nonlinear_neck(const Config& cfg);
std::shared_ptr<selfsup::Neck> make_linear_neck(const Config& cfg);
std::shared_ptr<selfsup::Neck> make_avgpool2d_neck(const Config& cfg);

} // namespace selfsup::plugins::common
