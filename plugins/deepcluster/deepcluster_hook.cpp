#include "deepcluster_hook.h"

#include <cstdio>
#include <string>

#include <torch/torch.h>

#include <selfsup/dist.h>
#include <selfsup/errors.h>
#include <selfsup/interfaces/algorithm.h>
#include <selfsup/interfaces/clustering.h>

#include "clustering.h"
#include "deepcluster_dataset.h"
#include "deepcluster_sampler.h"

namespace selfsup::plugins::deepcluster {

OptionTable<DeepClusterHookOptions> DeepClusterHookOptions::table() {
  using O = DeepClusterHookOptions;
  using namespace selfsup::check;
  return OptionTable<O>("Re-clusters the training set (feature extraction, PCA whitening, Faiss "
                        "k-means) before training and every `interval` epochs, as MMSelfSup's "
                        "DeepClusterHook",
                        O())
      .required("extract_dataloader", &O::extract_dataloader,
                "dataloader of the training set for the features (unshuffled sampler)")
      .required("clustering", &O::clustering,
                "{type: 'Kmeans', k: clusters, pca_dim: whitened dims or -1 for no PCA}")
      .required("unif_sampling", &O::unif_sampling,
                "class-balanced indices for the DeepClusterSampler")
      .required("reweight", &O::reweight, "loss weights (n_c + 1e-10)^-reweight_pow, sum 1")
      .required("reweight_pow", &O::reweight_pow, "the power of the re-weighting", ge(0))
      .optional("init_memory", &O::init_memory, "initialise the memory bank (ODC)")
      .optional("initial", &O::initial, "cluster before training")
      .optional("interval", &O::interval, "cluster after every interval-th epoch", gt(0))
      .optional("seed", &O::seed, "k-means seed (default: the run's seed), mixed with the epoch",
                ge(0));
}

DeepClusterHook::DeepClusterHook(DeepClusterHookOptions options) : options_(std::move(options)) {
  const Config& c = options_.clustering;
  const std::string type = c.has("type") ? c.get<std::string>("type") : "";
  if (type != "Kmeans")
    c.fail_key("type", "expected 'Kmeans' (MMSelfSup's PIC is not ported), got '" + type + "'");
  for (const auto& key : c.keys())
    if (key != "type" && key != "k" && key != "pca_dim")
      c.fail_key(key, "unknown key of Kmeans (expected k, pca_dim)");
  k_ = c.get<int64_t>("k");
  pca_dim_ = c.get<int64_t>("pca_dim", 256);
  if (k_ < 1) c.fail_key("k", "expected an int > 0, got " + std::to_string(k_));
  if (pca_dim_ != -1 && pca_dim_ < 1)
    c.fail_key("pca_dim", "expected -1 (no PCA) or an int > 0, got " + std::to_string(pca_dim_));
}

std::shared_ptr<Hook> DeepClusterHook::make(const Config& cfg) {
  return std::make_shared<DeepClusterHook>(DeepClusterHookOptions::table().parse(cfg));
}

void DeepClusterHook::before_run(RunnerContext& context) {
  if (options_.initial) (void)deepcluster(context);
}

void DeepClusterHook::after_train_epoch(RunnerContext& context) {
  // The epoch counter already counts the finished epoch (MMEngine's every_n_epochs).
  if (context.epoch() % options_.interval != 0) return;
  (void)deepcluster(context);
}

torch::Tensor DeepClusterHook::deepcluster(RunnerContext& context) {
  Algorithm& model = context.model();
  auto* algo = dynamic_cast<ClusteringAlgorithm*>(&model);
  if (!algo)
    throw ValueError("DeepClusterHook: the model is not a clustering algorithm (DeepCluster, "
                     "ODC): nothing to hand the clusters to");
  // MMSelfSup's Extractor: the neck on the backbone's last map, in eval mode.
  algo->set_clustering_features(true);
  torch::Tensor features;
  try {
    features = context.extract_features(options_.extract_dataloader);
  } catch (...) {
    algo->set_clustering_features(false);
    throw;
  }
  algo->set_clustering_features(false);
  // Rows are samples 0..n-1 of the training set (the extract loader lists it in order, with
  // the training loader's `indices`); the training set before `indices` may be longer.
  const int64_t n = features.size(0);
  if (n > context.train_dataset().size())
    throw ValueError(options_.extract_dataloader.path() + ": extracted " + std::to_string(n) +
                     " features for a training set of " +
                     std::to_string(context.train_dataset().size()) +
                     " samples (expected the training set, unshuffled, no padding)");
  torch::Tensor labels = torch::zeros({n}, torch::kInt64);
  if (context.rank() == 0) {
    const uint64_t seed = options_.seed ? uint64_t(*options_.seed) : context.seed();
    const torch::Tensor x = clustering::preprocess_features(features, pca_dim_);
    const auto result = clustering::kmeans(x, k_, seed * 1000003ULL + uint64_t(context.epoch()));
    labels = result.labels;
    const torch::Tensor h = clustering::cluster_sizes(labels, k_);
    char line[256];
    std::snprintf(line, sizeof line,
                  "DeepClusterHook (epoch %lld): k-means of %lld samples into %lld clusters, "
                  "loss %.4f; empty_num: %lld\tmin_cluster: %lld\tmax_cluster: %lld",
                  (long long)context.epoch(), (long long)n, (long long)k_, result.loss,
                  (long long)(h == 0).sum().item<int64_t>(), (long long)h.min().item<int64_t>(),
                  (long long)h.max().item<int64_t>());
    context.log(line);
  }
  if (context.world_size() > 1) dist().broadcast(labels, 0);

  algo->assign_labels(labels);
  const auto* ds = dynamic_cast<const DeepClusterImageNet*>(&context.train_dataset());
  if (ds && ds->size() == n) ds->assign_labels(labels);
  if (options_.unif_sampling) {
    auto* sampler = dynamic_cast<DeepClusterSampler*>(&context.train_sampler());
    if (!sampler)
      throw ValueError("DeepClusterHook: unif_sampling needs train_dataloader.sampler of type "
                       "DeepClusterSampler");
    sampler->set_uniform_indices(labels, k_, context.epoch());
  }
  if (options_.reweight) {
    torch::NoGradGuard no_grad;
    torch::Tensor w = algo->loss_weight();
    w.copy_(clustering::class_weights(labels, algo->num_classes(), options_.reweight_pow));
  }
  algo->reinit_head();
  if (context.world_size() > 1) {
    torch::NoGradGuard no_grad;
    for (auto& p : model.named_parameters(true))
      if (p.key().rfind("head.", 0) == 0) dist().broadcast(p.value(), 0);
  }
  if (options_.init_memory) algo->init_memory(features, labels);
  return labels;
}

} // namespace selfsup::plugins::deepcluster
