#pragma once
#include <memory>
#include <ostream>

#include <torch/nn/module.h>

#include <selfsup/interfaces/algorithm.h>
#include <selfsup/interfaces/training.h>
#include <selfsup/schema.h>

namespace selfsup::plugins::densecl {

/// DenseCL (Wang et al. 2021) as MMSelfSup computes it: MoCo v2's global contrast (query
/// against its momentum-encoded key and the `queue` of past keys) plus a dense contrast: each
/// position i of the query's dense grid is paired with the key position j*(i) whose backbone
/// feature is most similar (cosine argmax between the two views' backbone maps), negatives
/// from `queue2` of past pooled dense keys. loss_single = (1 - loss_lambda) * CE_global,
/// loss_dense = loss_lambda * CE_dense. The neck must return {global, dense grid, pooled
/// dense} (DenseCLNeck). The key encoder is `encoder_k.module` ("0" backbone, "1" neck), as
/// MMEngine's averaged model, updated at the run's iteration (iteration 0, a copy, outside a
/// run).
class DenseCL final : public BaseModel {
public:
  explicit DenseCL(const Config& cfg);
  static Schema schema();

  LossMap loss(const std::vector<torch::Tensor>& inputs, const DataSamples& samples) override;
  /// {q_grid}: the backbone map of view 0, flattened to [N, C, H*W] and L2-normalised over
  /// channels (upstream's predict).
  std::vector<torch::Tensor> predict(const std::vector<torch::Tensor>& inputs,
                                     const DataSamples& samples) override;
  void pretty_print(std::ostream& stream) const override;

  /// The weight of the dense loss; DenseCLHook sets it to 0 during its warm-up.
  [[nodiscard]] double loss_lambda() const { return loss_lambda_; }
  void set_loss_lambda(double value) { loss_lambda_ = value; }

private:
  int64_t queue_len_, feat_dim_;
  double momentum_, loss_lambda_;
  std::shared_ptr<Backbone> backbone_k_;
  std::shared_ptr<Neck> neck_k_;
  std::shared_ptr<torch::nn::Module> query_view_, key_encoder_, encoder_k_;
  torch::Tensor queue_, queue_ptr_, queue2_, queue2_ptr_;
};

} // namespace selfsup::plugins::densecl
