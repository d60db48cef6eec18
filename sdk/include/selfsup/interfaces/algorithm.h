#pragma once
// Algorithm: MMSelfSup's BaseModel. `forward(inputs, samples, mode)` with modes tensor /
// loss / predict; `inputs` is one float tensor [B,C,H,W] per view, already normalised.
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include <torch/nn/module.h>
#include <torch/types.h>

#include <selfsup/config.h>
#include <selfsup/errors.h>
#include <selfsup/export.h>
#include <selfsup/interfaces/modules.h>
#include <selfsup/options.h>
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

/// Turns the loader's uint8 views into the model's inputs (MMEngine's data preprocessors).
/// Kind "data_preprocessor", chosen by `model.data_preprocessor.type`. A preprocessor may also
/// reshape per-sample data (RelativeLoc and RotationPred flatten their patches and labels).
class SELFSUP_SDK_API DataPreprocessor {
public:
  static constexpr const char* kKind = "data_preprocessor";
  virtual ~DataPreprocessor();
  [[nodiscard]] virtual std::vector<torch::Tensor> forward(const std::vector<torch::Tensor>& views,
                                                           DataSamples& samples) const = 0;
};

/// The options of SelfSupDataPreprocessor (MMEngine's ImgDataPreprocessor defaults).
struct SELFSUP_SDK_API SelfSupDataPreprocessorOptions {
  std::optional<std::vector<double>> mean; // absent (with std): no normalisation
  std::optional<std::vector<double>> std;
  bool bgr_to_rgb = false;
  bool rgb_to_bgr = false;   // the same swap under MMEngine's other name
  bool non_blocking = false; // MMEngine's asynchronous copy flag; copies here are synchronous
  static OptionTable<SelfSupDataPreprocessorOptions> table();
};

/// MMSelfSup's SelfSupDataPreprocessor: uint8 -> float, optional BGR->RGB of 3-channel
/// views, then (x - mean) / std when both are given (a one-value mean or std broadcasts over
/// channels); without them no normalisation.
class SELFSUP_SDK_API SelfSupDataPreprocessor : public DataPreprocessor {
public:
  explicit SelfSupDataPreprocessor(const SelfSupDataPreprocessorOptions& options);
  ~SelfSupDataPreprocessor() override;
  std::vector<torch::Tensor> forward(const std::vector<torch::Tensor>& views,
                                     DataSamples& samples) const override;
  /// One view.
  [[nodiscard]] torch::Tensor normalize(const torch::Tensor& view) const;

private:
  std::vector<double> mean_, std_;
  bool bgr_to_rgb_;
  torch::Tensor mean_t_, inv_std_t_; // [1, C, 1, 1] float (C may be 1: broadcast), built once
};

/// The options of TwoNormDataPreprocessor: SelfSupDataPreprocessor's, plus the second view's.
struct SELFSUP_SDK_API TwoNormDataPreprocessorOptions {
  std::optional<std::vector<double>> mean, std, second_mean, second_std;
  bool bgr_to_rgb = false, rgb_to_bgr = false, non_blocking = false;
  static OptionTable<TwoNormDataPreprocessorOptions> table();
};

/// CAE's TwoNormDataPreprocessor: the first view normalised with mean/std, the second (the
/// target generator's input) with second_mean/second_std; further views like the first.
class SELFSUP_SDK_API TwoNormDataPreprocessor final : public DataPreprocessor {
public:
  explicit TwoNormDataPreprocessor(const TwoNormDataPreprocessorOptions& options);
  ~TwoNormDataPreprocessor() override;
  std::vector<torch::Tensor> forward(const std::vector<torch::Tensor>& views,
                                     DataSamples& samples) const override;

private:
  SelfSupDataPreprocessor first_, second_;
};

/// What a masked-image-modelling algorithm reconstructs (`selfsup visualize`): `original` and
/// `reconstruction` [B, C, H, W] in the model's input space (after the data preprocessor, so
/// the caller undoes its mean/std), `mask` [B, 1, H, W] float, 1 where the input was hidden.
struct Reconstruction {
  torch::Tensor original, mask, reconstruction;
};

class RunnerContext;
enum class RunEvent;

class SELFSUP_SDK_API Algorithm : public torch::nn::Module {
public:
  static constexpr const char* kKind = "algorithm";
  ~Algorithm() override;

  /// Features of the images, as the evaluators use them (kNN, linear probe): by default the
  /// backbone's outputs for view 0; an algorithm overrides it to be evaluated on its own
  /// features (a ViT's class token, MAE without masking).
  virtual std::vector<torch::Tensor> extract_feat(const std::vector<torch::Tensor>& inputs) = 0;
  /// The named losses of a batch.
  virtual LossMap loss(const std::vector<torch::Tensor>& inputs, const DataSamples& samples) = 0;
  /// Predictions; the default throws ValueError (most algorithms have none).
  virtual std::vector<torch::Tensor> predict(const std::vector<torch::Tensor>& inputs,
                                             const DataSamples& samples);
  /// The images reconstructed from preprocessed `inputs` (MMSelfSup's `reconstruct`, used by
  /// `selfsup visualize`); MAE and SimMIM override it. The default throws ValueError.
  virtual Reconstruction reconstruct(const std::vector<torch::Tensor>& inputs,
                                     const DataSamples& samples);
  /// Dispatches on the mode, like MMSelfSup's BaseModel.forward: tensor -> extract_feat,
  /// loss -> loss, predict -> predict. The runner and the evaluators call this.
  ForwardOutput forward(const std::vector<torch::Tensor>& inputs, const DataSamples& samples,
                        ForwardMode mode);

  /// uint8 views from the loader -> the model's inputs (through the data preprocessor).
  virtual std::vector<torch::Tensor> preprocess(const std::vector<torch::Tensor>& views,
                                                DataSamples& samples) const = 0;
  /// The image encoder (for export and channels-last handling).
  [[nodiscard]] virtual std::shared_ptr<Backbone> backbone() const = 0;

  /// Called by the runner at each event of the run, before the hooks of that event (momentum
  /// updates, queues, re-clustering live here or in hooks). The default does nothing.
  virtual void on_run_event(RunEvent event, RunnerContext& context);
  /// The run this model is trained in (set by the runner for the run's duration), or null.
  [[nodiscard]] RunnerContext* context() const { return context_; }
  void set_context(RunnerContext* context) { context_ = context; }

private:
  RunnerContext* context_ = nullptr;
};

/// The shared part of most algorithms: builds `backbone` (required), `neck`, `head` and
/// `data_preprocessor` (default SelfSupDataPreprocessor) from the config, as MMSelfSup's
/// BaseModel does.
class SELFSUP_SDK_API BaseModel : public Algorithm {
public:
  /// The keys every BaseModel accepts; algorithms `extend` it with their own.
  static Schema base_schema(std::string doc);

  std::vector<torch::Tensor> extract_feat(const std::vector<torch::Tensor>& inputs) override;
  std::vector<torch::Tensor> preprocess(const std::vector<torch::Tensor>& views,
                                        DataSamples& samples) const override;
  [[nodiscard]] std::shared_ptr<Backbone> backbone() const override { return backbone_; }

protected:
  explicit BaseModel(const Config& cfg);
  ~BaseModel() override;

  std::shared_ptr<Backbone> backbone_;
  std::shared_ptr<Neck> neck_; // may be null
  std::shared_ptr<Head> head_; // may be null
  std::shared_ptr<DataPreprocessor> data_preprocessor_;
};

} // namespace selfsup
