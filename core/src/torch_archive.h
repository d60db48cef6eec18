#pragma once
// Checks on a checkpoint's bytes and tensors that LibTorch's reader does not make (found by
// fuzz/checkpoint). LibTorch allocates what a zip record or a pickle opcode announces before
// reading it, so a few corrupt bytes could make it allocate gigabytes; and it rebuilds a
// tensor with the sizes, strides and offset the pickle gives, without checking them against
// the storage, so copying it would read outside it.
#include <string>
#include <vector>

#include <torch/types.h>

namespace selfsup::core {

/// Throws ValueError naming `path` when the archive (torch.save's zip container) announces
/// more than it holds: a record larger than the file can hold, a central directory outside
/// the file, or a pickle argument (string, bytes, integer) longer than the rest of data.pkl.
/// What it cannot follow (another container, an opcode it does not know) is left to
/// LibTorch, which refuses it or reads it within the file.
void check_torch_archive(const std::vector<char>& bytes, const std::string& path);

/// Throws ValueError naming `what` when `t` views memory outside its storage.
void check_tensor_in_storage(const torch::Tensor& t, const std::string& what);

} // namespace selfsup::core
