#include <selfsup/bricks/ema.h>

#include <cmath>
#include <string>

#include <torch/torch.h>

#include <selfsup/errors.h>

namespace selfsup::bricks {

namespace {

using Named = torch::OrderedDict<std::string, torch::Tensor>;

/// The tensors of `source` in the order of `target`'s, checked by name and shape.
std::vector<std::pair<torch::Tensor, torch::Tensor>>
pair_up(const Named& target, const Named& source, const char* what) {
  if (target.size() != source.size())
    throw ValueError(std::string("momentum encoder: the target has ") +
                     std::to_string(target.size()) + " " + what + ", the online network " +
                     std::to_string(source.size()) + " (they must be built from the same config)");
  std::vector<std::pair<torch::Tensor, torch::Tensor>> pairs;
  pairs.reserve(target.size());
  for (const auto& item : target) {
    const torch::Tensor* src = source.find(item.key());
    if (src == nullptr)
      throw ValueError(std::string("momentum encoder: the online network has no ") + what +
                       " named '" + item.key() + "'");
    if (!src->sizes().equals(item.value().sizes()))
      throw ValueError(std::string("momentum encoder: ") + what + " '" + item.key() +
                       "' has shape " + c10::str(item.value().sizes()) + " in the target and " +
                       c10::str(src->sizes()) + " in the online network");
    pairs.emplace_back(item.value(), *src);
  }
  return pairs;
}

void copy_buffers(torch::nn::Module& target, const torch::nn::Module& source) {
  for (auto& [t, s] : pair_up(target.named_buffers(), source.named_buffers(), "buffers"))
    t.copy_(s);
}

} // namespace

void copy_module_state(torch::nn::Module& target, const torch::nn::Module& source) {
  torch::NoGradGuard no_grad;
  for (auto& [t, s] : pair_up(target.named_parameters(), source.named_parameters(), "parameters"))
    t.copy_(s);
  copy_buffers(target, source);
}

void freeze(torch::nn::Module& target) {
  for (auto& p : target.parameters()) p.set_requires_grad(false);
}

void ema_update(torch::nn::Module& target, const torch::nn::Module& source, double momentum) {
  torch::NoGradGuard no_grad;
  for (auto& [t, s] : pair_up(target.named_parameters(), source.named_parameters(), "parameters")) {
    if (!t.is_floating_point()) continue;
    t.mul_(momentum).add_(s.to(t.device()), 1.0 - momentum);
  }
  copy_buffers(target, source);
}

double cosine_ema_momentum(double base, double end, int64_t step, int64_t max_iters) {
  if (max_iters <= 0) throw ValueError("CosineEMA: max_iters must be positive");
  const double pi = std::acos(-1.0);
  return end -
         (end - base) *
             (std::cos(pi * static_cast<double>(step) / static_cast<double>(max_iters)) + 1.0) /
             2.0;
}

void momentum_update(torch::nn::Module& target, const torch::nn::Module& source, double momentum,
                     int64_t step) {
  if (step == 0)
    copy_module_state(target, source);
  else
    ema_update(target, source, momentum);
}

} // namespace selfsup::bricks
