#pragma once
// Checkpoints: a pickled dict (readable by Python's torch.load) of
//   meta (JSON text), state_dict, optimizer, rng — written atomically (temp file, fsync,
//   rename), so a crash or signal never leaves a half-written checkpoint.
#include <map>
#include <string>

#include <torch/types.h>

#include <selfsup/core/export.h>
#include <selfsup/json.h>

namespace torch::nn {
class Module;
}

namespace selfsup::core {

using TensorMap = std::map<std::string, torch::Tensor>;

struct Checkpoint {
  Json meta = Json::object(); // epoch, iter, seed, config, selfsup version
  TensorMap state_dict;
  TensorMap optimizer;
  TensorMap rng;
};

SELFSUP_CORE_API void save_checkpoint(const std::string& path, const Checkpoint& ckpt);
/// Throws ValueError naming the file if it is missing, truncated or not a selfsup checkpoint.
SELFSUP_CORE_API Checkpoint load_checkpoint(const std::string& path);

/// Parameters and buffers under their dotted names (clones, detached).
SELFSUP_CORE_API TensorMap module_state(const torch::nn::Module& module);
/// Copies a state into a module; throws ValueError listing missing, unexpected or
/// mis-shaped entries (named after `source`).
SELFSUP_CORE_API void load_module_state(torch::nn::Module& module, const TensorMap& state,
                                        const std::string& source);

/// Writes `text` to `path` atomically.
SELFSUP_CORE_API void write_file_atomic(const std::string& path, const std::string& text);

} // namespace selfsup::core
