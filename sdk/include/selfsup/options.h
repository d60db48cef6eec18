#pragma once
// OptionTable: one declaration of a type's options, from which come its Schema (for the
// registry's pre-check and `selfsup list --verbose`), the parsing of a config into the
// options struct, and the range checks. In the spirit of PyTorch's TORCH_ARG options (the
// default sits beside the field) and TensorRT's PluginFieldCollection (the type publishes the
// fields it accepts):
//
//   struct NonLinearNeckOptions {
//     NonLinearNeckOptions(int64_t in, int64_t hid, int64_t out);   // the required ones
//     static selfsup::OptionTable<NonLinearNeckOptions> table();
//     TORCH_ARG(int64_t, in_channels);
//     TORCH_ARG(int64_t, num_layers) = 2;                            // the default, once
//   private:
//     NonLinearNeckOptions() = default;                              // the table's prototype
//   };
//
//   selfsup::OptionTable<NonLinearNeckOptions> NonLinearNeckOptions::table() {
//     using O = NonLinearNeckOptions;
//     using namespace selfsup::check;
//     return selfsup::OptionTable<O>("MLP projection, as MMSelfSup's NonLinearNeck", O())
//         .required("in_channels", &O::in_channels_, "input features", gt(0))
//         .optional("num_layers", &O::num_layers_, "number of fc layers", ge(1));
//   }
//
//   r.add<Neck>("NonLinearNeck", &make_nonlinear_neck, NonLinearNeckOptions::table().schema());
//   auto options = NonLinearNeckOptions::table().parse(cfg);   // in the factory
//
// A row names the key, the member (a pointer to it; TORCH_ARG's `name_` from inside the
// struct), the doc and any constraints (selfsup::check::gt, ge, in, one_of, size, each...).
// The default of an optional row is the member's value in the prototype; a member of type
// std::optional<T> has no default ("absent unless given"). Rules that tie several options
// together go in `rule()`. Member types: bool, int, int64_t, float, double, std::string,
// std::vector of int, int64_t, double, std::string, std::optional of those, selfsup::Config (a
// sub-config such as a loss, built later by type name, keeping its JSON path), selfsup::Json
// (any value), and any struct with its own `static OptionTable<S> table()` (a nested dict,
// e.g. bricks::NormCfg). Other types specialise selfsup::OptionCodec.
//
// For the pre-flight check of a whole config (Registry::validate), a row that holds a
// registered component says so with `.component(kind)` (a head's `loss`, a list of transform
// dicts), a Config row that is a dict of known keys with `.nested(schema)`, and a string that
// names a file or folder with a constraint (check::existing_file, existing_dir). A nested
// struct with its own table is described as a nested dict by itself; the rules run there too.
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <type_traits>
#include <utility>
#include <vector>

#include <selfsup/config.h>
#include <selfsup/json.h>
#include <selfsup/schema.h>

