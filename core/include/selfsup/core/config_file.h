#pragma once
// Config files with MMEngine semantics: `_base_` (a path or list of paths relative to the
// file, recursive), recursive dict merge, `"_delete_": true` to replace a dict, and
// `--cfg-options key.path=value` overrides with typed values.
#include <string>
#include <vector>

#include <selfsup/core/export.h>
#include <selfsup/json.h>

namespace selfsup::core {

/// Reads a config file and everything it inherits; the result has no `_base_` or `_delete_`.
/// Errors (missing file, bad JSON, a cycle, a bad `_base_`) name the file.
SELFSUP_CORE_API Json load_config_file(const std::string& path);

/// Merges `child` into `base` (child wins; dicts merge recursively unless the child dict has
/// `"_delete_": true`). `path` is the JSON path of `base`, for messages.
SELFSUP_CORE_API void merge_config(Json& base, const Json& child, const std::string& path = "");

/// Parses an override value like MMEngine: ints, floats, true/false, null/None, quoted or bare
/// strings, lists in brackets (nested) or bare comma-separated lists.
SELFSUP_CORE_API Json parse_override_value(const std::string& text);

/// Applies one `a.b.c=value` override (numeric keys index into lists). Intermediate dicts
/// are created; a key into a non-dict is a ConfigError naming the path.
SELFSUP_CORE_API void apply_override(Json& cfg, const std::string& assignment);
SELFSUP_CORE_API void apply_overrides(Json& cfg, const std::vector<std::string>& assignments);

} // namespace selfsup::core
