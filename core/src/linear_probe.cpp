#include <selfsup/core/linear_probe.h>

#include <algorithm>
#include <cmath>

#include <torch/torch.h>

#include <selfsup/errors.h>

namespace selfsup::core {

namespace {

void check_pair(const torch::Tensor& f, const torch::Tensor& l, const char* which) {
  if (!f.defined() || f.dim() != 2)
    throw ValueError(std::string("linear probe: ") + which +
                     " features must be a [N, D] matrix, got " +
                     (f.defined() ? std::to_string(f.dim()) + " dims" : "none"));
  if (!l.defined() || l.dim() != 1 || l.size(0) != f.size(0))
    throw ValueError(std::string("linear probe: ") + which + " labels must be [" +
                     std::to_string(f.size(0)) + "], one per feature row");
  if (f.size(0) == 0) throw ValueError(std::string("linear probe: no ") + which + " samples");
  if ((l < 0).any().item<bool>())
    throw ValueError(std::string("linear probe: every ") + which +
                     " sample needs a class label (gt_label >= 0)");
}

// Top-1 and top-k hits of `logits` against `labels`.
std::pair<int64_t, int64_t> hits(const torch::Tensor& logits, const torch::Tensor& labels,
                                 int64_t k) {
  auto pred = std::get<1>(logits.topk(k, 1));
  auto hit = pred.eq(labels.view({-1, 1}));
  return {hit.slice(1, 0, 1).sum().item<int64_t>(), hit.sum().item<int64_t>()};
}

} // namespace

LinearProbeResult linear_probe(const torch::Tensor& train_features,
                               const torch::Tensor& train_labels,
                               const torch::Tensor& test_features, const torch::Tensor& test_labels,
                               const LinearProbeOptions& o, int64_t num_classes,
                               const LinearProbeProgress& progress) {
  check_pair(train_features, train_labels, "training");
  check_pair(test_features, test_labels, "test");
  if (train_features.size(1) != test_features.size(1))
    throw ValueError("linear probe: training features have " +
                     std::to_string(train_features.size(1)) + " dims, test features " +
                     std::to_string(test_features.size(1)));
  if (o.epochs <= 0 || o.batch_size <= 0 || !(o.base_lr > 0) || o.momentum < 0 ||
      o.weight_decay < 0)
    throw ValueError("linear probe: epochs and batch size must be > 0, lr > 0, momentum and "
                     "weight decay >= 0");
  const int64_t max_label =
      std::max(train_labels.max().item<int64_t>(), test_labels.max().item<int64_t>());
  if (num_classes <= 0) {
    num_classes = max_label + 1;
  } else if (max_label >= num_classes) {
    throw ValueError("linear probe: label " + std::to_string(max_label) + " is not below " +
                     std::to_string(num_classes) + " classes");
  }

  torch::NoGradGuard outer_no_grad;
  auto x_train = train_features.detach().to(torch::kCPU, torch::kFloat32).contiguous();
  auto x_test = test_features.detach().to(torch::kCPU, torch::kFloat32).contiguous();
  const auto y_train = train_labels.to(torch::kCPU, torch::kInt64);
  const auto y_test = test_labels.to(torch::kCPU, torch::kInt64);
  if (o.standardize) {
    // BatchNorm1d(affine=False) in eval mode with the training set's statistics (eps 1e-5).
    const auto mean = x_train.mean(0, true);
    const auto inv_std = (x_train.var(0, /*unbiased=*/false, true) + 1e-5).rsqrt();
    x_train = (x_train - mean) * inv_std;
    x_test = (x_test - mean) * inv_std;
  }

  LinearProbeResult r;
  r.num_train = x_train.size(0);
  r.num_test = x_test.size(0);
  r.dim = x_train.size(1);
  r.num_classes = num_classes;
  r.epochs = o.epochs;
  r.batch_size = std::min(o.batch_size, r.num_train);
  r.lr = o.base_lr * double(r.batch_size) / 256.0;
  const int64_t per_epoch = (r.num_train + r.batch_size - 1) / r.batch_size;
  r.iters = per_epoch * o.epochs;

  // A private generator: the probe neither reads nor disturbs the global RNG.
  auto gen = at::make_generator<at::CPUGeneratorImpl>(o.seed);
  auto fc = torch::nn::Linear(r.dim, num_classes);
  fc->weight.normal_(0.0, 0.01, gen);
  fc->bias.zero_();
  torch::optim::SGD sgd(
      fc->parameters(),
      torch::optim::SGDOptions(r.lr).momentum(o.momentum).weight_decay(o.weight_decay));
  int64_t it = 0;
  for (int64_t epoch = 0; epoch < o.epochs; ++epoch) {
    const auto order = torch::randperm(r.num_train, gen, torch::kLong);
    double loss_sum = 0;
    for (int64_t s = 0; s < r.num_train; s += r.batch_size, ++it) {
      // Cosine annealing to 0 over all iterations (mmengine's CosineAnnealingLR, eta_min 0,
      // converted to iterations).
      const double lr = 0.5 * r.lr * (1.0 + std::cos(M_PI * double(it) / double(r.iters)));
      for (auto& g : sgd.param_groups()) static_cast<torch::optim::SGDOptions&>(g.options()).lr(lr);
      const auto idx = order.slice(0, s, std::min(r.num_train, s + r.batch_size));
      const auto xb = x_train.index_select(0, idx);
      const auto yb = y_train.index_select(0, idx);
      torch::AutoGradMode grad(true);
      sgd.zero_grad();
      auto loss = torch::nn::functional::cross_entropy(fc->forward(xb), yb);
      loss.backward();
      sgd.step();
      loss_sum += loss.item<double>() * double(idx.size(0));
    }
    r.epoch_loss.push_back(loss_sum / double(r.num_train));
    if (progress) progress(epoch + 1, r.epoch_loss.back());
  }

  const int64_t k = std::min<int64_t>(5, num_classes);
  const int64_t chunk = 4096;
  int64_t c1 = 0, c5 = 0, t1 = 0;
  for (int64_t s = 0; s < r.num_test; s += chunk) {
    const auto e = std::min(r.num_test, s + chunk);
    auto [a, b] = hits(fc->forward(x_test.slice(0, s, e)), y_test.slice(0, s, e), k);
    c1 += a;
    c5 += b;
  }
  for (int64_t s = 0; s < r.num_train; s += chunk) {
    const auto e = std::min(r.num_train, s + chunk);
    t1 += hits(fc->forward(x_train.slice(0, s, e)), y_train.slice(0, s, e), 1).first;
  }
  r.top1 = 100.0 * double(c1) / double(r.num_test);
  r.top5 = 100.0 * double(c5) / double(r.num_test);
  r.train_top1 = 100.0 * double(t1) / double(r.num_train);
  return r;
}

} // namespace selfsup::core
