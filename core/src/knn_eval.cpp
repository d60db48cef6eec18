#include <selfsup/core/knn_eval.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <fstream>
#include <optional>
#include <sstream>
#include <unordered_set>
#include <utility>
#include <vector>

#include <torch/torch.h>

#include <selfsup/core/data.h>
#include <selfsup/core/optim_wrapper.h>
#include <selfsup/errors.h>
#include <selfsup/interfaces/algorithm.h>

#include "logging.h"

namespace selfsup::core {

ExtractPrecision parse_extract_precision(const std::string& name, const std::string& where) {
  if (name == "auto") return ExtractPrecision::Auto;
  if (name == "fp32") return ExtractPrecision::Float32;
  if (name == "bf16") return ExtractPrecision::BFloat16;
  throw ConfigError(where + ": expected 'auto', 'fp32' or 'bf16', got '" + name + "'");
}

std::string to_string(ExtractPrecision precision) {
  switch (precision) {
  case ExtractPrecision::Float32:
    return "fp32";
  case ExtractPrecision::BFloat16:
    return "bf16";
  case ExtractPrecision::Auto:
    break;
  }
  return "auto";
}

bool cpu_has_native_bf16() {
  static const bool has = [] {
    std::ifstream in("/proc/cpuinfo");
    std::string line;
    while (std::getline(in, line)) {
      if (line.rfind("flags", 0) != 0) continue;
      std::istringstream words(line);
      std::string w;
      while (words >> w)
        if (w == "avx512_bf16" || w == "amx_bf16") return true;
      return false; // the first processor's flags decide
    }
    return false;
  }();
  return has;
}

torch::ScalarType resolve_extract_dtype(ExtractPrecision precision, torch::Device device) {
  switch (precision) {
  case ExtractPrecision::Float32:
    return torch::kFloat32;
  case ExtractPrecision::BFloat16:
    return torch::kBFloat16;
  case ExtractPrecision::Auto:
    break;
  }
  return device.is_cpu() && cpu_has_native_bf16() ? torch::kBFloat16 : torch::kFloat32;
}

namespace {

// The model in the extraction's shape while alive: eval mode, every floating-point parameter
// and buffer in `dtype` and 4-D ones channels-last. The destructor puts the original tensors
// (the same storage, so optimizers and checkpoints see nothing) and the mode back.
class InferenceModel {
public:
  InferenceModel(Algorithm& model, torch::ScalarType dtype)
      : model_(model), was_training_(model.is_training()) {
    torch::NoGradGuard no_grad;
    std::unordered_set<const void*> seen;
    auto convert = [&](torch::Tensor t) {
      if (!t.defined() || !t.is_floating_point() || !seen.insert(t.unsafeGetTensorImpl()).second)
        return;
      const bool cl = t.dim() == 4;
      if (t.scalar_type() == dtype && (!cl || t.is_contiguous(torch::MemoryFormat::ChannelsLast)))
        return;
      auto converted = t.to(t.options().dtype(dtype), /*non_blocking=*/false, /*copy=*/false,
                            cl ? torch::MemoryFormat::ChannelsLast : torch::MemoryFormat::Preserve);
      saved_.emplace_back(t, t.variable_data());
      t.set_data(converted);
    };
    try {
      for (const auto& p : model.parameters()) convert(p);
      for (const auto& b : model.buffers()) convert(b);
      model.eval();
    } catch (...) {
      restore();
      throw;
    }
  }
  ~InferenceModel() { restore(); }
  InferenceModel(const InferenceModel&) = delete;
  InferenceModel& operator=(const InferenceModel&) = delete;

private:
  void restore() noexcept {
    torch::NoGradGuard no_grad;
    for (auto it = saved_.rbegin(); it != saved_.rend(); ++it) it->first.set_data(it->second);
    saved_.clear();
    model_.train(was_training_);
  }
  Algorithm& model_;
  bool was_training_;
  std::vector<std::pair<torch::Tensor, torch::Tensor>> saved_; // (tensor, its original data)
};

// A progress line every `interval` batches: batches, images, images/s and ETA.
class ExtractProgress {
public:
  ExtractProgress(const ExtractOptions& o, int64_t num_batches, torch::ScalarType dtype)
      : o_(o), num_batches_(num_batches), dtype_(dtype), start_(std::chrono::steady_clock::now()) {}
  void after_batch(int64_t images_in_batch) {
    ++batches_;
    images_ += images_in_batch;
    if (!o_.log || o_.log_interval <= 0) return;
    if (batches_ % o_.log_interval != 0 && batches_ != num_batches_) return;
    const double s = seconds();
    const double rate = s > 0 ? double(images_) / s : 0.0;
    const double eta =
        batches_ > 0 ? s / double(batches_) * double(std::max<int64_t>(0, num_batches_ - batches_))
                     : 0.0;
    char buf[200];
    std::snprintf(buf, sizeof buf, "%s [%lld/%lld] %lld images, %.0f images/s (%s), eta %s",
                  o_.name.c_str(), (long long)batches_, (long long)num_batches_, (long long)images_,
                  rate, dtype_ == torch::kBFloat16 ? "bf16" : "fp32", format_duration(eta).c_str());
    o_.log(buf);
  }
  [[nodiscard]] double seconds() const {
    return std::chrono::duration<double>(std::chrono::steady_clock::now() - start_).count();
  }

private:
  const ExtractOptions& o_;
  int64_t num_batches_;
  torch::ScalarType dtype_;
  std::chrono::steady_clock::time_point start_;
  int64_t batches_ = 0, images_ = 0;
};

} // namespace

torch::Tensor extract_features(Algorithm& model, DataLoader& loader, torch::Tensor& labels,
                               torch::Device device, const ExtractOptions& options) {
  const torch::ScalarType dtype = resolve_extract_dtype(options.precision, device);
  std::vector<torch::Tensor> feats, labs;
  {
    InferenceModel inference_model(model, dtype);
    // Autocast as well: an op that meets a float32 tensor the algorithm makes on the fly
    // (a mask, a position embedding) still runs in the extraction's dtype.
    std::optional<AutocastGuard> autocast;
    if (dtype != torch::kFloat32) autocast.emplace(device, dtype);
    c10::InferenceMode inference;
    ExtractProgress progress(options, loader.num_batches(), dtype);
    loader.start_epoch(0);
    while (auto batch = loader.next()) {
      std::vector<torch::Tensor> views;
      views.reserve(batch->views.size());
      for (auto& v : batch->views) views.push_back(v.to(device, /*non_blocking=*/true));
      DataSamples samples = to_data_samples(*batch, device);
      auto inputs = model.preprocess(views, samples);
      for (auto& x : inputs)
        if (x.is_floating_point())
          x = x.to(x.options().dtype(dtype), /*non_blocking=*/false, /*copy=*/false,
                   x.dim() == 4 ? torch::MemoryFormat::ChannelsLast
                                : torch::MemoryFormat::Preserve);
      // The algorithm's own features (extract_feat through forward's tensor mode).
      auto outs = model.forward(inputs, samples, ForwardMode::Tensor).tensors;
      if (outs.empty()) throw ValueError("kNN: the algorithm's extract_feat returned nothing");
      auto f = outs.back().to(torch::kFloat32);
      if (f.dim() == 4) f = f.mean({2, 3});
      feats.push_back(
          torch::nn::functional::normalize(f.reshape({f.size(0), -1}),
                                           torch::nn::functional::NormalizeFuncOptions().dim(1))
              .cpu());
      labs.push_back(batch->gt_label.cpu());
      progress.after_batch(batch->gt_label.size(0));
    }
  }
  if (feats.empty()) throw ValueError("kNN: the loader produced no samples");
  // Outside inference mode: the results are ordinary tensors callers may modify in place.
  labels = torch::cat(labs);
  return torch::cat(feats);
}

KnnResult knn_classify(const torch::Tensor& bank, const torch::Tensor& bank_labels,
                       const torch::Tensor& queries, const torch::Tensor& query_labels, int64_t k,
                       double temperature, int64_t num_classes) {
  TORCH_CHECK(bank.dim() == 2 && queries.dim() == 2 && bank.size(1) == queries.size(1),
              "kNN: feature shapes differ: bank ", bank.sizes(), " queries ", queries.sizes());
  if ((bank_labels < 0).any().item<bool>() || (query_labels < 0).any().item<bool>())
    throw ValueError("kNN: every sample needs a class label (gt_label)");
  if (num_classes <= 0)
    num_classes =
        std::max(bank_labels.max().item<int64_t>(), query_labels.max().item<int64_t>()) + 1;
  k = std::min<int64_t>(k, bank.size(0));
  const int64_t n = queries.size(0), chunk = 256;
  int64_t correct1 = 0, correct5 = 0;
  for (int64_t s = 0; s < n; s += chunk) {
    auto q = queries.slice(0, s, std::min(n, s + chunk));
    auto sim = torch::mm(q, bank.t());
    auto [top_sim, top_idx] = sim.topk(k, 1);
    auto top_labels = bank_labels.index_select(0, top_idx.reshape(-1)).view(top_idx.sizes());
    auto weights = (top_sim / temperature).exp();
    auto scores = torch::zeros({q.size(0), num_classes}, weights.options());
    scores.scatter_add_(1, top_labels, weights);
    // Top-5 looks at min(5, k) predictions, as MMSelfSup's knn_eval.
    auto pred = std::get<1>(scores.topk(std::min<int64_t>({5, k, num_classes}), 1));
    auto truth = query_labels.slice(0, s, std::min(n, s + chunk)).view({-1, 1});
    auto hit = pred.eq(truth);
    correct1 += hit.slice(1, 0, 1).sum().item<int64_t>();
    correct5 += hit.sum().item<int64_t>();
  }
  KnnResult r;
  r.top1 = 100.0 * double(correct1) / double(n);
  r.top5 = 100.0 * double(correct5) / double(n);
  r.num_bank = bank.size(0);
  r.num_queries = n;
  return r;
}

} // namespace selfsup::core
