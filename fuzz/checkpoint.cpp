// Fuzzes the checkpoint reader (load_checkpoint: a pickled dict in PyTorch's zip format,
// readable by Python's torch.load), through a file as --resume and load_from read it, then
// loads what it accepted into a module and an optimizer as a resumed run would.
//
// Two input forms:
//   - a file that starts as a zip does ("PK\3\4"): written as it is (the zip layer);
//   - anything else: records separated by a line "@record@": data.pkl, then data/0, data/1...
//     (tensor storages). The harness zips them as PyTorch does, with valid CRC-32s, so the
//     fuzzer reaches the unpickler and the checks after it instead of the zip's checksums.
// An accepted checkpoint's tensors must lie inside their storage: a view that reaches past
// it would be read out of bounds when copied into a model.
// Seeds: `scripts/fuzz.sh --seeds` writes both forms with the current save_checkpoint.
#include <cstddef>
#include <cstdint>
#include <fstream>
#include <sstream>
#include <string>
#include <string_view>
#include <vector>

#include <caffe2/serialize/inline_container.h>
#include <torch/torch.h>

#include <selfsup/core/checkpoint.h>

#include "support/fuzz_support.h"

namespace fuzz = selfsup::fuzz;
using selfsup::Json;
using selfsup::core::Checkpoint;

namespace {

constexpr std::string_view kZipMagic("PK\3\4", 4);
constexpr std::string_view kSeparator = "\n@record@\n";

std::string zip_records(const std::vector<std::string_view>& parts) {
  std::string out;
  caffe2::serialize::PyTorchStreamWriter writer([&](const void* data, size_t size) {
    out.append(static_cast<const char*>(data), size);
    return size;
  });
  writer.writeRecord("data.pkl", parts[0].data(), parts[0].size());
  for (size_t i = 1; i < parts.size(); ++i)
    writer.writeRecord("data/" + std::to_string(i - 1), parts[i].data(), parts[i].size());
  writer.writeEndOfFile();
  return out;
}

// The records of a zip, in the structured form (data.pkl first, then data/0, data/1, ...).
std::string unzip_records(const std::string& path) {
  caffe2::serialize::PyTorchStreamReader reader(path);
  auto record = [&](const std::string& name) {
    auto [ptr, size] = reader.getRecord(name);
    return std::string(static_cast<const char*>(ptr.get()), size);
  };
  std::string out = record("data.pkl");
  for (size_t i = 0; reader.hasRecord("data/" + std::to_string(i)); ++i)
    out += std::string(kSeparator) + record("data/" + std::to_string(i));
  return out;
}

bool fits_its_storage(const torch::Tensor& t) {
  if (!t.defined()) return false;
  if (t.numel() == 0) return true;
  int64_t last = t.storage_offset();
  if (last < 0) return false;
  for (int64_t d = 0; d < t.dim(); ++d) {
    if (t.stride(d) < 0) return false;
    last += (t.size(d) - 1) * t.stride(d);
  }
  return uint64_t(last + 1) * t.element_size() <= t.storage().nbytes();
}

struct Model {
  torch::nn::Linear linear{3, 2};
  torch::optim::SGD sgd{linear->parameters(), torch::optim::SGDOptions(0.1).momentum(0.9)};
};

} // namespace

extern "C" int LLVMFuzzerInitialize(int*, char***) {
  fuzz::maybe_write_seeds([](const std::string& dir) {
    auto both_forms = [&](const std::string& name, const Checkpoint& ckpt) {
      selfsup::core::save_checkpoint(dir + "/" + name + ".pth", ckpt);
      std::ofstream(dir + "/" + name + ".records", std::ios::binary)
          << unzip_records(dir + "/" + name + ".pth");
    };
    Checkpoint empty;
    empty.meta = Json::object({{"epoch", Json(int64_t(0))}});
    both_forms("empty", empty);

    Model model; // the state a resumed run of the harness's own model reads
    model.linear(torch::ones({1, 3})).sum().backward();
    model.sgd.step();
    Checkpoint small;
    small.meta = Json::object({{"epoch", Json(int64_t(2))}, {"iter", Json(int64_t(14))}});
    small.state_dict = selfsup::core::module_state(*model.linear);
    small.optimizer = selfsup::core::optimizer_state_dict(model.sgd);
    small.rng["torch"] = torch::arange(4, torch::kUInt8);
    both_forms("small", small);
  });
  return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string_view input(reinterpret_cast<const char*>(data), size);
  const std::string path = fuzz::write_file(
      "input.pth", input.substr(0, 4) == kZipMagic ? std::string(input)
                                                   : zip_records(fuzz::split(input, kSeparator)));
  Checkpoint ckpt;
  if (!fuzz::run_expecting([&] { ckpt = selfsup::core::load_checkpoint(path); })) return 0;
  for (const auto& [name, tensor] : ckpt.state_dict)
    fuzz::check(fits_its_storage(tensor),
                "load_checkpoint accepted state_dict." + name + ", which reaches past its storage");
  for (const auto& [name, tensor] : ckpt.rng)
    fuzz::check(fits_its_storage(tensor),
                "load_checkpoint accepted rng." + name + ", which reaches past its storage");

  // What --resume does with it next.
  Model model;
  fuzz::run_expecting(
      [&] { selfsup::core::load_module_state(*model.linear, ckpt.state_dict, path); });
  fuzz::run_expecting(
      [&] { selfsup::core::load_optimizer_state_dict(model.sgd, ckpt.optimizer, path); });
  return 0;
}
