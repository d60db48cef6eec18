#pragma once
// SwAV's Sinkhorn-Knopp assignment, header-only so the tests call the code the plugin runs.
#include <cstdint>

#include <torch/torch.h>

#include <selfsup/dist.h>

namespace selfsup::plugins::swav {

/// Sinkhorn-Knopp on the scores `out` [B, K] (no gradient), as MMSelfSup's
/// distributed_sinkhorn: Q = exp(out / epsilon)^T [K, B], Q /= sum(Q) (all-reduced); then
/// `iterations` times: each row (prototype) scaled to sum 1/K (with 1e-12 added and the row
/// sums all-reduced only when a row sums to 0, as upstream), each column (sample) to 1/B with
/// B = B_local * world_size; finally Q *= B. Returns Q^T [B, K]: each row sums to 1.
inline torch::Tensor distributed_sinkhorn(const torch::Tensor& out, int64_t iterations,
                                          int64_t world_size, double epsilon) {
  torch::NoGradGuard no_grad;
  TORCH_CHECK(out.dim() == 2, "distributed_sinkhorn: expected scores [B, K], got ", out.sizes());
  constexpr double kEpsNumStab = 1e-12;
  torch::Tensor q = torch::exp(out / epsilon).t().contiguous(); // [K, B]
  const double b = double(q.size(1) * world_size);              // samples to assign
  const double k = double(q.size(0));                           // prototypes
  torch::Tensor sum_q = q.sum();
  dist().all_reduce(sum_q);
  q.div_(sum_q);
  for (int64_t it = 0; it < iterations; ++it) {
    // Rows: each prototype's total weight becomes 1/K.
    torch::Tensor u = q.sum(1, true);
    if (u.eq(0).any().item<bool>()) {
      q.add_(kEpsNumStab);
      u = q.sum(1, true);
      dist().all_reduce(u);
    }
    q.div_(u).div_(k);
    // Columns: each sample's total weight becomes 1/B.
    q.div_(q.sum(0, true)).div_(b);
  }
  q.mul_(b); // columns sum to 1: an assignment per sample
  return q.t();
}

} // namespace selfsup::plugins::swav
