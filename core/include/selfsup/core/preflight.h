#pragma once
// Pre-flight: the whole merged training config checked before anything is built, read or
// written (MMEngine checks a config only as it builds it, one error at a time). Every problem
// found is listed with its JSON path: unknown types (with the nearest registered names),
// unknown keys, wrong types, out-of-range values, missing keys, files and folders that do not
// exist (dataset roots, load_from and resume checkpoints). The schemas say what to walk: the
// keys that hold components of a kind, nested dicts, path constraints (<selfsup/schema.h>).
#include <string>
#include <vector>

#include <selfsup/core/export.h>
#include <selfsup/core/runner.h>
#include <selfsup/json.h>

namespace selfsup::core {

/// Every problem of a merged training config, and of the run's options (--resume), found
/// without building a model or reading data: each "<json path>: <what>"; empty when the run
/// may start. Types are looked up in options.registry, else Registry::global().
[[nodiscard]] SELFSUP_CORE_API std::vector<std::string> preflight(const Json& cfg,
                                                                  const TrainOptions& options);

/// Throws one ConfigError listing every problem preflight() finds, introduced by `what` (the
/// config file): "<what>: 3 problems (found before anything was built, read or written):\n
///   <path>: <what>\n ...".
SELFSUP_CORE_API void check_before_training(const Json& cfg, const TrainOptions& options,
                                            const std::string& what);

/// What `selfsup config --check` does beyond preflight().
struct CheckOptions {
  /// false (`--no-data`): the files a run reads when it starts are neither required nor read
  /// (their keys are still checked): dataset files and folders, `load_from`, and the
  /// checkpoint of any `init_cfg: {type: 'Pretrained', checkpoint: FILE}` in the model (a
  /// missing one is dropped: the module is built with its own initial weights; an existing
  /// one is read). The datasets are not built, their pipelines are (and a hook's data
  /// loaders' pipelines).
  bool data = true;
};

/// Every problem of a merged training config found by building each part as `train` does,
/// without training: preflight()'s problems, then, each on its own so that one fault does not
/// hide another, the model, the optimizer with its parameter groups, the train loop, the
/// training dataset with its pipeline, the parameter schedulers bound to the loop, and the
/// hooks. A part preflight() already found a fault in is not built again. Each problem is
/// "<json path>: <what>"; empty when `train` would start.
[[nodiscard]] SELFSUP_CORE_API std::vector<std::string>
check_config(const Json& cfg, const TrainOptions& options, const CheckOptions& check = {});

/// The selfsup plugin that provides a type of MMSelfSup 1.0's model zoo, by its type name
/// (a scope prefix such as `mmselfsup.` is ignored): "MoCo" -> "moco", "MAE" -> "mae",
/// "RelativeLoc" -> "pretext"; "core" for the engine's own types; "" for a name that is not
/// MMSelfSup's.
[[nodiscard]] SELFSUP_CORE_API std::string zoo_plugin(const std::string& type);

/// Throws one ConfigError: "<what>: N problems (<when>):\n  <problem>\n ...".
SELFSUP_CORE_API void throw_problems(const std::vector<std::string>& problems,
                                     const std::string& what, const std::string& when);

} // namespace selfsup::core
