#include "npid.h"

#include <torch/torch.h>

#include <selfsup/errors.h>
#include <selfsup/interfaces/data.h>
#include <selfsup/registry.h>

namespace selfsup::plugins::npid {

Schema NPID::schema() {
  return BaseModel::base_schema(
             "NPID: each image's normalised embedding against its own memory-bank row "
             "(positive) and neg_num uniformly drawn rows (negatives), through ContrastiveHead; "
             "the bank (SimpleMemory) is updated with the embeddings")
      .required("memory_bank", ArgType::Dict,
                "the memory bank (SimpleMemory; its length covers the training dataset)")
      .component("memory_bank", "memory")
      .optional("neg_num", ArgType::Int, 65536, "negatives drawn per image", {check::gt(0)})
      .optional("ensure_neg", ArgType::Bool, false,
                "redraw negatives equal to the image's own index (upstream's default false "
                "leaves a small chance of a positive among the negatives)");
}

NPID::NPID(const Config& cfg)
    : BaseModel(cfg), neg_num_(cfg.get<int64_t>("neg_num")),
      ensure_neg_(cfg.get<bool>("ensure_neg")) {
  if (!neck_) cfg.fail_key("neck", "NPID needs a neck (LinearNeck to the memory's feat_dim)");
  if (!head_) cfg.fail_key("head", "NPID needs a head (ContrastiveHead)");
  const Config mcfg = cfg["memory_bank"];
  memory_bank_ = std::dynamic_pointer_cast<SimpleMemory>(build<Memory>(mcfg));
  if (!memory_bank_)
    mcfg.fail("NPID needs a SimpleMemory (feature_bank rows and uniform negative sampling)");
  register_module("memory_bank", memory_bank_);
  length_path_ = mcfg.path_of("length");
  if (ensure_neg_ && memory_bank_->options.length() < 2)
    cfg.fail_key("ensure_neg", "needs a memory bank of at least 2 rows (got length " +
                                   std::to_string(memory_bank_->options.length()) + ")");
}

torch::Tensor NPID::draw_negatives(const torch::Tensor& idx) const {
  const int64_t bs = idx.size(0);
  auto neg = memory_bank_->draw(bs * neg_num_);
  if (!ensure_neg_) return neg;
  neg = neg.view({bs, neg_num_});
  const auto own = idx.to(neg.device()).view({-1, 1});
  while (true) {
    const auto wrong = neg.eq(own);
    const int64_t n = wrong.sum().item<int64_t>();
    if (n == 0) break;
    neg.masked_scatter_(wrong, memory_bank_->draw(n));
  }
  return neg.flatten();
}

LossMap NPID::loss(const std::vector<torch::Tensor>& inputs, const DataSamples& samples) {
  TORCH_CHECK(!inputs.empty(), "NPID: no input views");
  TORCH_CHECK(samples.sample_idx.defined() && samples.sample_idx.numel() == inputs[0].size(0),
              "NPID: expected one sample_idx per image (", inputs[0].size(0), "), got ",
              samples.sample_idx.defined() ? samples.sample_idx.numel() : 0);
  const auto idx = samples.sample_idx.to(inputs[0].device(), torch::kLong);
  return loss_with_negatives(inputs, idx, draw_negatives(idx));
}

LossMap NPID::loss_with_negatives(const std::vector<torch::Tensor>& inputs,
                                  const torch::Tensor& idx_in, const torch::Tensor& neg_idx) {
  TORCH_CHECK(!inputs.empty(), "NPID: no input views");
  auto feature = neck_->forward(backbone_->forward(inputs[0]))[0];
  feature = feature / feature.norm(2, 1, true).clamp_min(1e-12); // [B, C]
  const int64_t bs = feature.size(0), dim = feature.size(1);
  const auto& bank = memory_bank_->feature_bank();
  TORCH_CHECK(dim == bank.size(1), "NPID: the neck gives ", dim,
              " features but the memory bank stores ", bank.size(1), " (memory_bank.feat_dim)");
  TORCH_CHECK(neg_idx.numel() == bs * neg_num_, "NPID: expected ", bs * neg_num_,
              " negative indices, got ", neg_idx.numel());
  const auto idx = idx_in.to(bank.device(), torch::kLong);
  if (idx.numel() > 0) {
    const auto lo = idx.min().item<int64_t>(), hi = idx.max().item<int64_t>();
    if (lo < 0 || hi >= bank.size(0))
      throw ValueError("NPID: sample_idx " + std::to_string(lo < 0 ? lo : hi) +
                       " has no row in the memory bank of " + std::to_string(bank.size(0)) +
                       " rows; " + length_path_ + " must be at least the dataset size");
  }
  const auto pos_feat = bank.index_select(0, idx).to(feature.dtype());
  const auto neg_feat =
      bank.index_select(0, neg_idx.to(bank.device(), torch::kLong)).view({bs, neg_num_, dim});
  const auto pos = (pos_feat * feature).sum(1, true); // [B, 1]
  const auto neg =
      torch::bmm(neg_feat.to(feature.dtype()), feature.unsqueeze(2)).squeeze(2); // [B, K]
  LossMap losses{{"loss", head_->loss({pos, neg}, torch::Tensor())}};
  memory_bank_->update(idx, feature.detach());
  return losses;
}

void NPID::on_run_event(RunEvent event, RunnerContext& context) {
  if (event != RunEvent::BeforeRun) return;
  const int64_t n = context.train_dataset().size();
  if (memory_bank_->options.length() < n)
    throw ConfigError(
        length_path_ + ": the memory bank has " + std::to_string(memory_bank_->options.length()) +
        " rows but the training dataset has " + std::to_string(n) +
        " samples (sample_idx indexes the rows): set it to at least " + std::to_string(n));
}

void NPID::pretty_print(std::ostream& stream) const {
  stream << "selfsup::NPID(neg_num=" << neg_num_ << ", ensure_neg=" << ensure_neg_ << ")";
}

} // namespace selfsup::plugins::npid
