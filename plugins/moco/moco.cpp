#include "moco.h"

#include <string>

#include <torch/torch.h>

#include <selfsup/bricks/ema.h>
#include <selfsup/bricks/queue.h>
#include <selfsup/bricks/shuffle_bn.h>
#include <selfsup/dist.h>
#include <selfsup/errors.h>
#include <selfsup/interfaces/training.h>
#include <selfsup/registry.h>

namespace selfsup::plugins::moco {

namespace {

/// F.normalize(x, dim=1): x / max(||x||, 1e-12).
torch::Tensor l2_normalize(const torch::Tensor& x) {
  return x / x.norm(2, 1, true).clamp_min(1e-12);
}

} // namespace

Schema MoCo::schema() {
  using namespace selfsup::check;
  return BaseModel::base_schema(
             "MoCo v1/v2: queries against their momentum-encoded keys (positive) and a queue "
             "of past keys (negatives), through ContrastiveHead; shuffle-BN around the key "
             "encoder.")
      .optional("queue_len", ArgType::Int, 65536, "number of negative keys kept in the queue",
                {gt(0)})
      .optional("feat_dim", ArgType::Int, 128, "dimension of the keys (the neck's output)", {gt(0)})
      .optional("momentum", ArgType::Float, 0.999,
                "EMA weight kept by the key encoder at each update", {in(0.0, 1.0)});
}

MoCo::MoCo(const Config& cfg)
    : BaseModel(cfg), queue_len_(cfg.get<int64_t>("queue_len")),
      feat_dim_(cfg.get<int64_t>("feat_dim")), momentum_(cfg.get<double>("momentum")) {
  if (!neck_) cfg.fail_key("neck", "MoCo needs a neck (the projection to feat_dim)");
  if (!head_) cfg.fail_key("head", "MoCo needs a head (ContrastiveHead)");

  // The query encoder seen with the key encoder's names ("0" backbone, "1" neck), not
  // registered here (its modules are already this model's `backbone` and `neck`).
  query_view_ = std::make_shared<torch::nn::Module>("MoCoQueryEncoder");
  query_view_->register_module("0", backbone_);
  query_view_->register_module("1", neck_);

  // The key encoder: a second instance from the same config, a copy of the query encoder,
  // never optimised. MMEngine's averaged model holds it as `module`.
  backbone_k_ = build<Backbone>(cfg["backbone"]);
  neck_k_ = build<Neck>(cfg["neck"]);
  key_encoder_ = std::make_shared<torch::nn::Module>("MoCoKeyEncoder");
  key_encoder_->register_module("0", backbone_k_);
  key_encoder_->register_module("1", neck_k_);
  encoder_k_ = std::make_shared<torch::nn::Module>("ExponentialMovingAverage");
  encoder_k_->register_module("module", key_encoder_);
  register_module("encoder_k", encoder_k_);
  bricks::copy_module_state(*key_encoder_, *query_view_);
  bricks::freeze(*encoder_k_);

  queue_ = register_buffer("queue", bricks::make_key_queue(feat_dim_, queue_len_));
  queue_ptr_ = register_buffer("queue_ptr", torch::zeros({1}, torch::kLong));
}

LossMap MoCo::loss(const std::vector<torch::Tensor>& inputs, const DataSamples&) {
  TORCH_CHECK(inputs.size() == 2, "MoCo expects 2 views per image (query, key), got ",
              inputs.size());
  const auto& im_q = inputs[0];
  const auto& im_k = inputs[1];

  auto q = neck_->forward(backbone_->forward(im_q))[0];
  TORCH_CHECK(q.dim() == 2 && q.size(1) == feat_dim_, "MoCo: the neck gives ", q.sizes(),
              ", expected [N, feat_dim = ", feat_dim_, "]");
  q = l2_normalize(q);

  torch::Tensor k;
  {
    torch::NoGradGuard no_grad;
    // The key encoder follows the query encoder before the keys are computed, as upstream.
    const int64_t step = context() ? context()->iter() : 0;
    bricks::momentum_update(*key_encoder_, *query_view_, momentum_, step);
    auto [shuffled, idx_unshuffle] = bricks::batch_shuffle(im_k, "MoCo");
    k = l2_normalize(neck_k_->forward(backbone_k_->forward(shuffled))[0]);
    k = bricks::batch_unshuffle(k, idx_unshuffle, "MoCo");
  }

  auto l_pos = (q * k.to(q.scalar_type())).sum(1, true);                  // [N, 1]
  auto l_neg = torch::mm(q, queue_.detach().clone().to(q.scalar_type())); // [N, K]
  auto loss = head_->loss({l_pos, l_neg}, torch::Tensor());

  auto keys = bricks::concat_all_gather(k);
  bricks::enqueue_keys(queue_, queue_ptr_, keys);
  return {{"loss", loss}};
}

void MoCo::pretty_print(std::ostream& stream) const {
  stream << "selfsup::MoCo(queue_len=" << queue_len_ << ", feat_dim=" << feat_dim_
         << ", momentum=" << momentum_ << ")";
}

} // namespace selfsup::plugins::moco
