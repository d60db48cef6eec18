#include "odc.h"

#include <string>

#include <torch/torch.h>

#include <selfsup/errors.h>
#include <selfsup/interfaces/data.h>
#include <selfsup/interfaces/training.h>
#include <selfsup/registry.h>

#include "clustering.h"

namespace selfsup::plugins::odc {

Schema ODC::schema() {
  return BaseModel::base_schema("ODC: a ClsHead trained on labels kept and re-assigned online in "
                                "an ODCMemory, as MMSelfSup's ODC")
      .required("memory_bank", ArgType::Dict, "the ODCMemory dict")
      .component("memory_bank", "memory");
}

ODC::ODC(const Config& cfg) : ODC(cfg, clustering::per_sample_head_loss(cfg, "ODC")) {}

ODC::ODC(const Config& cfg, const Config& derived)
    : BaseModel(derived), head_cfg_(derived["head"]) {
  if (!neck_) cfg.fail_key("neck", "expected a neck dict (ODCNeck upstream)");
  memory_bank_ = std::dynamic_pointer_cast<ODCMemory>(build<Memory>(derived["memory_bank"]));
  if (!memory_bank_) cfg["memory_bank"].fail_key("type", "expected an ODCMemory");
  register_module("memory_bank", memory_bank_);
  num_classes_ = clustering::head_num_classes(*head_, cfg.path_of("head"));
  if (memory_bank_->options.num_classes != num_classes_)
    cfg["memory_bank"].fail_key("num_classes",
                                "expected the head's num_classes " + std::to_string(num_classes_) +
                                    ", got " + std::to_string(memory_bank_->options.num_classes));
  loss_weight_ = register_buffer(
      "loss_weight", torch::full({num_classes_}, 1.0 / double(num_classes_), torch::kFloat32));
}

std::vector<torch::Tensor> ODC::extract_feat(const std::vector<torch::Tensor>& inputs) {
  auto x = BaseModel::extract_feat(inputs);
  if (clustering_features_) return neck_->forward({x.back()});
  return x;
}

LossMap ODC::loss(const std::vector<torch::Tensor>& inputs, const DataSamples& samples) {
  TORCH_CHECK(samples.sample_idx.defined(), "ODC: the batch has no sample_idx");
  const torch::Tensor idx = samples.sample_idx.to(torch::kCPU, torch::kInt64);
  TORCH_CHECK(idx.numel() == 0 || (idx.min().item<int64_t>() >= 0 &&
                                   idx.max().item<int64_t>() < memory_bank_->options.length),
              "ODC: sample_idx outside the memory bank of ", memory_bank_->options.length, " rows");
  if (!memory_bank_->initialized())
    throw ValueError("ODC: the memory bank is not initialised; add a DeepClusterHook with "
                     "init_memory=true and initial=true to custom_hooks");
  const auto feature = neck_->forward(BaseModel::extract_feat(inputs));
  const torch::Tensor labels =
      memory_bank_->label_bank.index_select(0, idx.to(memory_bank_->label_bank.device()))
          .to(feature.at(0).device());
  const torch::Tensor per_sample = head_->loss(feature, labels);
  LossMap out{{"loss", clustering::weighted_mean(per_sample, labels, loss_weight_)}};
  out["change_ratio"] = memory_bank_->update_samples_memory(idx, feature[0].detach());
  return out;
}

std::vector<torch::Tensor> ODC::predict(const std::vector<torch::Tensor>& inputs,
                                        const DataSamples&) {
  return head_->predict(neck_->forward(BaseModel::extract_feat(inputs)));
}

void ODC::on_run_event(RunEvent event, RunnerContext& context) {
  if (event != RunEvent::BeforeRun) return;
  const int64_t n = context.train_dataset().size();
  if (memory_bank_->options.length < n)
    throw ConfigError(
        "model.memory_bank.length: the memory has " + std::to_string(memory_bank_->options.length) +
        " rows but the training dataset has " + std::to_string(n) +
        " samples (sample_idx indexes the rows): set it to at least " + std::to_string(n));
}

void ODC::assign_labels(const torch::Tensor& labels) {
  TORCH_CHECK(labels.dim() == 1 && labels.size(0) <= memory_bank_->options.length,
              "ODC: expected at most ", memory_bank_->options.length, " labels, got ",
              labels.sizes());
}

void ODC::init_memory(const torch::Tensor& features, const torch::Tensor& labels) {
  memory_bank_->init_memory(features, labels);
}

void ODC::reinit_head() {
  clustering::reinit_head(*head_, head_cfg_);
}

void ODC::pretty_print(std::ostream& stream) const {
  stream << "selfsup::plugins::odc::ODC(num_classes=" << num_classes_ << ")";
}

} // namespace selfsup::plugins::odc
