#pragma once
#include <cstdint>
#include <memory>
#include <ostream>
#include <vector>

#include <torch/nn/module.h>

#include <selfsup/interfaces/algorithm.h>
#include <selfsup/schema.h>

namespace selfsup::plugins::byol {

/// The target network's parts, under upstream's names: MMSelfSup wraps
/// `nn.Sequential(backbone, neck)` in a CosineEMA, so its weights are `target_net.module.0.*`
/// (backbone) and `target_net.module.1.*` (neck).
class TargetNetwork final : public torch::nn::Module {
public:
  TargetNetwork(std::shared_ptr<Backbone> backbone, std::shared_ptr<Neck> neck);
  /// neck(backbone(x))[0].
  torch::Tensor forward(const torch::Tensor& x);
  /// The `module` child (a Sequential-shaped holder of `0` and `1`), whose parameter names
  /// match the online pair {backbone, neck} once renamed.
  [[nodiscard]] torch::nn::Module& module() { return *module_; }

private:
  std::shared_ptr<torch::nn::Module> module_;
  std::shared_ptr<Backbone> backbone_;
  std::shared_ptr<Neck> neck_;
};

/// BYOL (Grill et al. 2020) as MMSelfSup 1.0 computes it: an online backbone + projector
/// (neck) + predictor (LatentPredictHead), a target backbone + projector that follows the
/// online one by CosineEMA (momentum rising from base_momentum to 1 with the cosine of
/// iteration / max iterations, buffers copied, the first update a copy), and the symmetric
/// loss 2 * (head(online_1, target_2) + head(online_2, target_1)). No gradient reaches the
/// target network. The EMA step is the run's iteration (RunnerContext::iter()); without a run
/// (unit tests) it is 0, i.e. the target is a copy of the online network.
class BYOL final : public BaseModel {
public:
  explicit BYOL(const Config& cfg);
  static Schema schema();

  LossMap loss(const std::vector<torch::Tensor>& inputs, const DataSamples& samples) override;
  void pretty_print(std::ostream& stream) const override;

  /// One CosineEMA update of the target from the online backbone and neck at `step` of
  /// `max_iters` (step 0 copies), as loss() does before computing the targets.
  void update_target(int64_t step, int64_t max_iters);
  [[nodiscard]] double base_momentum() const { return base_momentum_; }
  [[nodiscard]] TargetNetwork& target_net() { return *target_net_; }

private:
  double base_momentum_;
  std::shared_ptr<TargetNetwork> target_net_;
};

} // namespace selfsup::plugins::byol
