#pragma once
// Schema: the arguments a registered type accepts (name, type, default, doc). The registry
// checks a config against it before the factory runs: unknown keys, wrong types and missing
// required keys are ConfigErrors naming the JSON path; absent optional keys get defaults.
#include <string>
#include <vector>

#include <selfsup/config.h>
#include <selfsup/export.h>
#include <selfsup/json.h>

namespace selfsup {

enum class ArgType { Any, Bool, Int, Float, String, IntList, FloatList, StringList, List, Dict };

SELFSUP_SDK_API const char* arg_type_name(ArgType t);

struct ArgSpec {
  std::string name;
  ArgType type = ArgType::Any;
  bool required = false;
  Json default_value; // null: absent unless given
  std::string doc;
};

class SELFSUP_SDK_API Schema {
public:
  Schema() = default;
  explicit Schema(std::string doc) : doc_(std::move(doc)) {}

  /// A required argument.
  Schema& required(std::string name, ArgType type, std::string doc);
  /// An optional argument with a default (null: absent unless given).
  Schema& optional(std::string name, ArgType type, Json default_value, std::string doc);
  /// Adds every argument of `base` not yet declared here.
  Schema& extend(const Schema& base);

  [[nodiscard]] const std::string& doc() const { return doc_; }
  [[nodiscard]] const std::vector<ArgSpec>& args() const { return args_; }
  [[nodiscard]] const ArgSpec* find(const std::string& name) const;

  /// Checks `cfg` (an object; its `type` key is allowed) and returns it with defaults filled.
  [[nodiscard]] Json apply(const Config& cfg) const;
  /// The schema as JSON (for `selfsup list --json --verbose`).
  [[nodiscard]] Json to_json() const;

private:
  std::string doc_;
  std::vector<ArgSpec> args_;
};

} // namespace selfsup
