#pragma once
// NumPy .npy files (format version 1.0), written without NumPy: the magic "\x93NUMPY", version
// 1.0, a little-endian uint16 header length, then the header dict
// {'descr': '<f4' | '<i8', 'fortran_order': False, 'shape': (...), } padded with spaces and a
// final newline so that the data starts at a multiple of 64 bytes, then the C-order data.
#include <string>

#include <torch/types.h>

#include <selfsup/core/export.h>

namespace selfsup::core {

/// The bytes of a .npy file holding `tensor` (float32 -> '<f4', int64 -> '<i8'; any other
/// dtype is a ValueError). The tensor is copied to the CPU and made contiguous.
SELFSUP_CORE_API std::string npy_bytes(const torch::Tensor& tensor);

/// Writes npy_bytes(tensor) to `path` atomically (write_file_atomic). Throws ValueError naming
/// the file when it cannot be written.
SELFSUP_CORE_API void write_npy(const std::string& path, const torch::Tensor& tensor);

} // namespace selfsup::core
