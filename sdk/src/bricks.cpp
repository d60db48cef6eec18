#include <selfsup/bricks/norm.h>

#include <torch/torch.h>

namespace selfsup::bricks {

OptionTable<NormCfg> NormCfg::table() {
  using namespace check;
  return OptionTable<NormCfg>("norm layer, as MMCV's norm_cfg", NormCfg())
      .required("type", &NormCfg::type, "'BN' or 'SyncBN' (SyncBN acts as BN on one process)",
                one_of({"BN", "SyncBN"}))
      .optional("requires_grad", &NormCfg::requires_grad, "learn the affine weight and bias")
      .optional("eps", &NormCfg::eps, "added to the variance", gt(0))
      .optional("momentum", &NormCfg::momentum, "running statistics update", in(0, 1));
}

NormCfg NormCfg::from_config(const Config& cfg) {
  return table().parse(cfg);
}

namespace {
template <class BN> BN init(BN bn, bool requires_grad) {
  torch::NoGradGuard no_grad;
  if (bn->weight.defined()) bn->weight.fill_(1.0);
  if (bn->bias.defined()) bn->bias.zero_();
  if (!requires_grad)
    for (auto& p : bn->parameters()) p.set_requires_grad(false);
  return bn;
}
} // namespace

torch::nn::BatchNorm1d NormCfg::make_1d(int64_t channels, bool affine) const {
  return init(
      torch::nn::BatchNorm1d(
          torch::nn::BatchNorm1dOptions(channels).eps(eps).momentum(momentum).affine(affine)),
      requires_grad);
}

torch::nn::BatchNorm2d NormCfg::make_2d(int64_t channels) const {
  return init(
      torch::nn::BatchNorm2d(torch::nn::BatchNorm2dOptions(channels).eps(eps).momentum(momentum)),
      requires_grad);
}

} // namespace selfsup::bricks
