#include "densecl.h"

#include <torch/torch.h>

#include <selfsup/bricks/ema.h>
#include <selfsup/bricks/queue.h>
#include <selfsup/bricks/shuffle_bn.h>
#include <selfsup/dist.h>
#include <selfsup/errors.h>
#include <selfsup/registry.h>

namespace selfsup::plugins::densecl {

namespace {

/// F.normalize(x, dim=1).
torch::Tensor normalize_dim1(const torch::Tensor& x) {
  return x / x.norm(2, 1, true).clamp_min(1e-12);
}

} // namespace

Schema DenseCL::schema() {
  using namespace selfsup::check;
  return BaseModel::base_schema(
             "DenseCL: MoCo v2's global contrast plus a dense contrast between positions "
             "matched by backbone-feature cosine argmax, with two key queues")
      .optional("queue_len", ArgType::Int, 65536, "number of negative keys kept in each queue",
                {gt(0)})
      .optional("feat_dim", ArgType::Int, 128, "dimension of the keys (the neck's out_channels)",
                {gt(0)})
      .optional("momentum", ArgType::Float, 0.999,
                "EMA weight kept by the key encoder at each update", {in(0.0, 1.0)})
      .optional("loss_lambda", ArgType::Float, 0.5,
                "weight of the dense loss (the global one gets 1 - loss_lambda)", {in(0.0, 1.0)});
}

DenseCL::DenseCL(const Config& cfg)
    : BaseModel(cfg), queue_len_(cfg.get<int64_t>("queue_len")),
      feat_dim_(cfg.get<int64_t>("feat_dim")), momentum_(cfg.get<double>("momentum")),
      loss_lambda_(cfg.get<double>("loss_lambda")) {
  if (!neck_) cfg.fail_key("neck", "DenseCL needs a neck (DenseCLNeck)");
  if (!head_) cfg.fail_key("head", "DenseCL needs a head (ContrastiveHead)");

  // The online encoder under the key encoder's names, for the EMA (not registered: its
  // modules are this model's `backbone` and `neck`).
  query_view_ = std::make_shared<torch::nn::Module>("DenseCLQueryEncoder");
  query_view_->register_module("0", backbone_);
  query_view_->register_module("1", neck_);
  // The key encoder: a second instance of the same config, starting as a copy, never
  // optimised; `encoder_k.module` as MMEngine's ExponentialMovingAverage holds it.
  backbone_k_ = build<Backbone>(cfg["backbone"]);
  neck_k_ = build<Neck>(cfg["neck"]);
  key_encoder_ = std::make_shared<torch::nn::Module>("DenseCLKeyEncoder");
  key_encoder_->register_module("0", backbone_k_);
  key_encoder_->register_module("1", neck_k_);
  encoder_k_ = std::make_shared<torch::nn::Module>("ExponentialMovingAverage");
  encoder_k_->register_module("module", key_encoder_);
  register_module("encoder_k", encoder_k_);
  bricks::copy_module_state(*key_encoder_, *query_view_);
  bricks::freeze(*encoder_k_);

  queue_ = register_buffer("queue", bricks::make_key_queue(feat_dim_, queue_len_));
  queue_ptr_ = register_buffer("queue_ptr", torch::zeros({1}, torch::kLong));
  queue2_ = register_buffer("queue2", bricks::make_key_queue(feat_dim_, queue_len_));
  queue2_ptr_ = register_buffer("queue2_ptr", torch::zeros({1}, torch::kLong));
}

namespace {

struct Encoded {
  torch::Tensor global, grid, pooled, backbone_map; // [N,C], [N,C,S2], [N,C], [N,Cb,S2b]
};

Encoded encode(Backbone& backbone, Neck& neck, const torch::Tensor& x, int64_t feat_dim) {
  auto maps = backbone.forward(x);
  auto out = neck.forward(maps);
  TORCH_CHECK(out.size() == 3,
              "DenseCL: the neck must return {global, dense grid, pooled "
              "dense} (DenseCLNeck), got ",
              out.size(), " tensors");
  TORCH_CHECK(out[0].dim() == 2 && out[0].size(1) == feat_dim && out[1].dim() == 3 &&
                  out[1].size(1) == feat_dim,
              "DenseCL: the neck gives ", out[0].sizes(), " and ", out[1].sizes(),
              ", expected [N, feat_dim = ", feat_dim, "] and [N, feat_dim, S^2]");
  TORCH_CHECK(maps.size() == 1 && maps[0].dim() == 4,
              "DenseCL: expected one [N, C, H, W] backbone map, got ", maps.size(), " outputs");
  auto b = maps[0].reshape({maps[0].size(0), maps[0].size(1), -1});
  return {normalize_dim1(out[0]), normalize_dim1(out[1]), normalize_dim1(out[2]),
          normalize_dim1(b)};
}

} // namespace

LossMap DenseCL::loss(const std::vector<torch::Tensor>& inputs, const DataSamples&) {
  TORCH_CHECK(inputs.size() == 2, "DenseCL expects 2 views per image (query, key), got ",
              inputs.size());
  const Encoded q = encode(*backbone_, *neck_, inputs[0], feat_dim_);

  Encoded k;
  {
    torch::NoGradGuard no_grad;
    // The key encoder follows the online one before the keys are computed, as upstream.
    const int64_t step = context() ? context()->iter() : 0;
    bricks::momentum_update(*key_encoder_, *query_view_, momentum_, step);
    auto [shuffled, inverse] = bricks::batch_shuffle(inputs[1], "DenseCL");
    Encoded ks = encode(*backbone_k_, *neck_k_, shuffled, feat_dim_);
    auto unshuffle = [&](const torch::Tensor& t) {
      return bricks::batch_unshuffle(t, inverse, "DenseCL");
    };
    k = {unshuffle(ks.global), unshuffle(ks.grid), unshuffle(ks.pooled),
         unshuffle(ks.backbone_map)};
  }
  const auto dtype = q.global.scalar_type();

  // Global: MoCo v2.
  auto l_pos = (q.global * k.global.to(dtype)).sum(1, true);           // [N, 1]
  auto l_neg = torch::mm(q.global, queue_.detach().clone().to(dtype)); // [N, K]

  // Dense: position i of the query matched to the key position of most similar backbone
  // feature (the first on ties, as torch.max).
  auto sim = torch::bmm(q.backbone_map.transpose(1, 2), k.backbone_map.to(dtype)); // [N,S,S]
  auto match = std::get<1>(sim.max(2));                                            // [N, S]
  auto k_matched = k.grid.to(dtype).gather(2, match.unsqueeze(1).expand({-1, k.grid.size(1), -1}));
  auto l_pos_dense = (q.grid * k_matched).sum(1).reshape({-1, 1});          // [N*S, 1]
  auto q_rows = q.grid.transpose(1, 2).reshape({-1, q.grid.size(1)});       // [N*S, C]
  auto l_neg_dense = torch::mm(q_rows, queue2_.detach().clone().to(dtype)); // [N*S, K]

  auto loss_single = head_->loss({l_pos, l_neg}, torch::Tensor());
  auto loss_dense = head_->loss({l_pos_dense, l_neg_dense}, torch::Tensor());

  bricks::enqueue_keys(queue_, queue_ptr_, bricks::concat_all_gather(k.global));
  bricks::enqueue_keys(queue2_, queue2_ptr_, bricks::concat_all_gather(k.pooled));
  return {{"loss_single", loss_single * (1 - loss_lambda_)},
          {"loss_dense", loss_dense * loss_lambda_}};
}

std::vector<torch::Tensor> DenseCL::predict(const std::vector<torch::Tensor>& inputs,
                                            const DataSamples&) {
  TORCH_CHECK(!inputs.empty(), "DenseCL.predict: no input views");
  auto maps = backbone_->forward(inputs[0]);
  TORCH_CHECK(!maps.empty() && maps[0].dim() == 4, "DenseCL.predict: expected a [N, C, H, W] map");
  return {normalize_dim1(maps[0].reshape({maps[0].size(0), maps[0].size(1), -1}))};
}

void DenseCL::pretty_print(std::ostream& stream) const {
  stream << "selfsup::DenseCL(queue_len=" << queue_len_ << ", feat_dim=" << feat_dim_
         << ", momentum=" << momentum_ << ", loss_lambda=" << loss_lambda_ << ")";
}

} // namespace selfsup::plugins::densecl