namespace selfsup {

template <class O> class OptionTable;

/// How a member type is described, written as JSON and read from a Config.
template <class T, class = void> struct OptionCodec; // no codec: specialise it for T

namespace detail {
template <class T, ArgType kArg> struct PlainCodec {
  static constexpr ArgType kType = kArg;
  static Json to_json(const T& v) { return Json(v); }
  static T read(const Config& c) { return c.as<T>(); }
};
template <class T, ArgType kArg> struct ListCodec {
  static constexpr ArgType kType = kArg;
  static Json to_json(const std::vector<T>& v) {
    Json out = Json::array();
    for (const auto& e : v) out.push_back(Json(e));
    return out;
  }
  static std::vector<T> read(const Config& c) { return c.as<std::vector<T>>(); }
};
} // namespace detail

template <> struct OptionCodec<bool> : detail::PlainCodec<bool, ArgType::Bool> {};
template <> struct OptionCodec<int> : detail::PlainCodec<int, ArgType::Int> {};
template <> struct OptionCodec<int64_t> : detail::PlainCodec<int64_t, ArgType::Int> {};
template <> struct OptionCodec<double> : detail::PlainCodec<double, ArgType::Float> {};
template <> struct OptionCodec<std::string> : detail::PlainCodec<std::string, ArgType::String> {};
template <> struct OptionCodec<float> {
  static constexpr ArgType kType = ArgType::Float;
  static Json to_json(float v) { return Json(double(v)); }
  static float read(const Config& c) { return c.as<float>(); }
};
template <> struct OptionCodec<std::vector<int>> : detail::ListCodec<int, ArgType::IntList> {};
template <>
struct OptionCodec<std::vector<int64_t>> : detail::ListCodec<int64_t, ArgType::IntList> {};
template <>
struct OptionCodec<std::vector<double>> : detail::ListCodec<double, ArgType::FloatList> {};
template <>
struct OptionCodec<std::vector<std::string>> : detail::ListCodec<std::string, ArgType::StringList> {
};

/// A sub-config (e.g. a head's `loss`), kept as a path-aware view for building by type name.
template <> struct OptionCodec<Config> {
  static constexpr ArgType kType = ArgType::Dict;
  static Json to_json(const Config& v) { return v.json(); }
  static Config read(const Config& c) { return c; }
};

/// Any JSON value, unchecked.
template <> struct OptionCodec<Json> {
  static constexpr ArgType kType = ArgType::Any;
  static Json to_json(const Json& v) { return v; }
  static Json read(const Config& c) { return c.json(); }
};

/// Absent unless given: the default is null.
template <class T> struct OptionCodec<std::optional<T>> {
  static constexpr ArgType kType = OptionCodec<T>::kType;
  static Json to_json(const std::optional<T>& v) {
    return v ? OptionCodec<T>::to_json(*v) : Json();
  }
  static std::optional<T> read(const Config& c) { return OptionCodec<T>::read(c); }
};

/// A nested options struct with its own table: a dict checked and parsed by that table.
template <class T> struct OptionCodec<T, std::void_t<decltype(T::table())>> {
  static constexpr ArgType kType = ArgType::Dict;
  static Json to_json(const T& v) { return T::table().to_json(v); }
  static T read(const Config& c) { return T::table().parse(c); }
};

namespace detail {
/// The schema of a member's keys when it is a struct with its own table (or an optional one).
template <class T, class = void> struct NestedFields {
  static std::shared_ptr<const Schema> get() { return nullptr; }
};
template <class T> struct NestedFields<T, std::void_t<decltype(T::table())>> {
  static std::shared_ptr<const Schema> get() {
    return std::make_shared<const Schema>(T::table().schema());
  }
};
template <class T> struct NestedFields<std::optional<T>> : NestedFields<T> {};
} // namespace detail

template <class O> class OptionTable {
public:
  /// `prototype` holds the defaults (its required members are not read).
  OptionTable(std::string doc, O prototype)
      : own_(std::move(doc)), prototype_(std::move(prototype)) {}

  /// A key that must be given.
  template <class T, class... C>
  OptionTable& required(std::string name, T O::*member, std::string doc, C&&... constraints) {
    return row(std::move(name), member, true, std::move(doc),
               {Constraint(std::forward<C>(constraints))...});
  }
  /// A key whose default is the prototype's value of `member`.
  template <class T, class... C>
  OptionTable& optional(std::string name, T O::*member, std::string doc, C&&... constraints) {
    return row(std::move(name), member, false, std::move(doc),
               {Constraint(std::forward<C>(constraints))...});
  }
  /// Sets the schema type of the last row where its member type does not say it, e.g. a
  /// Config member that holds a list of transform dicts: `.as(ArgType::List)`.
  OptionTable& as(ArgType type) {
    ArgSpec last = own_.args().back();
    last.type = type;
    own_.add(std::move(last));
    return *this;
  }
  /// The last row holds a registered component of `kind`: a dict with a `type` or a list of
  /// them (lists nest). `default_type` is used when the dict has no `type`. The pre-flight
  /// check (Registry::validate) checks its type and that type's schema, to any depth.
  OptionTable& component(std::string kind, std::string default_type = "") {
    own_.component(own_.args().back().name, std::move(kind), std::move(default_type));
    return *this;
  }
  /// The last row is a dict whose keys follow `fields` (e.g. a dataloader dict); for a
  /// component row, the keys read beside the component's own (a dataset's `pipeline`).
  OptionTable& nested(const Schema& fields) {
    own_.nested(own_.args().back().name, fields);
    return *this;
  }
  /// Keys read by someone else (a base class such as BaseModel or ParamScheduler): they
  /// join the schema, before this table's own keys, and parse() accepts them.
  OptionTable& inherit(const Schema& base) {
    base_ = base;
    return *this;
  }
  /// A rule over several options, run by parse() after every key is read; it throws
  /// through `cfg.fail_key(...)` so the message names the JSON path.
  OptionTable& rule(std::function<void(const O&, const Config&)> check) {
    rules_.push_back(std::move(check));
    return *this;
  }

  /// The schema: inherited keys, then this table's, with defaults and constraints; its
  /// validator runs parse() (the rules, the member conversions) for the pre-flight check.
  [[nodiscard]] Schema schema() const {
    Schema out(own_.doc());
    for (const auto& a : base_.args())
      if (!own_.find(a.name)) out.add(a);
    for (const auto& a : own_.args()) out.add(a);
    out.validator([table = *this](const Config& cfg) { (void)table.parse(cfg); });
    return out;
  }

  /// Checks `cfg` against the schema (keys, types, constraints; errors name the JSON path),
  /// reads every given key into a copy of the prototype and runs the rules.
  [[nodiscard]] O parse(const Config& cfg) const {
    const Config filled = cfg.derive(schema().apply(cfg), cfg.path()); // keeps its registry
    O out = prototype_;
    for (const auto& f : fields_)
      if (filled.has(f.name)) f.read(out, filled[f.name]);
    for (const auto& r : rules_) r(out, filled);
    return out;
  }

  /// The options as a config dict (members without a value are left out).
  [[nodiscard]] Json to_json(const O& options) const {
    Json out = Json::object();
    for (const auto& f : fields_) {
      Json v = f.write(options);
      if (!v.is_null()) out.set(f.name, std::move(v));
    }
    return out;
  }

  /// Checks options built in C++ (not parsed) against the constraints and rules; `where`
  /// names them in messages, e.g. "NonLinearNeck".
  void validate(const O& options, const std::string& where) const {
    (void)parse(Config(to_json(options), where));
  }

  [[nodiscard]] const O& prototype() const { return prototype_; }

private:
  struct Field {
    std::string name;
    std::function<void(O&, const Config&)> read;
    std::function<Json(const O&)> write;
  };

  template <class T>
  OptionTable& row(std::string name, T O::*member, bool required, std::string doc,
                   std::vector<Constraint> constraints) {
    using Codec = OptionCodec<T>;
    ArgSpec spec;
    spec.name = name;
    spec.type = Codec::kType;
    spec.required = required;
    if (!required) spec.default_value = Codec::to_json(prototype_.*member);
    spec.doc = std::move(doc);
    spec.constraints = std::move(constraints);
    spec.fields = detail::NestedFields<T>::get();
    own_.add(std::move(spec));
    fields_.push_back(Field{std::move(name),
                            [member](O& o, const Config& c) { o.*member = Codec::read(c); },
                            [member](const O& o) { return Codec::to_json(o.*member); }});
    return *this;
  }

  Schema own_;
  Schema base_;
  O prototype_;
  std::vector<Field> fields_;
  std::vector<std::function<void(const O&, const Config&)>> rules_;
};

} // namespace selfsup
