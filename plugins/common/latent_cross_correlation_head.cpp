#include "latent_cross_correlation_head.h"

#include <torch/torch.h>

#include <selfsup/dist.h>
#include <selfsup/registry.h>

namespace selfsup::plugins::common {

OptionTable<LatentCrossCorrelationHeadOptions> LatentCrossCorrelationHeadOptions::table() {
  using O = LatentCrossCorrelationHeadOptions;
  return OptionTable<O>("loss(bn(input)^T bn(target) / global batch), as MMSelfSup's "
                        "LatentCrossCorrelationHead (Barlow Twins); bn has no affine",
                        O())
      .required("in_channels", &O::in_channels_, "embedding features", check::gt(0))
      .required("loss", &O::loss_, "loss config, e.g. {type: 'CrossCorrelationLoss'}")
      .component("loss");
}

LatentCrossCorrelationHead::LatentCrossCorrelationHead(int64_t in_channels,
                                                       std::shared_ptr<selfsup::Loss> loss)
    : in_channels_(in_channels) {
  bn_ = register_module(
      "bn", torch::nn::BatchNorm1d(torch::nn::BatchNormOptions(in_channels).affine(false)));
  loss_ = register_module("loss", std::move(loss));
}

torch::Tensor LatentCrossCorrelationHead::cross_correlation(const torch::Tensor& input,
                                                            const torch::Tensor& target) {
  TORCH_CHECK(input.dim() == 2 && input.sizes() == target.sizes() && input.size(1) == in_channels_,
              "LatentCrossCorrelationHead: expected input and target [N, ", in_channels_, "], got ",
              input.sizes(), " and ", target.sizes());
  const int64_t world = dist().world_size();
  // Input first, then target: the order the BN's running statistics see them upstream.
  const torch::Tensor a = bn_(input);
  const torch::Tensor b = bn_(target);
  torch::Tensor c = torch::matmul(a.t(), b) / double(input.size(0) * world);
  if (world == 1) return c;
  // Summed over ranks as upstream's in-place all_reduce: the value is the global sum, the
  // gradient flows into this rank's term only (the collective itself is not differentiated).
  torch::Tensor summed = c.detach().clone();
  dist().all_reduce(summed, ReduceOp::Sum);
  return c + (summed - c.detach());
}

torch::Tensor LatentCrossCorrelationHead::loss(const std::vector<torch::Tensor>& inputs,
                                               const torch::Tensor& target) {
  TORCH_CHECK(inputs.size() == 1, "LatentCrossCorrelationHead: expected inputs {input}, got ",
              inputs.size(), " tensors");
  return loss_->forward(cross_correlation(inputs[0], target), torch::Tensor());
}

void LatentCrossCorrelationHead::pretty_print(std::ostream& stream) const {
  stream << "selfsup::plugins::common::LatentCrossCorrelationHead(in_channels=" << in_channels_
         << ")";
}

std::shared_ptr<selfsup::Head> make_latent_cross_correlation_head(const Config& cfg) {
  const auto options = LatentCrossCorrelationHeadOptions::table().parse(cfg);
  return std::make_shared<LatentCrossCorrelationHead>(
      options.in_channels(), selfsup::build<selfsup::Loss>(options.loss()));
}

} // namespace selfsup::plugins::common
