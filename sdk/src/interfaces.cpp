// Key functions (out-of-line virtual destructors) of every sdk interface, and the shared
// implementations: DataPreprocessor, BaseModel, Optimizer and ParamScheduler bases.
#include <cmath>

#include <torch/torch.h>

#include <selfsup/errors.h>
#include <selfsup/interfaces/algorithm.h>
#include <selfsup/interfaces/data.h>
#include <selfsup/interfaces/modules.h>
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
Optimizer::~Optimizer() = default;
ParamScheduler::~ParamScheduler() = default;
RunnerContext::~RunnerContext() = default;
Hook::~Hook() = default;

std::vector<torch::Tensor> Head::predict(const std::vector<torch::Tensor>&) {
  throw ValueError(name() + ": this head has no predict()");
}

// ---- Algorithm ------------------------------------------------------------------------

std::vector<torch::Tensor> Algorithm::predict(const std::vector<torch::Tensor>&,
                                              const DataSamples&) {
  throw ValueError(name() + ": this algorithm has no predict mode");
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

// ---- DataPreprocessor -----------------------------------------------------------------

DataPreprocessor::DataPreprocessor(std::vector<double> mean, std::vector<double> std,
                                   bool bgr_to_rgb)
    : mean_(std::move(mean)), std_(std::move(std)), bgr_to_rgb_(bgr_to_rgb) {
  if (mean_.size() != std_.size())
    throw ValueError("data_preprocessor: mean and std differ in length");
  for (double s : std_)
    if (!(s > 0)) throw ValueError("data_preprocessor.std: every entry must be > 0");
  const auto c = int64_t(mean_.size());
  mean_t_ = torch::tensor(mean_, torch::kFloat64).to(torch::kFloat32).view({1, c, 1, 1});
  inv_std_t_ = (1.0 / torch::tensor(std_, torch::kFloat64)).to(torch::kFloat32).view({1, c, 1, 1});
}

Schema DataPreprocessor::schema() {
  return Schema("Casts uint8 views to float, optionally swaps BGR to RGB, and normalises.")
      .optional("mean", ArgType::FloatList, Json::array({123.675, 116.28, 103.53}),
                "per-channel mean (0-255 scale, RGB order after the swap)")
      .optional("std", ArgType::FloatList, Json::array({58.395, 57.12, 57.375}),
                "per-channel std (0-255 scale)")
      .optional("bgr_to_rgb", ArgType::Bool, true, "swap channel order of 3-channel views");
}

DataPreprocessor DataPreprocessor::from_config(const Config& cfg) {
  if (cfg.has("type") && cfg.get<std::string>("type") != "SelfSupDataPreprocessor")
    cfg.fail_key("type", "only SelfSupDataPreprocessor is available, got '" +
                             cfg.get<std::string>("type") + "'");
  Config filled(schema().apply(cfg), cfg.path());
  try {
    return DataPreprocessor(filled.get<std::vector<double>>("mean"),
                            filled.get<std::vector<double>>("std"), filled.get<bool>("bgr_to_rgb"));
  } catch (const ValueError& e) {
    cfg.fail(e.what());
  }
}

torch::Tensor DataPreprocessor::operator()(const torch::Tensor& view) const {
  TORCH_CHECK(view.dim() == 4, "data_preprocessor: expected [B,C,H,W], got ", view.sizes());
  const int64_t c = view.size(1);
  if (int64_t(mean_.size()) != c)
    throw ValueError("data_preprocessor: mean/std have " + std::to_string(mean_.size()) +
                     " entries but the views have " + std::to_string(c) + " channels");
  torch::Tensor x = view;
  if (bgr_to_rgb_ && c == 3) x = x.flip({1});
  return (x.to(torch::kFloat32) - mean_t_.to(view.device())) * inv_std_t_.to(view.device());
}

std::vector<torch::Tensor>
DataPreprocessor::operator()(const std::vector<torch::Tensor>& views) const {
  std::vector<torch::Tensor> out;
  out.reserve(views.size());
  for (const auto& v : views) out.push_back((*this)(v));
  return out;
}

// ---- BaseModel ------------------------------------------------------------------------

Schema BaseModel::base_schema(std::string doc) {
  return Schema(std::move(doc))
      .required("backbone", ArgType::Dict, "the image encoder config")
      .optional("neck", ArgType::Dict, Json(), "the neck config")
      .optional("head", ArgType::Dict, Json(), "the head config (its loss inside)")
      .optional("data_preprocessor", ArgType::Dict, Json::object(),
                "SelfSupDataPreprocessor: mean, std, bgr_to_rgb");
}

BaseModel::BaseModel(const Config& cfg)
    : data_preprocessor_(DataPreprocessor::from_config(
          cfg.has("data_preprocessor") ? cfg["data_preprocessor"] : Config())) {
  backbone_ = register_module("backbone", build<Backbone>(cfg["backbone"]));
  if (cfg.has("neck")) neck_ = register_module("neck", build<Neck>(cfg["neck"]));
  if (cfg.has("head")) head_ = register_module("head", build<Head>(cfg["head"]));
}

BaseModel::~BaseModel() = default;

std::vector<torch::Tensor> BaseModel::extract_feat(const std::vector<torch::Tensor>& inputs) {
  TORCH_CHECK(!inputs.empty(), "extract_feat: no input views");
  return backbone_->forward(inputs[0]);
}

std::vector<torch::Tensor> BaseModel::preprocess(const std::vector<torch::Tensor>& views) const {
  return data_preprocessor_(views);
}

// ---- Optimizer ------------------------------------------------------------------------

void Optimizer::add_param_group(ParamGroup group) {
  if (group.initial_lr == 0.0) group.initial_lr = group.lr;
  state_.emplace_back(group.params.size());
  groups_.push_back(std::move(group));
}

void Optimizer::zero_grad() {
  // Gradients become undefined (torch's set_to_none): a parameter that gets no gradient
  // in a step is skipped by step(), with no weight decay or momentum.
  for (auto& g : groups_)
    for (auto& p : g.params)
      if (p.grad().defined()) p.mutable_grad().reset();
}

std::map<std::string, torch::Tensor> Optimizer::state_dict() const {
  std::map<std::string, torch::Tensor> out;
  for (size_t g = 0; g < state_.size(); ++g) {
    for (size_t i = 0; i < state_[g].size(); ++i)
      for (const auto& [k, v] : state_[g][i])
        out["state." + std::to_string(g) + "." + std::to_string(i) + "." + k] = v;
    out["group." + std::to_string(g) + ".lr"] = torch::tensor(groups_[g].lr, torch::kFloat64);
  }
  return out;
}

void Optimizer::load_state_dict(const std::map<std::string, torch::Tensor>& state) {
  for (auto& per_group : state_)
    for (auto& s : per_group) s.clear();
  for (const auto& [key, value] : state) {
    // "state.G.I.name" or "group.G.lr"
    auto d1 = key.find('.'), d2 = key.find('.', d1 + 1);
    if (d1 == std::string::npos || d2 == std::string::npos)
      throw ValueError("optimizer state: malformed key '" + key + "'");
    size_t g = std::stoul(key.substr(d1 + 1, d2 - d1 - 1));
    if (g >= groups_.size())
      throw ValueError("optimizer state: key '" + key + "' names group " + std::to_string(g) +
                       " but there are " + std::to_string(groups_.size()));
    if (key.compare(0, 6, "group.") == 0) {
      groups_[g].lr = value.item<double>();
      continue;
    }
    auto d3 = key.find('.', d2 + 1);
    size_t i = std::stoul(key.substr(d2 + 1, d3 - d2 - 1));
    if (i >= groups_[g].params.size())
      throw ValueError("optimizer state: key '" + key + "' names parameter " + std::to_string(i) +
                       " of a group with " + std::to_string(groups_[g].params.size()));
    if (!value.sizes().equals(groups_[g].params[i].sizes()))
      throw ValueError("optimizer state: '" + key + "' has shape " + c10::str(value.sizes()) +
                       ", the parameter has " + c10::str(groups_[g].params[i].sizes()));
    state_[g][i][key.substr(d3 + 1)] = value.to(groups_[g].params[i].device()).clone();
  }
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

void ParamScheduler::bind(int64_t iters_per_epoch, int64_t max_epochs) {
  iters_per_epoch_ = std::max<int64_t>(1, iters_per_epoch);
  // An explicit end is kept; an absent one means the end of training.
  const double run_end = by_epoch_ ? double(max_epochs) : double(max_epochs) * iters_per_epoch_;
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
