// Fuzzes the IDX reader (read_idx: the Fashion-MNIST file format, gzip-compressed or plain),
// through a file as the dataset reads it. An accepted array must hold exactly the elements
// its dimensions announce.
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

#include <selfsup/core/data.h>

#include "support/fuzz_support.h"

namespace fuzz = selfsup::fuzz;

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string path =
      fuzz::write_file("input.idx", std::string_view(reinterpret_cast<const char*>(data), size));
  selfsup::core::IdxArray array;
  if (!fuzz::run_expecting([&] { array = selfsup::core::read_idx(path); })) return 0;
  uint64_t elements = 1;
  for (int64_t d : array.dims) {
    fuzz::check(d >= 0, "read_idx accepted a negative dimension");
    elements *= uint64_t(d);
  }
  fuzz::check(elements == array.data.size(), "read_idx: the data does not match the dimensions");
  return 0;
}
