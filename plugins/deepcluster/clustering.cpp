#include "clustering.h"

#include <algorithm>
#include <random>
#include <string>

#include <faiss/Clustering.h>
#include <faiss/IndexFlat.h>
#include <faiss/VectorTransform.h>
#include <torch/torch.h>

#include <selfsup/errors.h>
#include <selfsup/registry.h>

namespace selfsup::plugins::clustering {

namespace {
torch::Tensor as_float_rows(const torch::Tensor& x, const char* what) {
  TORCH_CHECK(x.dim() == 2 && x.size(0) > 0 && x.size(1) > 0, what,
              ": expected features [N, D] with N, D > 0, got ", x.sizes());
  return x.detach().to(torch::kCPU, torch::kFloat32).contiguous();
}
} // namespace

torch::Tensor pca_whiten(const torch::Tensor& x, int64_t dim) {
  const torch::Tensor in = as_float_rows(x, "PCA whitening");
  const int64_t n = in.size(0), d = in.size(1);
  if (dim <= 0 || dim > d)
    throw ValueError("PCA whitening: pca_dim must be in [1, " + std::to_string(d) + "] for " +
                     std::to_string(d) + "-d features, got " + std::to_string(dim));
  faiss::PCAMatrix pca(int(d), int(dim), -0.5f);
  pca.train(n, in.data_ptr<float>());
  torch::Tensor out = torch::empty({n, dim}, torch::kFloat32);
  pca.apply_noalloc(n, in.data_ptr<float>(), out.data_ptr<float>());
  return out;
}

torch::Tensor preprocess_features(const torch::Tensor& x, int64_t pca_dim) {
  torch::Tensor f = as_float_rows(x, "clustering");
  if (torch::isnan(f).any().item<bool>()) throw ValueError("clustering: NaN in the features");
  if (pca_dim != -1) {
    f = pca_whiten(f, pca_dim);
    const auto nan = torch::isnan(f);
    const double percent = nan.sum().item<double>() / double(f.numel()) * 100;
    if (percent > 0.1)
      throw ValueError("clustering: more than 0.1% NaN after PCA (" + std::to_string(percent) +
                       "%)");
    f.masked_fill_(nan, 0.0);
  }
  return f / (f.norm(2, 1, true) + 1e-10);
}

KmeansResult kmeans(const torch::Tensor& x, int64_t k, uint64_t seed, int64_t niter) {
  const torch::Tensor in = as_float_rows(x, "k-means");
  const int64_t n = in.size(0), d = in.size(1);
  if (k < 1 || k > n)
    throw ValueError("k-means: k must be in [1, " + std::to_string(n) + "] for " +
                     std::to_string(n) + " samples, got " + std::to_string(k));
  faiss::ClusteringParameters cp;
  cp.niter = int(niter);
  cp.seed = int(seed % 2147483647u);
  cp.max_points_per_centroid = 10000000;
  cp.verbose = false;
  faiss::Clustering clus(int(d), int(k), cp);
  faiss::IndexFlatL2 index(d);
  clus.train(n, in.data_ptr<float>(), index);
  std::vector<faiss::Index::idx_t> assign(static_cast<size_t>(n));
  std::vector<float> dist(static_cast<size_t>(n));
  index.search(n, in.data_ptr<float>(), 1, dist.data(), assign.data());
  KmeansResult r;
  r.labels = torch::empty({n}, torch::kInt64);
  auto* lab = r.labels.data_ptr<int64_t>();
  for (int64_t i = 0; i < n; ++i) lab[i] = int64_t(assign[size_t(i)]);
  r.centroids = torch::from_blob(clus.centroids.data(), {k, d}, torch::kFloat32).clone();
  if (!clus.iteration_stats.empty()) r.loss = clus.iteration_stats.back().obj;
  return r;
}

torch::Tensor cluster_sizes(const torch::Tensor& labels, int64_t num_classes) {
  const torch::Tensor l = labels.to(torch::kCPU, torch::kInt64).reshape(-1);
  if (l.numel() > 0 && (l.min().item<int64_t>() < 0 || l.max().item<int64_t>() >= num_classes))
    throw ValueError("clustering: labels outside [0, " + std::to_string(num_classes) + ")");
  return torch::bincount(l, {}, num_classes);
}

torch::Tensor class_weights(const torch::Tensor& labels, int64_t num_classes, double pow) {
  const torch::Tensor h = cluster_sizes(labels, num_classes).to(torch::kFloat32);
  const torch::Tensor inv = (1.0 / (h + 1e-10)).pow(pow);
  return inv / inv.sum();
}

std::vector<int64_t> uniform_indices(const torch::Tensor& labels, int64_t num_classes,
                                     uint64_t seed) {
  const torch::Tensor l = labels.to(torch::kCPU, torch::kInt64).contiguous();
  const int64_t n = l.numel();
  (void)cluster_sizes(l, num_classes); // range check
  std::vector<std::vector<int64_t>> members(static_cast<size_t>(num_classes));
  const auto* p = l.data_ptr<int64_t>();
  for (int64_t i = 0; i < n; ++i) members[size_t(p[i])].push_back(i);
  const int64_t per_label = n / num_classes + 1;
  std::mt19937_64 gen(seed);
  std::vector<int64_t> out;
  out.reserve(size_t(per_label * num_classes));
  for (const auto& m : members) {
    if (m.empty()) continue;
    const auto size = int64_t(m.size());
    if (size <= per_label) {
      // with replacement
      for (int64_t j = 0; j < per_label; ++j) out.push_back(m[size_t(gen() % uint64_t(size))]);
    } else {
      // without replacement: a partial Fisher-Yates shuffle
      std::vector<int64_t> pool = m;
      for (int64_t j = 0; j < per_label; ++j) {
        const auto r = j + int64_t(gen() % uint64_t(size - j));
        std::swap(pool[size_t(j)], pool[size_t(r)]);
        out.push_back(pool[size_t(j)]);
      }
    }
  }
  std::shuffle(out.begin(), out.end(), gen);
  if (int64_t(out.size()) > n) out.resize(size_t(n));
  return out;
}

Config per_sample_head_loss(const Config& model_cfg, const std::string& algorithm) {
  if (!model_cfg.has("head"))
    model_cfg.fail_key("head", "expected a ClsHead dict (" + algorithm + " trains a classifier)");
  const Config head = model_cfg["head"];
  if (!head.is_object()) head.fail("expected a head dict");
  Json loss = Json::object({{"type", "CrossEntropyLoss"}});
  if (head.has("loss")) {
    const Config l = head["loss"];
    if (!l.is_object()) l.fail("expected a loss dict");
    for (const char* key : {"reduction", "class_weight"})
      if (l.has(key))
        l.fail_key(key, std::string("leave it out: ") + algorithm +
                            " reduces the per-sample losses itself with its loss_weight");
    loss = l.json();
  }
  loss.set("reduction", "none");
  Json head_json = head.json();
  head_json.set("loss", loss);
  Json model = model_cfg.json();
  model.set("head", head_json);
  return model_cfg.derive(model, model_cfg.path());
}

torch::Tensor weighted_mean(const torch::Tensor& per_sample, const torch::Tensor& labels,
                            const torch::Tensor& weight) {
  TORCH_CHECK(per_sample.dim() == 1 && labels.dim() == 1 && per_sample.size(0) == labels.size(0),
              "class-weighted loss: expected per-sample losses [B] and labels [B], got ",
              per_sample.sizes(), " and ", labels.sizes());
  const torch::Tensor w = weight.to(per_sample.device(), per_sample.scalar_type())
                              .index_select(0, labels.to(torch::kLong));
  return (w * per_sample).sum() / w.sum();
}

int64_t head_num_classes(const torch::nn::Module& head, const std::string& who) {
  for (const auto& p : head.named_parameters(true))
    if (p.key() == "fc_cls.weight") return p.value().size(0);
  throw ValueError(who + ": expected a ClsHead (a head with an 'fc_cls' classifier)");
}

void reinit_head(Head& head, const Config& head_cfg) {
  const std::shared_ptr<Head> fresh = build<Head>(head_cfg);
  torch::NoGradGuard no_grad;
  const auto src_params = fresh->named_parameters(true);
  for (auto& p : head.named_parameters(true)) p.value().copy_(src_params[p.key()]);
  const auto src_buffers = fresh->named_buffers(true);
  for (auto& b : head.named_buffers(true)) b.value().copy_(src_buffers[b.key()]);
}

} // namespace selfsup::plugins::clustering
