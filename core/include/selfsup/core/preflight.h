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

} // namespace selfsup::core
