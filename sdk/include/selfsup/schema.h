#pragma once
// Schema: the arguments a registered type accepts (name, type, default, doc, constraints).
// The registry checks a config against it before the factory runs: unknown keys, wrong
// types, missing required keys and values outside their constraints are ConfigErrors naming
// the JSON path (`model.neck.hid_channels: expected int > 0, got -1`); absent optional keys
// get defaults. Types write their schema through an OptionTable (<selfsup/options.h>), which
// derives it from the one declaration of their options.
//
// For the pre-flight check of a whole config (Registry::validate), a schema also says which
// keys hold registered components (`model.backbone` a backbone, `pipeline` a list of
// transforms), which are dicts with keys of their own (`norm_cfg`), and which strings name
// files or folders that must exist (check::existing_file, existing_dir).
#include <functional>
#include <initializer_list>
#include <memory>
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
/// A string naming an existing path, regular file or folder (relative paths from the working
/// directory). `also` lists strings accepted as they are, e.g. `existing_file({"auto"})`.
/// Values that are no string pass (their type is checked on its own).
SELFSUP_SDK_API Constraint existing_path(std::vector<std::string> also = {});
SELFSUP_SDK_API Constraint existing_file(std::vector<std::string> also = {});
SELFSUP_SDK_API Constraint existing_dir(std::vector<std::string> also = {});
} // namespace check

class Schema;

struct SELFSUP_SDK_API ArgSpec {
  std::string name;
  ArgType type = ArgType::Any;
  bool required = false;
  Json default_value; // null: absent unless given
  std::string doc;
  std::vector<Constraint> constraints; // checked on given values
  /// The registry kind of the component the value holds: a dict with a `type` (or, for a
  /// list, each element; lists nest, as MultiView's list of pipelines). "" when none.
  std::string component;
  /// The component's type when its dict has no `type` (BaseModel's data_preprocessor).
  std::string default_type;
  /// A dict value: the schema of its keys (nested options such as norm_cfg). For a component:
  /// the keys read beside the component's own (a dataset's `pipeline` and `indices`).
  std::shared_ptr<const Schema> fields;

  /// "int > 0", "list[int] of 4 values, each >= 1": the type and its constraints.
  [[nodiscard]] std::string describe() const;
  /// "expected <type> <constraint>, got <value>" for the first constraint `value` breaks,
  /// or "" when it follows them all.
  [[nodiscard]] std::string violation(const Json& value) const;
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
  /// Marks the argument `name` as holding a registered component of `kind` (see
  /// ArgSpec::component); `default_type` is used when its dict has no `type`.
  Schema& component(const std::string& name, std::string kind, std::string default_type = "");
  /// Marks the argument `name` as a dict whose keys follow `fields` (for a component: keys
  /// read beside the component's own).
  Schema& nested(const std::string& name, const Schema& fields);
  /// A check of a whole node, run by Registry::validate once its keys have passed (an
  /// OptionTable's rules over several options); it throws ConfigError naming the path.
  /// Adding an argument afterwards (add, extend) drops it, as it would refuse the new key.
  Schema& validator(std::function<void(const Config&)> check);
  [[nodiscard]] const std::function<void(const Config&)>& validator() const { return validator_; }

  [[nodiscard]] const std::string& doc() const { return doc_; }
  [[nodiscard]] const std::vector<ArgSpec>& args() const { return args_; }
  [[nodiscard]] const ArgSpec* find(const std::string& name) const;

  /// Checks `cfg` (an object; its `type` key is allowed): keys, types, constraints. Returns
  /// it with defaults filled.
  [[nodiscard]] Json apply(const Config& cfg) const;
  /// Like apply(), but appends every problem to `problems` ("<json path>: <what>", the text
  /// apply() would throw) instead of throwing at the first; the constraints of defaults are
  /// checked too (a default data folder may be missing on this machine). Does not descend
  /// into nested dicts or components (Registry::validate does).
  void collect(const Config& cfg, std::vector<std::string>& problems) const;
  /// The schema as JSON (for `selfsup list --json --verbose`).
  [[nodiscard]] Json to_json() const;

private:
  ArgSpec& arg(const std::string& name, const char* what);

  std::string doc_;
  std::vector<ArgSpec> args_;
  std::function<void(const Config&)> validator_;
};

} // namespace selfsup
