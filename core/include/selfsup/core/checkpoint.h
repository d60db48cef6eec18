#pragma once
// Checkpoints: a pickled dict (readable by Python's torch.load) of
//   format ("selfsup-checkpoint-3"), meta (JSON text), state_dict, optimizer (PyTorch's
//   optimizer state_dict layout), rng —
// in torch.save's zip container, whose end-of-archive comment holds a CRC-32 of every byte
// before it ("selfsup-crc32:xxxxxxxx"; zip readers, torch.load included, ignore the comment).
// Written atomically: a temp file `<name>.tmp` created exclusively and never through a
// symbolic link (O_EXCL|O_NOFOLLOW), fsynced, renamed over the name, the folder fsynced; so
// a crash or signal never leaves a half-written checkpoint under its name, and a file that
// was damaged afterwards fails its checksum on load.
//
// Test seams of the writer (environment variables, read at each write):
//   SELFSUP_TEST_FAIL_WRITE_AFTER=N  a write fails with ENOSPC once N bytes of the file are
//                                    written (a full disk);
//   SELFSUP_TEST_SLOW_WRITE_US=U     the bytes go out in 16 KiB pieces, U microseconds apart
//                                    (widens the window a kill test aims at).
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

/// The checkpoint format this version writes.
inline constexpr const char* kCheckpointFormat = "selfsup-checkpoint-3";

/// Writes atomically (see above). Throws ValueError naming the file when a weight in
/// `state_dict` is NaN or Inf (a diverged model is never written), when `path` is a symbolic
/// link, or when writing fails (a full disk): the previous file under `path` is then kept.
SELFSUP_CORE_API void save_checkpoint(const std::string& path, const Checkpoint& ckpt);
/// Throws ValueError naming the file if it is missing, truncated, fails its checksum or is
/// not a selfsup checkpoint. Files without a checksum (selfsup-checkpoint-2, torch.save) load
/// unchecked.
SELFSUP_CORE_API Checkpoint load_checkpoint(const std::string& path);

/// The name of the first floating-point tensor of `state` holding a NaN or an Inf, or "".
SELFSUP_CORE_API std::string first_nonfinite(const TensorMap& state);

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

/// Writes `text` to `path` atomically, as a checkpoint (temp file created with
/// O_EXCL|O_NOFOLLOW, fsync, rename, folder fsync). Refuses a `path` that is a symbolic link;
/// a leftover `<path>.tmp` (a killed write, or a planted link) is removed, never followed.
SELFSUP_CORE_API void write_file_atomic(const std::string& path, const std::string& text);

/// Throws ValueError naming `path` when it is a symbolic link (work-dir outputs are never
/// written through one).
SELFSUP_CORE_API void refuse_symlink(const std::string& path);

} // namespace selfsup::core
