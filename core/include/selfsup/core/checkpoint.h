#pragma once
// Checkpoints in mmengine 0.8.4's layout (Runner.save_checkpoint), a pickled dict that
// Python's torch.load reads and mmengine's Runner.resume and load_checkpoint accept:
//   meta             {epoch, iter (done so far), cfg (the config as JSON text), seed,
//                     experiment_name, time, mmengine_version (the mmengine release whose
//                     layout this is), and ours: selfsup_format ("selfsup-checkpoint-4"),
//                     selfsup_version, iters_per_epoch, batch_size, nonfinite_skipped,
//                     max_epochs, max_iters, selfsup_rng {name: RNG state tensor}}
//   state_dict       {name: tensor}, the model's own names (backbone.*, neck.*, head.*)
//   optimizer        PyTorch's optimizer state_dict layout (absent when not saved)
//   param_schedulers [mmengine's _ParamScheduler.state_dict() per scheduler] (absent: none)
//   message_hub      MessageHub.state_dict(): log_scalars ({}: its HistoryBuffers are Python
//                     objects), runtime_info (epoch, iter, max_epochs, max_iters, cfg, seed,
//                     experiment_name, mmengine_version, loop_stage) and resumed_keys
// in torch.save's zip container, whose end-of-archive comment holds a CRC-32 of every byte
// before it ("selfsup-crc32:xxxxxxxx"; zip readers, torch.load included, ignore the comment).
// Older files still load: selfsup-checkpoint-3 (top-level format, meta as JSON text, rng; with
// the CRC) and -2 (the same without format and CRC); any other format is refused by name.
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
#include <vector>

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
  /// epoch, iter, seed, config (a JSON value: the file's meta.cfg), selfsup_version,
  /// iters_per_epoch, batch_size, nonfinite_skipped, max_epochs, max_iters, experiment_name,
  /// and on load whatever else the file's meta holds that JSON can hold (selfsup_format,
  /// time, mmengine_version).
  Json meta = Json::object();
  TensorMap state_dict;
  /// PyTorch's optimizer state_dict layout (see optimizer_state_dict); None when absent.
  c10::IValue optimizer;
  TensorMap rng;
  /// A list of mmengine_scheduler_state() dicts; None when the run has no schedulers. Written
  /// for mmengine; selfsup recomputes its schedules on resume (docs/compatibility.md).
  c10::IValue param_schedulers;
};

/// The checkpoint format this version writes (meta.selfsup_format).
inline constexpr const char* kCheckpointFormat = "selfsup-checkpoint-4";
/// The mmengine release whose checkpoint layout this is (meta.mmengine_version).
inline constexpr const char* kMmengineLayoutVersion = "0.8.4";

/// One scheduler's state as mmengine's _ParamScheduler.state_dict() holds it: param_name,
/// begin, end, by_epoch (false for a scheduler stepped per iteration), base_values (each
/// group's initial value), last_step (steps taken inside [begin, end), -1 before begin),
/// _global_step (steps since it was built: 0 at build), verbose, _last_value (each group's
/// value after that step, i.e. for the next iteration). The scheduler's own hyper-parameters
/// (T_max, start_factor, ...) are not written: mmengine's load_state_dict updates only the
/// keys present, so those its config builds stay.
SELFSUP_CORE_API c10::impl::GenericDict
mmengine_scheduler_state(const std::string& param_name, int64_t begin, int64_t end, bool by_epoch,
                         int64_t global_step, const std::vector<double>& base_values,
                         const std::vector<double>& last_values);

/// Writes atomically (see above). Throws ValueError naming the file when a weight in
/// `state_dict` is NaN or Inf (a diverged model is never written), when `path` is a symbolic
/// link, or when writing fails (a full disk): the previous file under `path` is then kept.
SELFSUP_CORE_API void save_checkpoint(const std::string& path, const Checkpoint& ckpt);
/// Throws ValueError naming the file if it is missing, truncated, fails its checksum, is not
/// a selfsup checkpoint or is of a format this version does not read (naming the format).
/// Files of selfsup-checkpoint-2 have no checksum and load unchecked.
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
