#pragma once
// MMSelfSup's LARS as a LibTorch optimizer (torch::optim's SGD, Adam and AdamW are used as
// they are; core/src/optimizers.cpp registers all four under kind "optimizer").
#include <torch/optim/optimizer.h>
#include <torch/optim/serialize.h>
#include <torch/types.h>

#include <selfsup/core/export.h>

namespace selfsup::core {

/// LARS's per-group options, named as MMSelfSup's LARS param groups (`lars_exclude` comes
/// from paramwise_cfg.custom_keys).
struct SELFSUP_CORE_API LARSOptions : public torch::optim::OptimizerCloneableOptions<LARSOptions> {
  LARSOptions(double lr = 0.0); // NOLINT: LibTorch's load() builds options from a double
  TORCH_ARG(double, lr);
  TORCH_ARG(double, momentum) = 0;
  TORCH_ARG(double, dampening) = 0;
  TORCH_ARG(double, weight_decay) = 0;
  TORCH_ARG(bool, nesterov) = false;
  /// Trust coefficient.
  TORCH_ARG(double, eta) = 0.001;
  /// Added to the trust ratio's denominator.
  TORCH_ARG(double, eps) = 1e-8;
  /// The group skips the trust ratio (local lr 1), as MMSelfSup's norms and biases.
  TORCH_ARG(bool, lars_exclude) = false;

public:
  void serialize(torch::serialize::InputArchive& archive) override;
  void serialize(torch::serialize::OutputArchive& archive) const override;
  ~LARSOptions() override;
  [[nodiscard]] double get_lr() const override;
  void set_lr(double lr) override;
};

struct SELFSUP_CORE_API LARSParamState
    : public torch::optim::OptimizerCloneableParamState<LARSParamState> {
  TORCH_ARG(torch::Tensor, momentum_buffer);

public:
  void serialize(torch::serialize::InputArchive& archive) override;
  void serialize(torch::serialize::OutputArchive& archive) const override;
  ~LARSParamState() override;
};

/// Layer-wise adaptive rate scaling, as MMSelfSup 1.x's LARS. Per parameter with a gradient:
/// local = eta*|w| / (|g| + wd*|w| + eps) when the group is not lars_exclude and |w|, |g| > 0,
/// else 1; d = (g + wd*w) * local * lr; with momentum, buf = m*buf + (1 - dampening)*d (the
/// first step buf = d) and d = buf (Nesterov: d + m*buf); w -= d.
class SELFSUP_CORE_API LARS : public torch::optim::Optimizer {
public:
  LARS(std::vector<torch::optim::OptimizerParamGroup> param_groups, LARSOptions defaults);
  ~LARS() override;

  torch::Tensor step(LossClosure closure = nullptr) override;
  void save(torch::serialize::OutputArchive& archive) const override;
  void load(torch::serialize::InputArchive& archive) override;

private:
  template <typename Self, typename Archive> static void serialize(Self& self, Archive& archive) {
    _TORCH_OPTIM_SERIALIZE_WITH_TEMPLATE_ARG(LARS);
  }
};

} // namespace selfsup::core
