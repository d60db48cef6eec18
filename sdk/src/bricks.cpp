#include <selfsup/bricks/norm.h>

#include <torch/torch.h>

namespace selfsup::bricks {

NormCfg NormCfg::from_config(const Config& cfg) {
  if (!cfg.is_object())
    cfg.fail("expected a dict like {\"type\": \"BN\"}, got " + describe_value(cfg.json()));
  for (const auto& key : cfg.keys())
    if (key != "type" && key != "requires_grad" && key != "eps" && key != "momentum")
      cfg.fail_key(key, "unknown key (accepted: type, requires_grad, eps, momentum)");
  if (!cfg.has("type")) cfg.fail_key("type", "required key is missing ('BN' or 'SyncBN')");
  NormCfg out;
  out.type = cfg.get<std::string>("type");
  if (out.type != "BN" && out.type != "SyncBN")
    cfg.fail_key("type", "unsupported norm layer '" + out.type +
                             "' (expected 'BN' or 'SyncBN'; SyncBN acts as BN on one process)");
  out.requires_grad = cfg.get<bool>("requires_grad", true);
  out.eps = cfg.get<double>("eps", 1e-5);
  out.momentum = cfg.get<double>("momentum", 0.1);
  if (!(out.eps > 0)) cfg.fail_key("eps", "expected a number > 0, got " + describe_value(out.eps));
  if (!(out.momentum >= 0 && out.momentum <= 1))
    cfg.fail_key("momentum", "expected a number in [0, 1], got " + describe_value(out.momentum));
  return out;
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
