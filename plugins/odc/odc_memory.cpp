#include "odc_memory.h"

#include <algorithm>
#include <cstdio>
#include <random>
#include <string>

#include <torch/torch.h>

#include <selfsup/dist.h>
#include <selfsup/errors.h>

#include "clustering.h"

namespace selfsup::plugins::odc {

namespace {
torch::Tensor l2_rows(const torch::Tensor& x) {
  return x / (x.norm(2, 1, true) + 1e-10);
}
} // namespace

OptionTable<ODCMemoryOptions> ODCMemoryOptions::table() {
  using O = ODCMemoryOptions;
  using namespace selfsup::check;
  return OptionTable<O>("feature and label memory of every sample plus cluster centroids, "
                        "updated online, as MMSelfSup's ODCMemory",
                        O())
      .required("length", &O::length, "rows: at least the training set's size", gt(0))
      .required("feat_dim", &O::feat_dim, "feature dimension (the neck's output)", gt(0))
      .required("momentum", &O::momentum, "weight of the new feature in the update", ge(0))
      .required("num_classes", &O::num_classes, "number of clusters", gt(1))
      .required("min_cluster", &O::min_cluster, "smaller clusters are dissolved", ge(0))
      .optional("debug", &O::debug, "log the smallest cluster's size at each check");
}

ODCMemory::ODCMemory(const ODCMemoryOptions& options_) : options(options_) {
  feature_bank = register_buffer("feature_bank",
                                 torch::zeros({options.length, options.feat_dim}, torch::kFloat32));
  label_bank = register_buffer("label_bank", torch::zeros({options.length}, torch::kInt64));
  centroids = register_buffer(
      "centroids", torch::zeros({options.num_classes, options.feat_dim}, torch::kFloat32));
}

void ODCMemory::init_memory(const torch::Tensor& features, const torch::Tensor& labels) {
  TORCH_CHECK(features.dim() == 2 && features.size(1) == options.feat_dim &&
                  labels.numel() == features.size(0),
              "ODCMemory: expected features [N, ", options.feat_dim, "] and labels [N], got ",
              features.sizes(), " and ", labels.sizes());
  const int64_t n = features.size(0);
  if (n > options.length)
    throw ValueError("ODCMemory: " + std::to_string(n) + " samples but length " +
                     std::to_string(options.length) +
                     " (memory_bank.length must be at least the "
                     "training set's size)");
  const torch::Tensor h = clustering::cluster_sizes(labels, options.num_classes);
  if ((h == 0).any().item<bool>())
    throw ValueError("ODCMemory: the initial clustering left " +
                     std::to_string((h == 0).sum().item<int64_t>()) + " of " +
                     std::to_string(options.num_classes) +
                     " clusters empty (every cluster needs a sample, as upstream asserts)");
  torch::NoGradGuard no_grad;
  label_bank.slice(0, 0, n).copy_(labels.reshape(-1));
  feature_bank.slice(0, 0, n).copy_(l2_rows(features.to(torch::kFloat32)));
  initialized_ = true;
  rows_ = n;
  update_centroids_memory();
}

torch::Tensor ODCMemory::update_samples_memory(const torch::Tensor& idx_in,
                                               const torch::Tensor& feature) {
  if (!initialized_)
    throw ValueError("ODCMemory: not initialised; DeepClusterHook with init_memory=true and "
                     "initial=true must run before training");
  torch::NoGradGuard no_grad;
  const auto dev = feature_bank.device();
  torch::Tensor idx = idx_in.to(dev, torch::kInt64).reshape(-1);
  torch::Tensor f =
      l2_rows(feature.detach().reshape({feature.size(0), -1}).to(dev, torch::kFloat32));
  if (dist().world_size() > 1) {
    idx = torch::cat(dist().all_gather(idx));
    f = torch::cat(dist().all_gather(f));
  }
  if (idx.numel() > 0 && (idx.min().item<int64_t>() < 0 || idx.max().item<int64_t>() >= rows_))
    throw ValueError("ODCMemory: sample_idx " + std::to_string(idx.max().item<int64_t>()) +
                     " outside the " + std::to_string(rows_) +
                     " rows of the initial clustering (DeepClusterHook's extract_dataloader "
                     "must list the samples the training loader draws)");
  const torch::Tensor old = feature_bank.index_select(0, idx);
  const torch::Tensor mixed = l2_rows((1 - options.momentum) * old + options.momentum * f);
  feature_bank.index_put_({idx}, mixed);
  const torch::Tensor new_labels = torch::mm(centroids, mixed.t()).argmax(0);
  const torch::Tensor change =
      (new_labels != label_bank.index_select(0, idx)).sum().to(torch::kFloat32) /
      double(new_labels.size(0));
  label_bank.index_put_({idx}, new_labels);
  return change;
}

void ODCMemory::update(const torch::Tensor& idx, const torch::Tensor& feature) {
  (void)update_samples_memory(idx, feature);
}

torch::Tensor ODCMemory::compute_centroids(const std::vector<int64_t>& cinds) const {
  const int64_t k = options.num_classes;
  torch::Tensor sums = torch::zeros({k, options.feat_dim}, feature_bank.options());
  sums.index_add_(0, labels(), features());
  const torch::Tensor counts = torch::bincount(labels(), {}, k).to(feature_bank.scalar_type());
  torch::Tensor out = centroids.clone();
  const torch::Tensor means = sums / counts.clamp_min(1).unsqueeze(1);
  if (cinds.empty()) {
    const torch::Tensor nonempty = counts > 0;
    out.index_put_({nonempty}, means.index({nonempty}));
  } else {
    const torch::Tensor c = torch::tensor(cinds, torch::kInt64).to(out.device());
    out.index_put_({c}, means.index_select(0, c));
  }
  return out;
}

void ODCMemory::update_centroids_memory(const std::vector<int64_t>& cinds) {
  torch::NoGradGuard no_grad;
  centroids.copy_(compute_centroids(cinds));
}

void ODCMemory::deal_with_small_clusters() {
  torch::NoGradGuard no_grad;
  const int64_t k = options.num_classes;
  const torch::Tensor h = torch::bincount(labels().cpu(), {}, k);
  std::vector<int64_t> small;
  const auto* hp = h.data_ptr<int64_t>();
  for (int64_t c = 0; c < k; ++c)
    if (hp[c] < options.min_cluster) small.push_back(c);
  if (options.debug)
    std::printf("ODCMemory: min cluster %lld, %zu small clusters\n",
                (long long)h.min().item<int64_t>(), small.size());
  if (small.empty()) return;
  if (int64_t(small.size()) == k)
    throw ValueError("ODCMemory: every cluster is smaller than min_cluster " +
                     std::to_string(options.min_cluster));
  std::vector<int64_t> keep;
  for (int64_t c = 0, s = 0; c < k; ++c) {
    if (s < int64_t(small.size()) && small[size_t(s)] == c) {
      ++s;
      continue;
    }
    keep.push_back(c);
  }
  const torch::Tensor inclusion = torch::tensor(keep, torch::kInt64).to(centroids.device());
  const torch::Tensor included = centroids.index_select(0, inclusion);
  for (int64_t s : small) {
    const torch::Tensor idx = (labels() == s).nonzero().reshape(-1);
    if (idx.numel() == 0) continue;
    const torch::Tensor target =
        torch::mm(included, feature_bank.index_select(0, idx).t()).argmax(0);
    label_bank.index_put_({idx}, inclusion.index_select(0, target));
  }
  redirect_empty_clusters(small);
}

void ODCMemory::redirect_empty_clusters(const std::vector<int64_t>& empty) {
  const int64_t k = options.num_classes;
  for (int64_t e : empty) {
    TORCH_CHECK(!(labels() == e).any().item<bool>(), "ODCMemory: cluster ", e, " is not empty");
    const int64_t max_cluster = torch::bincount(labels(), {}, k).argmax().item<int64_t>();
    const torch::Tensor members = (labels() == max_cluster).nonzero().reshape(-1);
    TORCH_CHECK(members.numel() >= 2, "ODCMemory: the largest cluster has fewer than 2 samples");
    // MMSelfSup: sklearn KMeans(n_clusters=2, random_state=0, max_iter=20); here Faiss's
    // k-means with seed 0 and 20 iterations; a random half when one side comes out empty.
    const torch::Tensor feats = feature_bank.index_select(0, members);
    const torch::Tensor split = clustering::kmeans(feats, 2, 0, 20).labels.to(members.device());
    torch::Tensor second = members.index({split == 1});
    if (second.numel() == 0 || second.numel() == members.numel()) {
      std::mt19937_64 gen(++partitions_);
      std::vector<int64_t> order(size_t(members.numel()));
      for (size_t i = 0; i < order.size(); ++i) order[i] = int64_t(i);
      std::shuffle(order.begin(), order.end(), gen);
      order.resize(order.size() / 2); // these stay, the others move (upstream: n // 2 stay)
      std::vector<int64_t> rest;
      std::vector<bool> stays(size_t(members.numel()), false);
      for (int64_t i : order) stays[size_t(i)] = true;
      for (size_t i = 0; i < stays.size(); ++i)
        if (!stays[i]) rest.push_back(int64_t(i));
      second = members.index_select(0, torch::tensor(rest, torch::kInt64).to(members.device()));
    }
    label_bank.index_fill_(0, second, e);
    update_centroids_memory({max_cluster, e});
  }
}

} // namespace selfsup::plugins::odc
