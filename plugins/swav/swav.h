#pragma once
// SwAV (Caron et al. 2020) as MMSelfSup 1.0 builds it: SwAVNeck, SwAVHead, SwAVLoss (with
// the Sinkhorn-Knopp assignment) and the SwAV algorithm; SwAVHook (swav_hook.h) keeps the
// feature queue and freezes the prototypes for the first iterations.
#include <cstdint>
#include <memory>
#include <ostream>
#include <vector>

#include <torch/arg.h>
#include <torch/nn/modules/container/sequential.h>
#include <torch/nn/modules/linear.h>
#include <torch/types.h>

#include <selfsup/bricks/norm.h>
#include <selfsup/config.h>
#include <selfsup/interfaces/algorithm.h>
#include <selfsup/interfaces/modules.h>
#include <selfsup/options.h>
#include <selfsup/schema.h>

#include "sinkhorn.h"

namespace selfsup::plugins::swav {

// ---- SwAVNeck --------------------------------------------------------------------------

struct SwAVNeckOptions {
  static OptionTable<SwAVNeckOptions> table();
  TORCH_ARG(int64_t, in_channels) = 0;
  TORCH_ARG(int64_t, hid_channels) = 0;
  TORCH_ARG(int64_t, out_channels) = 0;
  TORCH_ARG(bool, with_avg_pool) = true;
  TORCH_ARG(bool, with_l2norm) = true;
  TORCH_ARG(selfsup::bricks::NormCfg, norm_cfg) = selfsup::bricks::NormCfg{"SyncBN"};
};

/// Pools each input map (one per run of equal-resolution crops, crops stacked along the batch),
/// concatenates them along the batch, then `projection_neck` = Linear-BN-ReLU-Linear (a single
/// Linear when hid_channels is 0, none when out_channels is 0) and L2-normalises the rows.
class SwAVNeck final : public selfsup::Neck {
public:
  explicit SwAVNeck(const SwAVNeckOptions& options);
  std::vector<torch::Tensor> forward(const std::vector<torch::Tensor>& x) override;
  void pretty_print(std::ostream& stream) const override;

  SwAVNeckOptions options;

private:
  torch::nn::Sequential projection_{nullptr};
  torch::nn::Linear single_{nullptr};
};

// ---- SwAVLoss --------------------------------------------------------------------------

struct SwAVLossOptions {
  static OptionTable<SwAVLossOptions> table();
  TORCH_ARG(int64_t, feat_dim) = 0;
  TORCH_ARG(int64_t, sinkhorn_iterations) = 3;
  TORCH_ARG(double, epsilon) = 0.05;
  TORCH_ARG(double, temperature) = 0.1;
  TORCH_ARG(std::vector<int64_t>, crops_for_assign) = std::vector<int64_t>{0, 1};
  TORCH_ARG(std::vector<int64_t>, num_crops) = std::vector<int64_t>{2};
  TORCH_ARG(Json, num_prototypes) = Json(3000);
};

/// MMSelfSup's SwAVLoss. Holds the `prototypes` (Linear feat_dim -> K, no bias), which it
/// re-normalises (rows, in place, no gradient) at each call. `forward(z, unused)` takes the
/// L2-normalised embeddings of all crops [sum(num_crops) * B, feat_dim], crop-major. For each
/// assigned crop c: q = sinkhorn(scores of c, the queue's scores prepended when the queue is
/// in use)[-B:]; the crop's loss is the mean over the other crops v of
/// -mean_i sum_k q_ik log_softmax(s_v / temperature)_ik; the result is the mean over c.
class SwAVLoss final : public selfsup::Loss {
public:
  explicit SwAVLoss(const SwAVLossOptions& options);
  torch::Tensor forward(const torch::Tensor& pred, const torch::Tensor& target) override;
  void pretty_print(std::ostream& stream) const override;

  [[nodiscard]] torch::nn::Linear& prototypes() { return prototypes_; }
  /// The feature queue [len(crops_for_assign), length, feat_dim] (SwAVHook's); undefined: none.
  torch::Tensor queue;
  /// Whether the queue's scores are used (set once its last row is filled; reset each epoch).
  bool use_queue = false;

  SwAVLossOptions options;

private:
  torch::nn::Linear prototypes_{nullptr};
};

// ---- SwAVHead --------------------------------------------------------------------------

struct SwAVHeadOptions {
  static OptionTable<SwAVHeadOptions> table();
  TORCH_ARG(Config, loss);
};

/// MMSelfSup's SwAVHead: loss(embeddings). inputs = {z}; the target is ignored.
class SwAVHead final : public selfsup::Head {
public:
  explicit SwAVHead(std::shared_ptr<selfsup::Loss> loss);
  torch::Tensor loss(const std::vector<torch::Tensor>& inputs,
                     const torch::Tensor& target) override;
  void pretty_print(std::ostream& stream) const override;
  /// The SwAVLoss, or null when the head's loss is another type.
  [[nodiscard]] SwAVLoss* swav_loss() const { return dynamic_cast<SwAVLoss*>(loss_.get()); }

private:
  std::shared_ptr<selfsup::Loss> loss_;
};

// ---- SwAV ------------------------------------------------------------------------------

/// SwAV: one backbone call per run of consecutive crops of equal size (2 x 224 then 6 x 96 in
/// the recipe), the first output of each through the neck (pooled, concatenated, projected,
/// normalised), then the head's swapped-prediction loss.
class SwAV final : public BaseModel {
public:
  explicit SwAV(const Config& cfg);
  static Schema schema();
  LossMap loss(const std::vector<torch::Tensor>& inputs, const DataSamples& samples) override;
  void pretty_print(std::ostream& stream) const override;
  /// The head's SwAVLoss (the hook's queue lives there); throws ValueError if there is none.
  [[nodiscard]] SwAVLoss& swav_loss() const;
  /// The embeddings of all crops (the neck's output), crop-major.
  torch::Tensor embed(const std::vector<torch::Tensor>& inputs);
};

std::shared_ptr<selfsup::Neck> make_swav_neck(const Config& cfg);
std::shared_ptr<selfsup::Loss> make_swav_loss(const Config& cfg);
std::shared_ptr<selfsup::Head> make_swav_head(const Config& cfg);

} // namespace selfsup::plugins::swav
