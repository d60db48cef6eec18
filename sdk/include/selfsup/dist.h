#pragma once
// The distributed interface plugins see: rank, world size and the collectives an algorithm
// needs (MoCo's key gather and shuffle, SimCLR's global batch, SwAV's Sinkhorn sums).
// Core installs the implementation (c10d in a data-parallel run); in one process it is the
// identity, so a plugin gathers and shuffles the same way whether it runs alone or not.
#include <memory>
#include <vector>

#include <torch/types.h>

#include <selfsup/export.h>

namespace selfsup {

enum class ReduceOp { Sum, Mean, Max, Min };

class SELFSUP_SDK_API Distributed {
public:
  virtual ~Distributed();
  [[nodiscard]] virtual int rank() const = 0;
  [[nodiscard]] virtual int world_size() const = 0;
  /// Reduces `tensor` in place across all ranks.
  virtual void all_reduce(torch::Tensor& tensor, ReduceOp op = ReduceOp::Sum) = 0;
  /// Every rank's `tensor` (same shape on all ranks), in rank order; no gradient.
  [[nodiscard]] virtual std::vector<torch::Tensor> all_gather(const torch::Tensor& tensor) = 0;
  /// The ranks' tensors concatenated along dim 0, differentiable: the gradient of this
  /// rank's slice is the sum over ranks of the gradients flowing into that slice (as
  /// torch.distributed.nn's all_gather), so a loss over the global batch that is averaged
  /// per rank gets the same gradient as in one process with the whole batch.
  [[nodiscard]] virtual torch::Tensor all_gather_with_grad(const torch::Tensor& tensor) = 0;
  /// Copies rank `src`'s `tensor` into every rank's `tensor`.
  virtual void broadcast(torch::Tensor& tensor, int src = 0) = 0;
  /// Waits until every rank has reached it.
  virtual void barrier() = 0;
};

/// The identity implementation for one process.
class SELFSUP_SDK_API SingleProcess final : public Distributed {
public:
  ~SingleProcess() override;
  int rank() const override { return 0; }
  int world_size() const override { return 1; }
  void all_reduce(torch::Tensor& tensor, ReduceOp op = ReduceOp::Sum) override;
  std::vector<torch::Tensor> all_gather(const torch::Tensor& tensor) override;
  torch::Tensor all_gather_with_grad(const torch::Tensor& tensor) override;
  void broadcast(torch::Tensor& tensor, int src = 0) override;
  void barrier() override {}
};

/// The process's distributed context: SingleProcess until core installs another (once, at
/// start-up, before any module is built). Like the Registry, the one process-wide object.
SELFSUP_SDK_API Distributed& dist();
/// Installs `impl` (null: back to SingleProcess). Not thread-safe against concurrent use.
SELFSUP_SDK_API void set_dist(std::shared_ptr<Distributed> impl);

} // namespace selfsup
