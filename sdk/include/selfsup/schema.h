#pragma once
// Schema: the arguments a registered type accepts (name, type, default, doc, constraints).
// The registry checks a config against it before the factory runs: unknown keys, wrong
// types, missing required keys and values outside their constraints are ConfigErrors naming
// the JSON path (`model.neck.hid_channels: expected int > 0, got -1`); absent optional keys
// get defaults. Types write their schema through an OptionTable (<selfsup/options.h>), which
// derives it from the one declaration of their options.
#include <functional>
#include <initializer_list>
#include <string>
#include <vector>

#include <selfsup/config.h>
#include <selfsup/export.h>
#include <selfsup/json.h>

namespace selfsup {

enum class ArgType { Any, Bool, Int, Float, String, IntList, FloatList, StringList, List, Dict };

SELFSUP_SDK_API const char* arg_type_name(ArgType t);

/// A rule a value must follow, checked on its JSON form: `text` reads after "expected"
/// ("> 0", "in [0, 1]", "one of \"mean\", \"sum\"", "2 values"); `holds` says whether a value
/// of the right type follows it. Build them with the helpers in `selfsup::check`.
struct SELFSUP_SDK_API Constraint {
  std::string text;
  std::function<bool(const Json&)> holds;
  /// Whether messages put the type before the text ("int > 0"), or not ("one of 18, 34").
  bool names_type = true;
};

namespace check {
/// Numbers (or ints) above, at least, below, at most a bound; `in(lo, hi)` is [lo, hi].
SELFSUP_SDK_API Constraint gt(double bound);
SELFSUP_SDK_API Constraint ge(double bound);
SELFSUP_SDK_API Constraint lt(double bound);
SELFSUP_SDK_API Constraint le(double bound);
SELFSUP_SDK_API Constraint in(double lo, double hi);
/// One of the given values (strings, ints, bools): `one_of({"mean", "sum", "none"})`.
SELFSUP_SDK_API Constraint one_of(std::initializer_list<Json> values);
/// A list of exactly `n` values / of at least one value.
SELFSUP_SDK_API Constraint size(size_t n);
SELFSUP_SDK_API Constraint non_empty();
/// Every element of a list follows `c`: `each(ge(1))`.
SELFSUP_SDK_API Constraint each(const Constraint& c);
} // namespace check

struct SELFSUP_SDK_API ArgSpec {
  std::string name;
  ArgType type = ArgType::Any;
  bool required = false;
  Json default_value; // null: absent unless given
  std::string doc;
  std::vector<Constraint> constraints; // checked on given values

  /// "int > 0", "list[int] of 4 values, each >= 1": the type and its constraints.
  [[nodiscard]] std::string describe() const;
  /// Throws ConfigError(`<cfg path>.<name>: expected <type> <constraint>, got <value>`) if
  /// `value` breaks a constraint.
  void check(const Config& cfg, const Json& value) const;
};

class SELFSUP_SDK_API Schema {
public:
  Schema() = default;
  explicit Schema(std::string doc) : doc_(std::move(doc)) {}

  /// A required argument.
  Schema& required(std::string name, ArgType type, std::string doc,
                   std::vector<Constraint> constraints = {});
  /// An optional argument with a default (null: absent unless given).
  Schema& optional(std::string name, ArgType type, Json default_value, std::string doc,
                   std::vector<Constraint> constraints = {});
  /// Adds an argument, replacing one of the same name.
  Schema& add(ArgSpec spec);
  /// Adds every argument of `base` not yet declared here.
  Schema& extend(const Schema& base);

  [[nodiscard]] const std::string& doc() const { return doc_; }
  [[nodiscard]] const std::vector<ArgSpec>& args() const { return args_; }
  [[nodiscard]] const ArgSpec* find(const std::string& name) const;

  /// Checks `cfg` (an object; its `type` key is allowed): keys, types, constraints. Returns
  /// it with defaults filled.
  [[nodiscard]] Json apply(const Config& cfg) const;
  /// The schema as JSON (for `selfsup list --json --verbose`).
  [[nodiscard]] Json to_json() const;

private:
  std::string doc_;
  std::vector<ArgSpec> args_;
};

} // namespace selfsup
