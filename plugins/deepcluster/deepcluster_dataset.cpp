#include "deepcluster_dataset.h"

#include <string>

#include <torch/torch.h>

#include <selfsup/errors.h>
#include <selfsup/registry.h>

namespace selfsup::plugins::deepcluster {

namespace {
constexpr const char* kImages = "mmcls.ImageNet";
}

DeepClusterImageNet::DeepClusterImageNet(std::shared_ptr<Dataset> images)
    : images_(std::move(images)) {}

std::shared_ptr<Dataset> DeepClusterImageNet::make(const Config& cfg) {
  Json j = cfg.json();
  j.set("type", kImages);
  return std::make_shared<DeepClusterImageNet>(build<Dataset>(cfg.derive(j, cfg.path())));
}

Schema DeepClusterImageNet::schema(const Registry& registry) {
  const std::string doc = "ImageNet (mmcls.ImageNet's keys) whose samples carry their cluster as "
                          "'clustering_label', as MMSelfSup's DeepClusterImageNet";
  Schema s(doc);
  if (const RegistryEntry* images = registry.find("dataset", kImages)) s.extend(images->schema);
  return s;
}

Sample DeepClusterImageNet::get(int64_t index) const {
  Sample s = images_->get(index);
  int64_t label = -1;
  {
    std::lock_guard<std::mutex> lock(mutex_);
    if (labels_.defined()) label = labels_.data_ptr<int64_t>()[index];
  }
  s.tensors["clustering_label"] = torch::tensor(label, torch::kInt64);
  return s;
}

void DeepClusterImageNet::assign_labels(const torch::Tensor& labels) const {
  if (labels.numel() != size())
    throw ValueError("DeepClusterImageNet: " + std::to_string(labels.numel()) +
                     " labels for a dataset of " + std::to_string(size()));
  torch::Tensor copy = labels.to(torch::kCPU, torch::kInt64).reshape(-1).contiguous().clone();
  std::lock_guard<std::mutex> lock(mutex_);
  labels_ = std::move(copy);
}

} // namespace selfsup::plugins::deepcluster
