#pragma once
// Shared heads: ContrastiveHead, ClsHead, LatentPredictHead. Each builds its `loss` (and
// LatentPredictHead its `predictor` neck) through the Registry by type name, so the JSON
// path of the sub-config is kept in errors.
#include <cstdint>
#include <memory>
#include <ostream>
#include <vector>

#include <torch/arg.h>
#include <torch/nn/module.h>
#include <torch/nn/modules/linear.h>
#include <torch/types.h>

#include <selfsup/config.h>
#include <selfsup/interfaces/modules.h>
#include <selfsup/options.h>

namespace selfsup::plugins::common {

/// `{type: 'CrossEntropyLoss'}`, the default loss of ContrastiveHead and ClsHead.
Config cross_entropy_loss_config();

// ---- ContrastiveHead -------------------------------------------------------------------

struct ContrastiveHeadOptions {
  static OptionTable<ContrastiveHeadOptions> table();
  /// The loss, built by type name.
  TORCH_ARG(Config, loss) = cross_entropy_loss_config();
  TORCH_ARG(double, temperature) = 0.1;
};

/// `loss(cat(pos [N, 1], neg [N, K]) / temperature, zeros)`: the positive is class 0.
class ContrastiveHead final : public selfsup::Head {
public:
  ContrastiveHead(std::shared_ptr<selfsup::Loss> loss, double temperature);
  /// inputs = {pos [N, 1], neg [N, K]}; the target is ignored.
  torch::Tensor loss(const std::vector<torch::Tensor>& inputs,
                     const torch::Tensor& target) override;
  void pretty_print(std::ostream& stream) const override;
  [[nodiscard]] double temperature() const { return temperature_; }

private:
  std::shared_ptr<selfsup::Loss> loss_;
  double temperature_;
};

// ---- ClsHead ---------------------------------------------------------------------------

struct ClsHeadOptions {
  static OptionTable<ClsHeadOptions> table();
  /// The loss, built by type name.
  TORCH_ARG(Config, loss) = cross_entropy_loss_config();
  TORCH_ARG(bool, with_avg_pool) = false;
  TORCH_ARG(int64_t, in_channels) = 2048;
  TORCH_ARG(int64_t, num_classes) = 1000;
  TORCH_ARG(bool, vit_backbone) = false;
  /// MMEngine's init_cfg: null (Normal std 0.01 on fc_cls), or a dict / list of dicts of type
  /// 'Normal' (mean, std, bias) or 'Constant' (val, bias) with a `layer` (a name or list);
  /// those naming 'Linear' (or no layer) initialise fc_cls, the others (norm layers) match
  /// nothing here.
  TORCH_ARG(Json, init_cfg) = Json();
};

/// `[avgpool] -> fc_cls` (normal std 0.01, bias 0, or `init_cfg`); loss = loss(logits,
/// labels); predict returns softmax scores.
class ClsHead final : public selfsup::Head {
public:
  ClsHead(const ClsHeadOptions& options, std::shared_ptr<selfsup::Loss> loss);
  /// The class scores (logits) of the single input map / vector.
  torch::Tensor logits(const std::vector<torch::Tensor>& inputs);
  /// inputs = {features}; target = int labels [N].
  torch::Tensor loss(const std::vector<torch::Tensor>& inputs,
                     const torch::Tensor& target) override;
  /// {softmax(logits)}.
  std::vector<torch::Tensor> predict(const std::vector<torch::Tensor>& inputs) override;
  void pretty_print(std::ostream& stream) const override;

  ClsHeadOptions options;

private:
  torch::nn::Linear fc_cls_{nullptr};
  std::shared_ptr<selfsup::Loss> loss_;
};

// ---- LatentPredictHead -----------------------------------------------------------------

struct LatentPredictHeadOptions {
  static OptionTable<LatentPredictHeadOptions> table();
  /// The loss and the predictor neck, built by type name.
  TORCH_ARG(Config, loss);
  TORCH_ARG(Config, predictor);
};

/// BYOL / SimSiam: `loss(predictor({input})[0], target.detach())`.
class LatentPredictHead final : public selfsup::Head {
public:
  LatentPredictHead(std::shared_ptr<selfsup::Neck> predictor, std::shared_ptr<selfsup::Loss> loss);
  /// inputs = {input [N, C]}; target [N, C'] (gradients are not propagated into it).
  torch::Tensor loss(const std::vector<torch::Tensor>& inputs,
                     const torch::Tensor& target) override;
  void pretty_print(std::ostream& stream) const override;
  [[nodiscard]] std::shared_ptr<selfsup::Neck> predictor() const { return predictor_; }

private:
  std::shared_ptr<selfsup::Neck> predictor_;
  std::shared_ptr<selfsup::Loss> loss_;
};

std::shared_ptr<selfsup::Head> make_contrastive_head(const Config& cfg);
std::shared_ptr<selfsup::Head> make_cls_head(const Config& cfg);
std::shared_ptr<selfsup::Head> make_latent_predict_head(const Config& cfg);

} // namespace selfsup::plugins::common
