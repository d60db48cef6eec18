#pragma once
// The model-side interfaces: Backbone, Neck, Head, Loss, Memory, TargetGenerator.
// Each is a torch::nn::Module with a small virtual surface; each destructor is defined in
// libselfsup_sdk.so so vtables and typeinfo are unique across plugins.
#include <cstdint>
#include <vector>

#include <torch/nn/module.h>
#include <torch/types.h>

#include <selfsup/export.h>

namespace selfsup {

/// Image encoder; returns one map per entry of its `out_indices`, like MMSelfSup.
class SELFSUP_SDK_API Backbone : public torch::nn::Module {
public:
  static constexpr const char* kKind = "backbone";
  ~Backbone() override;
  virtual std::vector<torch::Tensor> forward(const torch::Tensor& x) = 0;
  /// Channels of each output, in output order.
  [[nodiscard]] virtual std::vector<int64_t> out_channels() const = 0;
};

/// Maps backbone outputs to embeddings (projection MLPs, pooling, decoders).
class SELFSUP_SDK_API Neck : public torch::nn::Module {
public:
  static constexpr const char* kKind = "neck";
  ~Neck() override;
  virtual std::vector<torch::Tensor> forward(const std::vector<torch::Tensor>& x) = 0;
};

/// A loss criterion: pred and target in, a scalar out.
class SELFSUP_SDK_API Loss : public torch::nn::Module {
public:
  static constexpr const char* kKind = "loss";
  ~Loss() override;
  virtual torch::Tensor forward(const torch::Tensor& pred, const torch::Tensor& target) = 0;
};

/// Turns features into a loss (and optionally predictions). What `inputs` holds is the
/// head's own contract: ContrastiveHead takes {pos, neg}; LatentPredictHead {input} with
/// the target; ClsHead the feature maps with labels as target.
class SELFSUP_SDK_API Head : public torch::nn::Module {
public:
  static constexpr const char* kKind = "head";
  ~Head() override;
  virtual torch::Tensor loss(const std::vector<torch::Tensor>& inputs,
                             const torch::Tensor& target) = 0;
  /// Predictions (e.g. class scores); the default throws ValueError.
  virtual std::vector<torch::Tensor> predict(const std::vector<torch::Tensor>& inputs);
};

/// State kept across iterations (memory banks, queues); its tensors are buffers, so they
/// are saved in checkpoints.
class SELFSUP_SDK_API Memory : public torch::nn::Module {
public:
  static constexpr const char* kKind = "memory";
  ~Memory() override;
  /// Writes `feature` rows at dataset indices `idx`.
  virtual void update(const torch::Tensor& idx, const torch::Tensor& feature) = 0;
};

/// Produces training targets from images (HOG, a frozen tokenizer); runs without autograd.
class SELFSUP_SDK_API TargetGenerator : public torch::nn::Module {
public:
  static constexpr const char* kKind = "target_generator";
  ~TargetGenerator() override;
  virtual torch::Tensor forward(const torch::Tensor& x) = 0;
};

} // namespace selfsup
