#pragma once
// Key-queue brick shared by plugins (MoCo, DenseCL): a FIFO of the most recent keys, stored as
// MMSelfSup stores it, a [dim, length] buffer whose columns are keys and a [1] int64 pointer to
// the next column to write. Both are registered buffers of the algorithm, so checkpoints carry
// them.
#include <torch/types.h>

#include <selfsup/export.h>

namespace selfsup::bricks {

/// A [dim, length] float queue of random unit columns (MMSelfSup's init: randn, L2-normalised
/// along dim 0), with `options` for dtype/device.
SELFSUP_SDK_API torch::Tensor make_key_queue(int64_t dim, int64_t length,
                                             const torch::TensorOptions& options = {});

/// Writes `keys` ([n, dim]) into the columns of `queue` ([dim, length]) from `ptr` ([1] int64)
/// on, wrapping around at the end, and advances `ptr` by n modulo length. MMSelfSup requires
/// length % n == 0; here any n <= length works (the last batch of an epoch may be smaller).
/// n > length, a dim mismatch or a bad ptr shape is a ValueError. No gradient is recorded.
SELFSUP_SDK_API void enqueue_keys(torch::Tensor& queue, torch::Tensor& ptr,
                                  const torch::Tensor& keys);

} // namespace selfsup::bricks
