#pragma once
// The pretext-task family: RelativeLoc (relative patch location, Doersch et al. 2015) and
// RotationPred (rotation prediction, Gidaris et al. 2018) as MMSelfSup 1.0 builds them, with
// RelativeLocNeck and their data preprocessors. Their transforms are in pretext_transforms.h.
#include <cstdint>
#include <memory>
#include <ostream>
#include <string>
#include <vector>

#include <torch/arg.h>
#include <torch/nn/modules/batchnorm.h>
#include <torch/nn/modules/dropout.h>
#include <torch/nn/modules/linear.h>
#include <torch/types.h>

#include <selfsup/bricks/norm.h>
#include <selfsup/config.h>
#include <selfsup/interfaces/algorithm.h>
#include <selfsup/interfaces/modules.h>
#include <selfsup/options.h>
#include <selfsup/schema.h>

namespace selfsup::plugins::pretext {

// ---- data preprocessors ----------------------------------------------------------------

/// MMSelfSup's RelativeLocDataPreprocessor: normalises the 9 views (centre patch first, then
/// the 8 neighbours) like SelfSupDataPreprocessor, then returns {neighbours [8B, C, h, w]
/// (sample-major), the centre repeated 8 times [8B, C, h, w]}. A single view (an image to
/// evaluate: kNN, linear probe) is only normalised.
class RelativeLocDataPreprocessor final : public DataPreprocessor {
public:
  explicit RelativeLocDataPreprocessor(const SelfSupDataPreprocessorOptions& options);
  std::vector<torch::Tensor> forward(const std::vector<torch::Tensor>& views,
                                     DataSamples& samples) const override;

private:
  SelfSupDataPreprocessor base_;
};

/// MMSelfSup's RotationPredDataPreprocessor: normalises the 4 rotated views, then returns
/// {[4B, C, H, W]} with the 4 rotations of each sample consecutive.
class RotationPredDataPreprocessor final : public DataPreprocessor {
public:
  explicit RotationPredDataPreprocessor(const SelfSupDataPreprocessorOptions& options);
  std::vector<torch::Tensor> forward(const std::vector<torch::Tensor>& views,
                                     DataSamples& samples) const override;

private:
  SelfSupDataPreprocessor base_;
};

// ---- RelativeLocNeck -------------------------------------------------------------------

struct RelativeLocNeckOptions {
  static OptionTable<RelativeLocNeckOptions> table();
  TORCH_ARG(int64_t, in_channels) = 0;
  TORCH_ARG(int64_t, out_channels) = 0;
  TORCH_ARG(bool, with_avg_pool) = true;
  /// {type: 'BN1d' | 'BN' | 'SyncBN'}; the momentum is 0.003, as upstream sets it. SyncBN:
  /// statistics of the global batch in a data-parallel run.
  TORCH_ARG(Json, norm_cfg) = Json::object({{"type", Json("BN1d")}});
};

/// `[avgpool] -> fc (2 * in_channels -> out_channels, normal std 0.01) -> bn (momentum 0.003)
/// -> relu -> dropout(0.5)` on the channel-concatenated (neighbour, centre) features.
class RelativeLocNeck final : public selfsup::Neck {
public:
  explicit RelativeLocNeck(const RelativeLocNeckOptions& options);
  std::vector<torch::Tensor> forward(const std::vector<torch::Tensor>& x) override;
  void pretty_print(std::ostream& stream) const override;

  RelativeLocNeckOptions options;

private:
  torch::nn::Linear fc_{nullptr};
  bricks::BatchNorm1d bn_{nullptr}; // synchronised for norm_cfg SyncBN
  torch::nn::Dropout dropout_{nullptr};
};

// ---- algorithms ------------------------------------------------------------------------

/// RelativeLoc: the backbone on the neighbours and on the repeated centre, their first
/// outputs concatenated along channels, the neck, then the head (ClsHead, 8 classes) against
/// `patch_label` flattened to [8B]. Besides `loss` it reports `accuracy`, the pretext top-1
/// of the batch (logged, not summed). predict: the head's scores reshaped to [B, 8, 8].
class RelativeLoc final : public BaseModel {
public:
  explicit RelativeLoc(const Config& cfg);
  static Schema schema();
  LossMap loss(const std::vector<torch::Tensor>& inputs, const DataSamples& samples) override;
  std::vector<torch::Tensor> predict(const std::vector<torch::Tensor>& inputs,
                                     const DataSamples& samples) override;
  void pretty_print(std::ostream& stream) const override;

private:
  std::vector<torch::Tensor> features(const std::vector<torch::Tensor>& inputs);
};

/// RotationPred: the backbone on the [4B] rotated images, the head (ClsHead, 4 classes,
/// with_avg_pool) against `rot_label` flattened to [4B]; also reports `accuracy` (pretext
/// top-1 of the batch). predict: the head's scores reshaped to [B, 4, 4].
class RotationPred final : public BaseModel {
public:
  explicit RotationPred(const Config& cfg);
  static Schema schema();
  LossMap loss(const std::vector<torch::Tensor>& inputs, const DataSamples& samples) override;
  std::vector<torch::Tensor> predict(const std::vector<torch::Tensor>& inputs,
                                     const DataSamples& samples) override;
  void pretty_print(std::ostream& stream) const override;
};

std::shared_ptr<selfsup::Neck> make_relative_loc_neck(const Config& cfg);
std::shared_ptr<DataPreprocessor> make_relative_loc_data_preprocessor(const Config& cfg);
std::shared_ptr<DataPreprocessor> make_rotation_pred_data_preprocessor(const Config& cfg);

} // namespace selfsup::plugins::pretext
