#include <selfsup/core/knn_eval.h>

#include <torch/torch.h>

#include <selfsup/core/data.h>
#include <selfsup/errors.h>
#include <selfsup/interfaces/algorithm.h>

namespace selfsup::core {

torch::Tensor extract_features(Algorithm& model, DataLoader& loader, torch::Tensor& labels,
                               torch::Device device) {
  torch::NoGradGuard no_grad;
  const bool was_training = model.is_training();
  model.eval();
  std::vector<torch::Tensor> feats, labs;
  // Feed channels-last inputs to a model whose conv weights are channels-last.
  bool channels_last = false;
  for (const auto& p : model.parameters())
    if (p.dim() == 4) {
      channels_last = p.is_contiguous(torch::MemoryFormat::ChannelsLast) && !p.is_contiguous();
      break;
    }
  loader.start_epoch(0);
  try {
    while (auto batch = loader.next()) {
      std::vector<torch::Tensor> views;
      for (auto& v : batch->views) views.push_back(v.to(device));
      DataSamples samples = to_data_samples(*batch, device);
      auto inputs = model.preprocess(views, samples);
      if (channels_last)
        for (auto& x : inputs)
          if (x.dim() == 4) x = x.contiguous(torch::MemoryFormat::ChannelsLast);
      // The algorithm's own features (extract_feat through forward's tensor mode).
      auto outs = model.forward(inputs, samples, ForwardMode::Tensor).tensors;
      if (outs.empty()) throw ValueError("kNN: the algorithm's extract_feat returned nothing");
      auto f = outs.back();
      if (f.dim() == 4) f = f.mean({2, 3});
      feats.push_back(
          torch::nn::functional::normalize(f.reshape({f.size(0), -1}).to(torch::kFloat32),
                                           torch::nn::functional::NormalizeFuncOptions().dim(1))
              .cpu());
      labs.push_back(batch->gt_label.cpu());
    }
  } catch (...) {
    model.train(was_training);
    throw;
  }
  model.train(was_training);
  if (feats.empty()) throw ValueError("kNN: the loader produced no samples");
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
