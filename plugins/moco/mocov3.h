#pragma once
// MoCo v3 (Chen, Xie and He 2021) as MMSelfSup 1.0: the MoCoV3 algorithm and its head,
// MoCoV3Head. The ViT it is meant for, MoCoV3ViT, is a backbone (backbones plugin).
#include <cstdint>
#include <memory>
#include <ostream>
#include <vector>

#include <torch/arg.h>
#include <torch/nn/module.h>
#include <torch/types.h>

#include <selfsup/config.h>
#include <selfsup/interfaces/algorithm.h>
#include <selfsup/interfaces/modules.h>
#include <selfsup/options.h>
#include <selfsup/schema.h>

namespace selfsup::plugins::moco {

struct MoCoV3HeadOptions {
  static OptionTable<MoCoV3HeadOptions> table();
  /// The predictor, a neck built by type (NonLinearNeck in the recipes).
  TORCH_ARG(Config, predictor);
  /// The loss on the logits and labels (mmcls.CrossEntropyLoss with loss_weight 2T).
  TORCH_ARG(Config, loss);
  TORCH_ARG(double, temperature) = 1.0;
};

/// MMSelfSup's MoCoV3Head. `loss({base_out}, momentum_out)`: pred = normalize(predictor(
/// base_out)), target = normalize(momentum_out) gathered over the ranks (dist().all_gather,
/// no gradient), logits = pred target^T / temperature [N, N * world], labels
/// arange(N) + N * rank, then the loss module (its loss_weight gives the 2T scale).
class MoCoV3Head final : public selfsup::Head {
public:
  MoCoV3Head(std::shared_ptr<selfsup::Neck> predictor, std::shared_ptr<selfsup::Loss> loss,
             double temperature);
  torch::Tensor loss(const std::vector<torch::Tensor>& inputs,
                     const torch::Tensor& target) override;
  void pretty_print(std::ostream& stream) const override;

private:
  std::shared_ptr<selfsup::Neck> predictor_;
  std::shared_ptr<selfsup::Loss> loss_;
  double temperature_;
};

std::shared_ptr<selfsup::Head> make_mocov3_head(const Config& cfg);

/// MMSelfSup's MoCoV3: the base encoder (backbone + neck) and a momentum encoder
/// (`momentum_encoder.module.0` backbone, `.1` neck, `momentum_encoder.steps`, as MMEngine's
/// averaged model names them), a second instance from the same config, frozen, following the
/// base encoder with MMSelfSup's CosineEMA: at each loss, before the keys, it copies the base
/// encoder at the run's iteration 0 and otherwise averages with momentum
/// 1 - (1 - base_momentum) (cos(pi iter / max_iters) + 1) / 2, buffers copied. Outside a run
/// (no context) every update is the first one: a copy. The loss is symmetric:
/// head(q1, k2) + head(q2, k1).
class MoCoV3 final : public BaseModel {
public:
  explicit MoCoV3(const Config& cfg);
  static Schema schema();

  LossMap loss(const std::vector<torch::Tensor>& inputs, const DataSamples& samples) override;
  void pretty_print(std::ostream& stream) const override;

  /// The momentum encoder's backbone and neck (for tests and export).
  [[nodiscard]] const std::shared_ptr<Backbone>& momentum_backbone() const { return backbone_k_; }
  [[nodiscard]] const std::shared_ptr<Neck>& momentum_neck() const { return neck_k_; }
  /// The momentum the last update used (0 for a copy).
  [[nodiscard]] double last_momentum() const { return last_momentum_; }

private:
  std::shared_ptr<torch::nn::Module> query_view_;  // "0" backbone, "1" neck (not registered)
  std::shared_ptr<torch::nn::Module> ema_;         // registered as `momentum_encoder`
  std::shared_ptr<torch::nn::Module> key_encoder_; // its `module`
  std::shared_ptr<Backbone> backbone_k_;
  std::shared_ptr<Neck> neck_k_;
  torch::Tensor steps_;
  double base_momentum_;
  double last_momentum_ = 0.0;
};

} // namespace selfsup::plugins::moco
