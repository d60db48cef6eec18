#pragma once
// Config files with MMEngine's semantics (mmengine 0.8.4 Config; docs/configs.md and
// docs/compatibility.md): `_base_` (a path or list of paths relative to the file, recursive;
// two bases may not define the same key), recursive dict merge (a dict over a non-dict is an
// error; `"_delete_"` with any truthy value replaces instead), references to the merged bases
// (`{{_base_.a.b}}`, unquoted as in mmengine or quoted, and the variable form `"_base_.a.b"`),
// and `--cfg-options key.path=value` overrides parsed as MMEngine's DictAction.
#include <string>
#include <vector>

#include <selfsup/core/export.h>
#include <selfsup/json.h>

namespace selfsup::core {

/// Reads a config file and everything it inherits; the result has no `_base_` or `_delete_`.
/// Errors (missing file, bad JSON, a cycle, a bad `_base_`) name the file.
SELFSUP_CORE_API Json load_config_file(const std::string& path);

/// Merges `child` into `base` as mmengine's Config._merge_a_into_b: the child wins; a dict
/// merges into a dict unless it holds a truthy `_delete_`; a dict over a value that is not a
/// dict (null included) is a ConfigError naming the key. `path` is the JSON path of `base`.
SELFSUP_CORE_API void merge_config(Json& base, const Json& child, const std::string& path = "");

/// Parses an override value as MMEngine's DictAction: quotes stripped at every level ('12' is
/// the int 12), (..) and [..] lists (nested), bare comma lists, Python ints and floats,
/// true/false in any case, None (and null); a {...} element is a JSON object (commas inside
/// it do not split). Anything else is a string.
SELFSUP_CORE_API Json parse_override_value(const std::string& text);

/// Applies one `a.b.c=value` override as mmengine's merge_from_dict: {a: {b: {c: value}}}
/// merged into `cfg` (numeric keys index into lists; a dict value merges into a dict);
/// missing dicts are created; a key into a non-dict is a ConfigError naming the path.
SELFSUP_CORE_API void apply_override(Json& cfg, const std::string& assignment);
SELFSUP_CORE_API void apply_overrides(Json& cfg, const std::vector<std::string>& assignments);

} // namespace selfsup::core
