#pragma once
// A run context for the clustering hooks of DeepCluster and ODC (tests/plugins/deepcluster,
// tests/plugins/odc): it hands a hook a model, a training set of `size` empty samples, a
// sampler, and "extracted" features the test chose, and records the log lines.
#include <memory>
#include <string>
#include <vector>

#include <torch/torch.h>

#include <selfsup/sdk.h>

namespace selfsup::test {

class SizedDataset final : public Dataset {
public:
  explicit SizedDataset(int64_t n) : n_(n) {}
  int64_t size() const override { return n_; }
  Sample get(int64_t index) const override {
    Sample s;
    s.sample_idx = index;
    return s;
  }

private:
  int64_t n_;
};

class ClusterRun final : public RunnerContext {
public:
  ClusterRun(std::shared_ptr<Algorithm> model, torch::Tensor features,
             std::shared_ptr<Sampler> sampler)
      : model_(std::move(model)), features_(std::move(features)), dataset_(features_.size(0)),
        sampler_(std::move(sampler)) {
    if (sampler_) sampler_->bind(features_.size(0), 0, 1, 0);
  }
  int64_t epoch_ = 0, iter_ = 0;
  std::vector<std::string> lines;
  int64_t epoch() const override { return epoch_; }
  int64_t iter() const override { return iter_; }
  int64_t inner_iter() const override { return iter_; }
  int64_t max_epochs() const override { return 1; }
  int64_t max_iters() const override { return 1; }
  int64_t iters_per_epoch() const override { return 1; }
  Algorithm& model() override { return *model_; }
  torch::optim::Optimizer& optimizer() override { throw ValueError("ClusterRun: no optimizer"); }
  const std::string& param_group_name(size_t) const override {
    throw ValueError("ClusterRun: no optimizer");
  }
  const Dataset& train_dataset() const override { return dataset_; }
  Sampler& train_sampler() override {
    if (!sampler_) throw ValueError("ClusterRun: no sampler");
    return *sampler_;
  }
  int64_t train_batch_size() const override { return 1; }
  const std::string& work_dir() const override { return dir_; }
  int rank() const override { return 0; }
  int world_size() const override { return 1; }
  uint64_t seed() const override { return 5; }
  std::string save_checkpoint(const std::string&) override { return ""; }
  void log_scalar(const std::string&, double) override {}
  void log(const std::string& line) override { lines.push_back(line); }
  torch::Tensor extract_features(const Config&) override { return features_; }

private:
  std::shared_ptr<Algorithm> model_;
  torch::Tensor features_;
  SizedDataset dataset_;
  std::shared_ptr<Sampler> sampler_;
  std::string dir_;
};

/// `per` points around each of `k` far-apart centres in `dim` dimensions (noise 0.1), cluster
/// by cluster, and their true cluster ids.
inline std::pair<torch::Tensor, torch::Tensor> blobs(int64_t k, int64_t per, int64_t dim,
                                                     uint64_t seed) {
  torch::manual_seed(seed);
  const torch::Tensor centres = torch::randn({k, dim}) * 10;
  const torch::Tensor truth = torch::arange(k).repeat_interleave(per);
  return {centres.index_select(0, truth) + 0.1 * torch::randn({k * per, dim}), truth};
}

/// True when `labels` partition the points exactly as `truth` does (up to renaming).
inline bool same_partition(const torch::Tensor& labels, const torch::Tensor& truth) {
  const auto n = labels.size(0);
  const auto a = labels.contiguous(), b = truth.contiguous();
  const auto* pa = a.data_ptr<int64_t>();
  const auto* pb = b.data_ptr<int64_t>();
  for (int64_t i = 0; i < n; ++i)
    for (int64_t j = i + 1; j < n; ++j)
      if ((pa[i] == pa[j]) != (pb[i] == pb[j])) return false;
  return true;
}

} // namespace selfsup::test
