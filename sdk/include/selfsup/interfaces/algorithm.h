#pragma once
// Algorithm: MMSelfSup's BaseModel. `forward(inputs, samples, mode)` with modes tensor /
// loss / predict; `inputs` is one float tensor [B,C,H,W] per view, already normalised.
#include <map>
#include <memory>
#include <string>
#include <vector>

#include <torch/nn/module.h>
#include <torch/types.h>

#include <selfsup/config.h>
#include <selfsup/errors.h>
#include <selfsup/export.h>
#include <selfsup/interfaces/modules.h>
#include <selfsup/schema.h>

namespace selfsup {

/// Per-batch data besides the images (MMSelfSup's SelfSupDataSample, batched): what the
/// pipeline's PackSelfSupInputs packed, each tensor stacked along a new dim 0. Core's
/// `to_data_samples(batch, device)` builds it from a loader batch.
struct DataSamples {
  torch::Tensor gt_label;   // [B] int64, -1 where unknown
  torch::Tensor sample_idx; // [B] int64 dataset indices
  /// `algorithm_keys` by name ("mask", "pred_label", ...), each [B, ...].
  std::map<std::string, torch::Tensor> data;
  /// `pseudo_label_keys` by name ("rot_label", "patch_label", ...), each [B, ...].
  std::map<std::string, torch::Tensor> pseudo_label;
  /// `meta_keys` by name ("img_path", ...), B strings each.
  std::map<std::string, std::vector<std::string>> meta;

  /// data[key]; throws ValueError naming the key, the keys there are and where it comes from.
  [[nodiscard]] const torch::Tensor& data_at(const std::string& key) const {
    return lookup(data, key, "data", "algorithm_keys");
  }
  /// pseudo_label[key]; throws ValueError like data_at.
  [[nodiscard]] const torch::Tensor& pseudo_label_at(const std::string& key) const {
    return lookup(pseudo_label, key, "pseudo_label", "pseudo_label_keys");
  }
  /// meta[key]; throws ValueError like data_at.
  [[nodiscard]] const std::vector<std::string>& meta_at(const std::string& key) const {
    return lookup(meta, key, "meta", "meta_keys");
  }

private:
  template <class V>
  static const V& lookup(const std::map<std::string, V>& map, const std::string& key,
                         const char* field, const char* pack_key) {
    const auto it = map.find(key);
    if (it != map.end()) return it->second;
    std::string have;
    for (const auto& [k, v] : map) have += (have.empty() ? "'" : ", '") + k + "'";
    throw ValueError(std::string("data samples: no ") + field + " '" + key + "' in the batch (" +
                     field + " has " + (have.empty() ? std::string("nothing") : have) +
                     "); list it in the pipeline's PackSelfSupInputs." + pack_key);
  }
};

/// Named losses; the runner sums every entry whose key contains "loss" and logs the rest.
using LossMap = std::map<std::string, torch::Tensor>;

enum class ForwardMode { Tensor, Loss, Predict };

struct ForwardOutput {
  std::vector<torch::Tensor> tensors; // mode tensor / predict
  LossMap losses;                     // mode loss
};

/// MMSelfSup's SelfSupDataPreprocessor: uint8 views -> float, optional BGR->RGB, (x-mean)/std.
class SELFSUP_SDK_API DataPreprocessor {
public:
  DataPreprocessor(std::vector<double> mean, std::vector<double> std, bool bgr_to_rgb);
  /// Reads `type` (SelfSupDataPreprocessor), `mean`, `std`, `bgr_to_rgb` from a config node.
  static DataPreprocessor from_config(const Config& cfg);
  static Schema schema();
  [[nodiscard]] torch::Tensor operator()(const torch::Tensor& view) const;
  [[nodiscard]] std::vector<torch::Tensor>
  operator()(const std::vector<torch::Tensor>& views) const;

private:
  std::vector<double> mean_, std_;
  bool bgr_to_rgb_;
  torch::Tensor mean_t_, inv_std_t_; // [1, C, 1, 1] float, built once
};

class SELFSUP_SDK_API Algorithm : public torch::nn::Module {
public:
  static constexpr const char* kKind = "algorithm";
  ~Algorithm() override;

  /// Features of the images (usually the backbone's outputs for view 0).
  virtual std::vector<torch::Tensor> extract_feat(const std::vector<torch::Tensor>& inputs) = 0;
  /// The named losses of a batch.
  virtual LossMap loss(const std::vector<torch::Tensor>& inputs, const DataSamples& samples) = 0;
  /// Predictions; the default throws ValueError (most algorithms have none).
  virtual std::vector<torch::Tensor> predict(const std::vector<torch::Tensor>& inputs,
                                             const DataSamples& samples);
  /// Dispatches on the mode, like MMSelfSup's BaseModel.forward.
  ForwardOutput forward(const std::vector<torch::Tensor>& inputs, const DataSamples& samples,
                        ForwardMode mode);

  /// uint8 views from the loader -> normalised float inputs.
  virtual std::vector<torch::Tensor> preprocess(const std::vector<torch::Tensor>& views) const = 0;
  /// The image encoder (used for kNN evaluation and export).
  [[nodiscard]] virtual std::shared_ptr<Backbone> backbone() const = 0;
};

/// The shared part of most algorithms: builds `backbone` (required), `neck`, `head` and
/// `data_preprocessor` from the config, as MMSelfSup's BaseModel does.
class SELFSUP_SDK_API BaseModel : public Algorithm {
public:
  /// The keys every BaseModel accepts; algorithms `extend` it with their own.
  static Schema base_schema(std::string doc);

  std::vector<torch::Tensor> extract_feat(const std::vector<torch::Tensor>& inputs) override;
  std::vector<torch::Tensor> preprocess(const std::vector<torch::Tensor>& views) const override;
  [[nodiscard]] std::shared_ptr<Backbone> backbone() const override { return backbone_; }

protected:
  explicit BaseModel(const Config& cfg);
  ~BaseModel() override;

  std::shared_ptr<Backbone> backbone_;
  std::shared_ptr<Neck> neck_; // may be null
  std::shared_ptr<Head> head_; // may be null
  DataPreprocessor data_preprocessor_;
};

} // namespace selfsup
