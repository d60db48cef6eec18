// Fuzzes the CIFAR binary reader (parse_cifar: records of label byte(s) and three 32x32
// planes). The first input byte chooses the layout (even: CIFAR-10, 1 label byte and 10
// classes; odd: CIFAR-100, 2 label bytes and 100 classes), the rest is the file's content.
// Accepted records must be whole, shaped [N,32,32,3] and labelled within range.
#include <cstddef>
#include <cstdint>
#include <string>

#include <torch/torch.h>

#include <selfsup/core/data.h>

#include "support/fuzz_support.h"

namespace fuzz = selfsup::fuzz;

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size == 0) return 0;
  const bool cifar100 = data[0] & 1;
  const int label_bytes = cifar100 ? 2 : 1;
  const int num_classes = cifar100 ? 100 : 10;
  selfsup::core::CifarRecords records;
  if (!fuzz::run_expecting([&] {
        records = selfsup::core::parse_cifar(data + 1, size - 1, label_bytes, num_classes,
                                             "data_batch_1.bin");
      }))
    return 0;
  const int64_t record = label_bytes + 3 * 32 * 32;
  fuzz::check((size - 1) % size_t(record) == 0, "parse_cifar accepted a partial record");
  const int64_t n = int64_t(size - 1) / record;
  fuzz::check(records.images.sizes() == torch::IntArrayRef({n, 32, 32, 3}) &&
                  records.images.scalar_type() == torch::kUInt8,
              "parse_cifar: images are not uint8 [N,32,32,3]");
  fuzz::check(records.labels.sizes() == torch::IntArrayRef({n}) &&
                  records.labels.scalar_type() == torch::kInt64,
              "parse_cifar: labels are not int64 [N]");
  if (n > 0)
    fuzz::check(records.labels.min().item<int64_t>() >= 0 &&
                    records.labels.max().item<int64_t>() < num_classes,
                "parse_cifar accepted a label out of range");
  if (cifar100 && n > 0)
    fuzz::check(records.coarse_labels.sizes() == torch::IntArrayRef({n}) &&
                    records.coarse_labels.min().item<int64_t>() >= 0 &&
                    records.coarse_labels.max().item<int64_t>() < 20,
                "parse_cifar: coarse labels are not [N] in [0, 20)");
  return 0;
}
