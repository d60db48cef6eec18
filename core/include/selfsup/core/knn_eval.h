#pragma once
// Weighted kNN evaluation on global-pooled backbone features (MMSelfSup's knn_eval):
// L2-normalised features, cosine similarity, the top-k neighbours vote with exp(sim / T).
#include <cstdint>

#include <torch/types.h>

#include <selfsup/core/export.h>

namespace selfsup {
class Algorithm;
}

namespace selfsup::core {

class DataLoader;

struct KnnResult {
  double top1 = 0; // percent
  double top5 = 0; // percent
  int64_t num_bank = 0;
  int64_t num_queries = 0;
};

/// L2-normalised features of every sample of one loader epoch: the last tensor of the
/// algorithm's extract_feat (forward in tensor mode), global-average-pooled when it is a map
/// (batched, no autograd, eval mode; training mode restored). Labels go to `labels`.
SELFSUP_CORE_API torch::Tensor extract_features(Algorithm& model, DataLoader& loader,
                                                torch::Tensor& labels, torch::Device device);

/// Classifies each query by its k nearest bank features (cosine); class score is the sum of
/// exp(sim / temperature) over the neighbours of that class. Queries run in chunks.
SELFSUP_CORE_API KnnResult knn_classify(const torch::Tensor& bank, const torch::Tensor& bank_labels,
                                        const torch::Tensor& queries,
                                        const torch::Tensor& query_labels, int64_t k,
                                        double temperature, int64_t num_classes = -1);

} // namespace selfsup::core
