#include "simple_memory.h"

#include <torch/torch.h>

#include <selfsup/dist.h>

namespace selfsup::plugins::npid {

namespace {
/// Rows divided by their L2 norm (torch.nn.functional.normalize: eps 1e-12).
torch::Tensor l2_rows(const torch::Tensor& x) {
  return x / x.norm(2, 1, true).clamp_min(1e-12);
}
} // namespace

OptionTable<SimpleMemoryOptions> SimpleMemoryOptions::table() {
  using O = SimpleMemoryOptions;
  using namespace selfsup::check;
  return OptionTable<O>("memory bank of L2-normalised features, one row per dataset sample, "
                        "updated with momentum, as MMSelfSup's SimpleMemory (NPID)",
                        O())
      .required("length", &O::length_,
                "rows: at least the training dataset's size (sample_idx indexes the rows)", gt(0))
      .required("feat_dim", &O::feat_dim_, "feature dimension (the neck's out_channels)", gt(0))
      .required("momentum", &O::momentum_, "weight of the new feature in an update (0.5 upstream)",
                in(0, 1));
}

SimpleMemory::SimpleMemory(const SimpleMemoryOptions& options_) : options(options_) {
  feature_bank_ = register_buffer("feature_bank",
                                  l2_rows(torch::randn({options.length(), options.feat_dim()})));
}

void SimpleMemory::update(const torch::Tensor& idx, const torch::Tensor& feature) {
  torch::NoGradGuard no_grad;
  TORCH_CHECK(feature.dim() == 2 && feature.size(1) == options.feat_dim(),
              "SimpleMemory.update: expected features [N, ", options.feat_dim(), "], got ",
              feature.sizes());
  TORCH_CHECK(idx.dim() == 1 && idx.size(0) == feature.size(0), "SimpleMemory.update: expected ",
              feature.size(0), " indices, got ", idx.sizes());
  auto all_idx = torch::cat(dist().all_gather(idx.to(torch::kLong)), 0).to(feature_bank_.device());
  auto all_feat = torch::cat(dist().all_gather(l2_rows(feature.detach())), 0)
                      .to(feature_bank_.device(), feature_bank_.scalar_type());
  if (all_idx.numel() > 0) {
    const auto lo = all_idx.min().item<int64_t>(), hi = all_idx.max().item<int64_t>();
    TORCH_CHECK(lo >= 0 && hi < options.length(), "SimpleMemory.update: sample index ",
                lo < 0 ? lo : hi, " outside the bank's ", options.length(),
                " rows (memory_bank.length must cover the dataset)");
  }
  const double m = options.momentum();
  auto blended = (1 - m) * feature_bank_.index_select(0, all_idx) + m * all_feat;
  feature_bank_.index_copy_(0, all_idx, l2_rows(blended));
}

torch::Tensor SimpleMemory::draw(int64_t n) const {
  return torch::randint(options.length(), {n},
                        torch::TensorOptions().dtype(torch::kLong).device(feature_bank_.device()));
}

void SimpleMemory::set_feature_bank(const torch::Tensor& bank) {
  TORCH_CHECK(bank.sizes() == feature_bank_.sizes(), "SimpleMemory: expected a bank of shape ",
              feature_bank_.sizes(), ", got ", bank.sizes());
  torch::NoGradGuard no_grad;
  feature_bank_.copy_(bank);
}

void SimpleMemory::pretty_print(std::ostream& stream) const {
  stream << "selfsup::plugins::npid::SimpleMemory(length=" << options.length()
         << ", feat_dim=" << options.feat_dim() << ", momentum=" << options.momentum() << ")";
}

} // namespace selfsup::plugins::npid
