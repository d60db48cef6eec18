#include <selfsup/core/npy.h>

#include <cstdint>
#include <cstring>

#include <torch/torch.h>

#include <selfsup/core/checkpoint.h>
#include <selfsup/errors.h>

namespace selfsup::core {

namespace {
bool little_endian() {
  const uint16_t one = 1;
  unsigned char first = 0;
  std::memcpy(&first, &one, 1);
  return first == 1;
}
} // namespace

std::string npy_bytes(const torch::Tensor& tensor) {
  std::string descr;
  if (tensor.scalar_type() == torch::kFloat32) {
    descr = "<f4";
  } else if (tensor.scalar_type() == torch::kInt64) {
    descr = "<i8";
  } else {
    throw ValueError(std::string(".npy: only float32 and int64 tensors are written, got ") +
                     c10::toString(tensor.scalar_type()));
  }
  if (!little_endian()) throw ValueError(".npy: writing on a big-endian machine is not supported");
  const torch::Tensor t = tensor.detach().cpu().contiguous();
  // NumPy writes a 1-tuple as "(N,)" and a 0-d shape as "()".
  std::string shape = "(";
  for (int64_t d = 0; d < t.dim(); ++d) {
    if (d) shape += ", ";
    shape += std::to_string(t.size(d));
  }
  if (t.dim() == 1) shape += ",";
  shape += ")";
  std::string header =
      "{'descr': '" + descr + "', 'fortran_order': False, 'shape': " + shape + ", }";
  // magic (6) + version (2) + header length (2) + header + '\n', a multiple of 64.
  const size_t prefix = 10;
  const size_t total = (prefix + header.size() + 1 + 63) / 64 * 64;
  header.append(total - prefix - header.size() - 1, ' ');
  header += '\n';
  if (header.size() > 65535) throw ValueError(".npy: header too long for format 1.0");

  std::string out("\x93NUMPY", 6);
  out += char(1);
  out += char(0);
  out += char(header.size() & 0xff);
  out += char((header.size() >> 8) & 0xff);
  out += header;
  const size_t bytes = size_t(t.numel()) * t.element_size();
  out.append(static_cast<const char*>(t.data_ptr()), bytes);
  return out;
}

void write_npy(const std::string& path, const torch::Tensor& tensor) {
  write_file_atomic(path, npy_bytes(tensor));
}

} // namespace selfsup::core
