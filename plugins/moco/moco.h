#pragma once
#include <cstdint>
#include <memory>
#include <ostream>
#include <utility>
#include <vector>

#include <torch/nn/module.h>
#include <torch/types.h>

#include <selfsup/interfaces/algorithm.h>
#include <selfsup/schema.h>

namespace selfsup::plugins::moco {

/// MoCo v1/v2 (He et al. 2020; Chen et al. 2020) as MMSelfSup 1.0 computes it. The query
/// encoder is backbone + neck; the key encoder (`encoder_k.module.0` backbone,
/// `encoder_k.module.1` neck, as MMEngine's averaged model names them) is a second instance
/// built from the same config, frozen, and follows the query encoder by EMA with `momentum`,
/// updated at each loss before the keys are computed (at the run's iteration 0 it is a copy;
/// outside a run, with no context, every update is that first one: a copy). Keys are
/// computed without gradient under shuffle-BN, L2-normalised; the logits [q.k, q.queue] go
/// through the head (ContrastiveHead) with label 0; then the keys of all ranks are enqueued.
/// The queue (`queue` [feat_dim, queue_len], `queue_ptr` [1]) is a buffer, so checkpoints
/// carry it.
class MoCo final : public BaseModel {
public:
  explicit MoCo(const Config& cfg);
  static Schema schema();

  LossMap loss(const std::vector<torch::Tensor>& inputs, const DataSamples& samples) override;
  void pretty_print(std::ostream& stream) const override;

  /// The key encoder's backbone and neck (for tests and export).
  [[nodiscard]] const std::shared_ptr<Backbone>& key_backbone() const { return backbone_k_; }
  [[nodiscard]] const std::shared_ptr<Neck>& key_neck() const { return neck_k_; }
  [[nodiscard]] const torch::Tensor& queue() const { return queue_; }
  [[nodiscard]] const torch::Tensor& queue_ptr() const { return queue_ptr_; }

private:
  /// The query encoder as one module tree with the key encoder's names (for the EMA).
  std::shared_ptr<torch::nn::Module> query_view_;
  std::shared_ptr<torch::nn::Module> encoder_k_;   // registered as `encoder_k`
  std::shared_ptr<torch::nn::Module> key_encoder_; // its `module`: "0" backbone, "1" neck
  std::shared_ptr<Backbone> backbone_k_;
  std::shared_ptr<Neck> neck_k_;
  torch::Tensor queue_, queue_ptr_;
  int64_t queue_len_, feat_dim_;
  double momentum_;
};

} // namespace selfsup::plugins::moco
