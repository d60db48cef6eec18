// Key functions (out-of-line virtual destructors) of every sdk interface, and the shared
// implementations: DataPreprocessor, BaseModel and ParamScheduler bases.
#include <cmath>

#include <torch/torch.h>

#include <selfsup/errors.h>
#include <selfsup/options.h>
#include <selfsup/interfaces/algorithm.h>
#include <selfsup/interfaces/clustering.h>
#include <selfsup/interfaces/data.h>
#include <selfsup/interfaces/modules.h>
#include <selfsup/interfaces/sampler.h>
#include <selfsup/interfaces/training.h>
#include <selfsup/registry.h>

namespace selfsup {

Backbone::~Backbone() = default;
Neck::~Neck() = default;
Loss::~Loss() = default;
Head::~Head() = default;
Memory::~Memory() = default;
TargetGenerator::~TargetGenerator() = default;
Algorithm::~Algorithm() = default;
Dataset::~Dataset() = default;
Transform::~Transform() = default;
ParamScheduler::~ParamScheduler() = default;
RunnerContext::~RunnerContext() = default;
torch::Tensor RunnerContext::extract_features(const Config& dataloader) {
  throw ValueError(dataloader.path() + ": this run context cannot extract features (no data)");
}
Hook::~Hook() = default;
TrainLoop::~TrainLoop() = default;
TrainLoop::Driver::~Driver() = default;
Sampler::~Sampler() = default;
DataPreprocessor::~DataPreprocessor() = default;

void Algorithm::on_run_event(RunEvent, RunnerContext&) {}

ClusteringAlgorithm::~ClusteringAlgorithm() = default;
void ClusteringAlgorithm::init_memory(const torch::Tensor&, const torch::Tensor&) {
  throw ValueError("init_memory: this algorithm has no memory bank (init_memory=true is for ODC)");
}

std::vector<torch::Tensor> Head::predict(const std::vector<torch::Tensor>&) {
  throw ValueError(name() + ": this head has no predict()");
}

// ---- Algorithm ------------------------------------------------------------------------

std::vector<torch::Tensor> Algorithm::predict(const std::vector<torch::Tensor>&,
                                              const DataSamples&) {
  throw ValueError(name() + ": this algorithm has no predict mode");
}

Reconstruction Algorithm::reconstruct(const std::vector<torch::Tensor>&, const DataSamples&) {
  throw ValueError(name() + ": this algorithm does not reconstruct images (only masked image "
                            "modelling algorithms such as MAE and SimMIM do)");
}

ForwardOutput Algorithm::forward(const std::vector<torch::Tensor>& inputs,
                                 const DataSamples& samples, ForwardMode mode) {
  ForwardOutput out;
  switch (mode) {
  case ForwardMode::Tensor:
    out.tensors = extract_feat(inputs);
    break;
  case ForwardMode::Loss:
    out.losses = loss(inputs, samples);
    break;
  case ForwardMode::Predict:
    out.tensors = predict(inputs, samples);
    break;
  }
  return out;
}

// ---- Data preprocessors ---------------------------------------------------------------

namespace {

// The rows SelfSupDataPreprocessor and TwoNormDataPreprocessor share, declared once.
template <class O> OptionTable<O> norm_table(std::string doc) {
  using namespace check;
  return OptionTable<O>(std::move(doc), O())
      .optional("mean", &O::mean,
                "per-channel mean (0-255 scale; one value broadcasts); absent: no normalisation",
                non_empty())
      .optional("std", &O::std,
                "per-channel std (0-255 scale; one value broadcasts); absent: no normalisation",
                non_empty(), each(gt(0)))
      .optional("bgr_to_rgb", &O::bgr_to_rgb, "swap the channel order of 3-channel views")
      .optional("rgb_to_bgr", &O::rgb_to_bgr, "the same swap under MMEngine's other name")
      .optional("non_blocking", &O::non_blocking,
                "MMEngine's asynchronous copy flag; copies here are synchronous")
      .rule([](const O& o, const Config& cfg) {
        if (o.bgr_to_rgb && o.rgb_to_bgr) cfg.fail("bgr_to_rgb and rgb_to_bgr cannot both be true");
        if (o.mean.has_value() != o.std.has_value())
          cfg.fail("give both mean and std, or neither (no normalisation)");
        if (o.mean && o.mean->size() != o.std->size() && o.mean->size() != 1 && o.std->size() != 1)
          cfg.fail("mean has " + std::to_string(o.mean->size()) + " values and std " +
                   std::to_string(o.std->size()) + " (expected equal lengths, or one value)");
      });
}

} // namespace

OptionTable<SelfSupDataPreprocessorOptions> SelfSupDataPreprocessorOptions::table() {
  return norm_table<SelfSupDataPreprocessorOptions>(
      "Casts uint8 views to float, optionally swaps BGR to RGB, and normalises with mean/std "
      "when given (MMEngine's ImgDataPreprocessor defaults).");
}

OptionTable<TwoNormDataPreprocessorOptions> TwoNormDataPreprocessorOptions::table() {
  using O = TwoNormDataPreprocessorOptions;
  return norm_table<O>("CAE's TwoNormDataPreprocessor: the second view (the target "
                       "generator's input) normalised with its own statistics.")
      .optional("second_mean", &O::second_mean, "mean of the second view", check::non_empty())
      .optional("second_std", &O::second_std, "std of the second view", check::non_empty(),
                check::each(check::gt(0)))
      .rule([](const O& o, const Config& cfg) {
        if (o.second_mean.has_value() != o.second_std.has_value())
          cfg.fail("give both second_mean and second_std, or neither");
      });
}

SelfSupDataPreprocessor::SelfSupDataPreprocessor(const SelfSupDataPreprocessorOptions& o)
    : mean_(o.mean.value_or(std::vector<double>{})), std_(o.std.value_or(std::vector<double>{})),
      bgr_to_rgb_(o.bgr_to_rgb || o.rgb_to_bgr) {
  SelfSupDataPreprocessorOptions::table().validate(o, "SelfSupDataPreprocessor");
  if (mean_.empty()) return;
  auto as_t = [](const std::vector<double>& v) {
    return torch::tensor(v, torch::kFloat64).view({1, int64_t(v.size()), 1, 1});
  };
  mean_t_ = as_t(mean_).to(torch::kFloat32);
  inv_std_t_ = (1.0 / as_t(std_)).to(torch::kFloat32);
}

SelfSupDataPreprocessor::~SelfSupDataPreprocessor() = default;

torch::Tensor SelfSupDataPreprocessor::normalize(const torch::Tensor& view) const {
  TORCH_CHECK(view.dim() == 4, "data_preprocessor: expected [B,C,H,W], got ", view.sizes());
  const int64_t c = view.size(1);
  if (mean_t_.defined())
    for (const auto* v : {&mean_, &std_})
      if (v->size() != 1 && int64_t(v->size()) != c)
        throw ValueError("data_preprocessor: mean/std have " + std::to_string(v->size()) +
                         " values but the views have " + std::to_string(c) + " channels");
  torch::Tensor x = view;
  if (bgr_to_rgb_ && c == 3) x = x.flip({1});
  x = x.to(torch::kFloat32);
  if (!mean_t_.defined()) return x;
  return (x - mean_t_.to(view.device())) * inv_std_t_.to(view.device());
}

std::vector<torch::Tensor> SelfSupDataPreprocessor::forward(const std::vector<torch::Tensor>& views,
                                                            DataSamples&) const {
  std::vector<torch::Tensor> out;
  out.reserve(views.size());
  for (const auto& v : views) out.push_back(normalize(v));
  return out;
}

namespace {
SelfSupDataPreprocessorOptions view_options(std::optional<std::vector<double>> mean,
                                            std::optional<std::vector<double>> std,
                                            const TwoNormDataPreprocessorOptions& o) {
  SelfSupDataPreprocessorOptions v;
  v.mean = std::move(mean);
  v.std = std::move(std);
  v.bgr_to_rgb = o.bgr_to_rgb || o.rgb_to_bgr;
  return v;
}
} // namespace

TwoNormDataPreprocessor::TwoNormDataPreprocessor(const TwoNormDataPreprocessorOptions& o)
    : first_(view_options(o.mean, o.std, o)),
      second_(view_options(o.second_mean, o.second_std, o)) {}

TwoNormDataPreprocessor::~TwoNormDataPreprocessor() = default;

std::vector<torch::Tensor> TwoNormDataPreprocessor::forward(const std::vector<torch::Tensor>& views,
                                                            DataSamples&) const {
  std::vector<torch::Tensor> out;
  out.reserve(views.size());
  for (size_t i = 0; i < views.size(); ++i)
    out.push_back(i == 1 ? second_.normalize(views[i]) : first_.normalize(views[i]));
  return out;
}

// ---- BaseModel ------------------------------------------------------------------------

Schema BaseModel::base_schema(std::string doc) {
  return Schema(std::move(doc))
      .required("backbone", ArgType::Dict, "the image encoder config")
      .optional("neck", ArgType::Dict, Json(), "the neck config")
      .optional("head", ArgType::Dict, Json(), "the head config (its loss inside)")
      .optional("data_preprocessor", ArgType::Dict, Json::object(),
                "the data preprocessor (default type SelfSupDataPreprocessor)")
      .component("backbone", "backbone")
      .component("neck", "neck")
      .component("head", "head")
      .component("data_preprocessor", "data_preprocessor", "SelfSupDataPreprocessor");
}

BaseModel::BaseModel(const Config& cfg) {
  if (cfg.has("data_preprocessor")) {
    const Config dp = cfg["data_preprocessor"];
    if (dp.is_object() && !dp.has("type")) {
      // MMSelfSup's BaseModel default type.
      Json with_type = dp.json();
      with_type.set("type", "SelfSupDataPreprocessor");
      data_preprocessor_ = build<DataPreprocessor>(dp.derive(with_type, dp.path()));
    } else {
      data_preprocessor_ = build<DataPreprocessor>(dp);
    }
  } else {
    data_preprocessor_ = build<DataPreprocessor>(cfg.derive(
        Json::object({{"type", "SelfSupDataPreprocessor"}}), cfg.path_of("data_preprocessor")));
  }
  backbone_ = register_module("backbone", build<Backbone>(cfg["backbone"]));
  if (cfg.has("neck")) neck_ = register_module("neck", build<Neck>(cfg["neck"]));
  if (cfg.has("head")) head_ = register_module("head", build<Head>(cfg["head"]));
}

BaseModel::~BaseModel() = default;

std::vector<torch::Tensor> BaseModel::extract_feat(const std::vector<torch::Tensor>& inputs) {
  TORCH_CHECK(!inputs.empty(), "extract_feat: no input views");
  return backbone_->forward(inputs[0]);
}

std::vector<torch::Tensor> BaseModel::preprocess(const std::vector<torch::Tensor>& views,
                                                 DataSamples& samples) const {
  return data_preprocessor_->forward(views, samples);
}

// ---- ParamScheduler -------------------------------------------------------------------

Schema ParamScheduler::base_schema(std::string doc) {
  return Schema(std::move(doc))
      .optional("begin", ArgType::Float, 0, "start of the schedule (epochs if by_epoch)")
      .optional("end", ArgType::Float, 1e18, "end of the schedule, exclusive (epochs if by_epoch)")
      .optional("by_epoch", ArgType::Bool, true, "begin/end count epochs")
      .optional("convert_to_iter_based", ArgType::Bool, false,
                "update every iteration even though begin/end count epochs")
      .optional("param_name", ArgType::String, "lr", "the hyper-parameter it sets (lr)");
}

ParamScheduler::ParamScheduler(const Config& cfg)
    : begin_cfg_(cfg.get<double>("begin")), end_cfg_(cfg.get<double>("end")),
      by_epoch_(cfg.get<bool>("by_epoch")), convert_(cfg.get<bool>("convert_to_iter_based")),
      param_name_(cfg.get<std::string>("param_name")) {
  if (param_name_ != "lr")
    cfg.fail_key("param_name", "only 'lr' is supported, got '" + param_name_ + "'");
  if (!(end_cfg_ > begin_cfg_)) cfg.fail("end must be greater than begin");
}

void ParamScheduler::bind(int64_t iters_per_epoch, int64_t max_epochs, int64_t max_iters) {
  iters_per_epoch_ = std::max<int64_t>(1, iters_per_epoch);
  if (max_iters < 0) max_iters = max_epochs * iters_per_epoch_;
  // An explicit end is kept; an absent one means the end of training.
  const double run_end = by_epoch_ ? double(max_epochs) : double(max_iters);
  double end = end_cfg_ >= 1e17 ? run_end : end_cfg_;
  iter_units_ = !by_epoch_ || convert_;
  scale_ = (by_epoch_ && convert_) ? double(iters_per_epoch_) : 1.0;
  begin_ = begin_cfg_ * scale_;
  end_ = std::max(begin_ + 1, end * scale_);
}

double ParamScheduler::apply(int64_t iter, double value) const {
  double t = iter_units_ ? double(iter) : std::floor(double(iter) / double(iters_per_epoch_));
  if (t < begin_) return value;
  return compute(std::min(t, end_) - begin_, end_ - begin_, value);
}

} // namespace selfsup
