#pragma once
// Checkpoints: a pickled dict (readable by Python's torch.load) of
//   meta (JSON text), state_dict, optimizer (PyTorch's optimizer state_dict layout), rng —
//   written atomically (temp file, fsync, rename), so a crash or signal never leaves a
//   half-written checkpoint.
#include <map>
#include <string>

#include <ATen/core/Dict.h>
#include <ATen/core/ivalue.h>
#include <torch/types.h>

#include <selfsup/core/export.h>
#include <selfsup/json.h>

namespace torch::nn {
class Module;
}
namespace torch::optim {
class Optimizer;
}

namespace selfsup::core {

using TensorMap = std::map<std::string, torch::Tensor>;

struct Checkpoint {
  Json meta = Json::object(); // epoch, iter, seed, config, selfsup version
  TensorMap state_dict;
  /// PyTorch's optimizer state_dict layout (see optimizer_state_dict); None when absent.
  c10::IValue optimizer;
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

/// An optimizer's state in PyTorch's state_dict layout, which Python's torch.load reads as
/// PyTorch's optimizers write it:
///   {"state": {index: {"momentum_buffer": T, ...}},
///    "param_groups": [{"lr": .., "momentum": .., ..., "params": [index, ...]}, ...]}
/// with parameters numbered in group order, tensors on the CPU. The names are those the
/// optimizer's options and state classes write in serialize() (LibTorch's are PyTorch's), read
/// through the optimizer's own save().
SELFSUP_CORE_API c10::impl::GenericDict
optimizer_state_dict(const torch::optim::Optimizer& optimizer);
/// Restores an optimizer_state_dict(): the per-parameter state through the optimizer's own
/// load(), each group's options through its options' serialize(); state tensors go to the
/// device of the optimizer's first parameter. Throws ValueError naming `source` when the
/// layout, the number of groups or of their parameters, a shape or a key does not fit.
SELFSUP_CORE_API void load_optimizer_state_dict(torch::optim::Optimizer& optimizer,
                                                const c10::IValue& state,
                                                const std::string& source);

/// Writes `text` to `path` atomically.
SELFSUP_CORE_API void write_file_atomic(const std::string& path, const std::string& text);

} // namespace selfsup::core
