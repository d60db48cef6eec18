#include <selfsup/bricks/shuffle_bn.h>

#include <torch/torch.h>

#include <selfsup/dist.h>

namespace selfsup::bricks {

torch::Tensor concat_all_gather(const torch::Tensor& x) {
  torch::NoGradGuard no_grad;
  auto parts = dist().all_gather(x);
  return parts.size() == 1 ? parts[0] : torch::cat(parts);
}

std::pair<torch::Tensor, torch::Tensor> batch_shuffle(const torch::Tensor& x,
                                                      const std::string& owner) {
  torch::NoGradGuard no_grad;
  auto& d = dist();
  const auto x_all = concat_all_gather(x);
  const int64_t world = d.world_size();
  TORCH_CHECK(x_all.size(0) == x.size(0) * world, owner,
              " shuffle-BN: every rank needs the same batch size (", x.size(0), " here, ",
              x_all.size(0), " in all over ", world, " ranks)");
  auto idx_shuffle = torch::randperm(x_all.size(0), torch::kLong).to(x.device());
  d.broadcast(idx_shuffle, 0);
  auto idx_unshuffle = torch::argsort(idx_shuffle);
  const auto idx_this = idx_shuffle.view({world, -1})[d.rank()];
  return {x_all.index_select(0, idx_this), idx_unshuffle};
}

torch::Tensor batch_unshuffle(const torch::Tensor& x, const torch::Tensor& idx_unshuffle,
                              const std::string& owner) {
  torch::NoGradGuard no_grad;
  auto& d = dist();
  const auto x_all = concat_all_gather(x);
  TORCH_CHECK(idx_unshuffle.numel() == x_all.size(0), owner, " shuffle-BN: ", x_all.size(0),
              " rows in all for a permutation of ", idx_unshuffle.numel());
  const auto idx_this = idx_unshuffle.view({d.world_size(), -1})[d.rank()];
  return x_all.index_select(0, idx_this);
}

} // namespace selfsup::bricks
