#include "deepcluster.h"

#include <torch/torch.h>

#include <selfsup/errors.h>

#include "clustering.h"

namespace selfsup::plugins::deepcluster {

Schema DeepCluster::schema() {
  return BaseModel::base_schema(
      "DeepCluster: a ClsHead trained on the k-means clusters of the backbone's features, "
      "re-computed every epoch by DeepClusterHook, as MMSelfSup's DeepCluster");
}

DeepCluster::DeepCluster(const Config& cfg)
    : DeepCluster(cfg, clustering::per_sample_head_loss(cfg, "DeepCluster")) {}

DeepCluster::DeepCluster(const Config& cfg, const Config& derived)
    : BaseModel(derived), head_cfg_(derived["head"]) {
  if (!neck_) cfg.fail_key("neck", "expected a neck dict (AvgPool2dNeck upstream)");
  num_classes_ = clustering::head_num_classes(*head_, cfg.path_of("head"));
  loss_weight_ = register_buffer(
      "loss_weight", torch::full({num_classes_}, 1.0 / double(num_classes_), torch::kFloat32));
}

std::vector<torch::Tensor> DeepCluster::extract_feat(const std::vector<torch::Tensor>& inputs) {
  auto x = BaseModel::extract_feat(inputs);
  if (clustering_features_) return neck_->forward({x.back()});
  return x;
}

void DeepCluster::assign_labels(const torch::Tensor& labels) {
  TORCH_CHECK(labels.dim() == 1, "DeepCluster: expected cluster labels [N], got ", labels.sizes());
  labels_ = labels.to(torch::kCPU, torch::kInt64).clone();
}

LossMap DeepCluster::loss(const std::vector<torch::Tensor>& inputs, const DataSamples& samples) {
  if (!labels_.defined() || labels_.numel() == 0)
    throw ValueError("DeepCluster: no cluster labels yet; add a DeepClusterHook (initial=true) to "
                     "custom_hooks");
  TORCH_CHECK(samples.sample_idx.defined(), "DeepCluster: the batch has no sample_idx");
  const torch::Tensor idx = samples.sample_idx.to(torch::kCPU, torch::kInt64);
  TORCH_CHECK(idx.numel() == 0 ||
                  (idx.min().item<int64_t>() >= 0 && idx.max().item<int64_t>() < labels_.numel()),
              "DeepCluster: sample_idx outside the ", labels_.numel(), " clustered samples");
  const torch::Tensor device_labels = labels_.index_select(0, idx).to(inputs.at(0).device());
  auto x = neck_->forward(BaseModel::extract_feat(inputs));
  const torch::Tensor per_sample = head_->loss(x, device_labels);
  return {{"loss", clustering::weighted_mean(per_sample, device_labels, loss_weight_)}};
}

std::vector<torch::Tensor> DeepCluster::predict(const std::vector<torch::Tensor>& inputs,
                                                const DataSamples&) {
  return head_->predict(neck_->forward(BaseModel::extract_feat(inputs)));
}

void DeepCluster::reinit_head() {
  clustering::reinit_head(*head_, head_cfg_);
}

void DeepCluster::pretty_print(std::ostream& stream) const {
  stream << "selfsup::plugins::deepcluster::DeepCluster(num_classes=" << num_classes_ << ")";
}

} // namespace selfsup::plugins::deepcluster
