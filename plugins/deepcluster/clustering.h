#pragma once
// The clustering toolkit of DeepCluster and ODC (MMSelfSup's utils/clustering.py and the
// sampler/re-weighting arithmetic of its hooks), on Faiss as upstream: PCA whitening, k-means,
// class weights, class-balanced indices. A static library linked into both plugins (the code
// is shared, not the plugin: each .so carries its own copy).
#include <cstdint>
#include <vector>

#include <torch/types.h>

#include <selfsup/config.h>
#include <selfsup/interfaces/modules.h>

namespace selfsup::plugins::clustering {

/// PCA to `dim` dimensions with whitening (Faiss PCAMatrix, eigen_power -0.5): the output
/// has (about) identity covariance over the rows of `x` [N, D] float.
[[nodiscard]] torch::Tensor pca_whiten(const torch::Tensor& x, int64_t dim);

/// MMSelfSup's preprocess_features: PCA whitening to `pca_dim` (-1: none), NaNs after PCA set
/// to 0 when at most 0.1 % (else ValueError), then rows divided by (L2 norm + 1e-10).
[[nodiscard]] torch::Tensor preprocess_features(const torch::Tensor& x, int64_t pca_dim);

struct KmeansResult {
  torch::Tensor labels;    // [N] int64: the nearest centroid of each row
  torch::Tensor centroids; // [k, D] float
  double loss = 0;         // objective of the last iteration
};

/// Faiss k-means (Clustering with an exact L2 index, `niter` iterations, no sub-sampling as
/// upstream's max_points_per_centroid = 1e7); Faiss re-seeds empty clusters by splitting large
/// ones during training, as upstream. Deterministic for a seed.
[[nodiscard]] KmeansResult kmeans(const torch::Tensor& x, int64_t k, uint64_t seed,
                                  int64_t niter = 20);

/// Re-weighting of DeepClusterHook/ODCHook: w_c = (n_c + 1e-10)^-pow, normalised to sum 1.
[[nodiscard]] torch::Tensor class_weights(const torch::Tensor& labels, int64_t num_classes,
                                          double pow);

/// DeepClusterSampler.set_uniform_indices: `N / k + 1` draws from each non-empty cluster (with
/// replacement when it has at most that many samples), shuffled, cut to N. `seed` plays
/// upstream's np.random.seed(epoch).
[[nodiscard]] std::vector<int64_t> uniform_indices(const torch::Tensor& labels, int64_t num_classes,
                                                   uint64_t seed);

/// Histogram of labels [N] over `num_classes` (int64).
[[nodiscard]] torch::Tensor cluster_sizes(const torch::Tensor& labels, int64_t num_classes);

// ---- the classifier head of DeepCluster and ODC ----

/// `model_cfg` with its head's loss made per-sample (reduction 'none'; default loss
/// CrossEntropyLoss), so the algorithm weights and reduces it with its loss_weight. A loss that
/// sets `reduction` or `class_weight` itself is a ConfigError naming it (they are the
/// algorithm's).
[[nodiscard]] Config per_sample_head_loss(const Config& model_cfg, const std::string& algorithm);

/// The class-weighted mean of per-sample losses: sum_i w[y_i] l_i / sum_i w[y_i] (PyTorch's
/// CrossEntropyLoss(weight=w) reduction, as MMSelfSup 0.x and the papers; docs/algorithms.md).
[[nodiscard]] torch::Tensor weighted_mean(const torch::Tensor& per_sample,
                                          const torch::Tensor& labels, const torch::Tensor& weight);

/// Classes of a ClsHead (rows of its `fc_cls.weight`); ValueError naming `who` otherwise.
[[nodiscard]] int64_t head_num_classes(const torch::nn::Module& head, const std::string& who);

/// Draws the head's parameters and buffers afresh: a new head is built from `head_cfg` (its
/// own initialisation) and copied into `head` in place, so optimizer references stay valid.
void reinit_head(Head& head, const Config& head_cfg);

} // namespace selfsup::plugins::clustering
