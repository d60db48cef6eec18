#pragma once
// Shuffle-BN brick shared by plugins (MoCo, DenseCL): the key encoder sees the global batch in
// a random order, so its BatchNorm statistics on each rank are those of a random sample of the
// global batch (MMSelfSup's batch_shuffle_ddp / batch_unshuffle_ddp), through dist().
#include <string>
#include <utility>

#include <torch/types.h>

#include <selfsup/export.h>

namespace selfsup::bricks {

/// The rows of every rank's `x` concatenated along dim 0 in rank order, without gradient
/// (MMSelfSup's concat_all_gather); in one process `x` itself.
SELFSUP_SDK_API torch::Tensor concat_all_gather(const torch::Tensor& x);

/// Gathers the views of all ranks, applies one random permutation of the global batch (drawn
/// on rank 0 from the default generator and broadcast) and keeps this rank's slice. Returns
/// that slice and the inverse permutation (of the global batch) batch_unshuffle needs. In one
/// process: `x` permuted and the inverse permutation. Every rank must hold the same batch size;
/// otherwise an error names `owner` (the algorithm, e.g. "MoCo"). No gradient is recorded.
SELFSUP_SDK_API std::pair<torch::Tensor, torch::Tensor> batch_shuffle(const torch::Tensor& x,
                                                                      const std::string& owner);

/// Undoes batch_shuffle on an output computed from the shuffled slice: gathers the ranks'
/// rows and keeps this rank's original ones. A row count other than the permutation's is an
/// error naming `owner`. No gradient is recorded.
SELFSUP_SDK_API torch::Tensor batch_unshuffle(const torch::Tensor& x,
                                              const torch::Tensor& idx_unshuffle,
                                              const std::string& owner);

} // namespace selfsup::bricks
