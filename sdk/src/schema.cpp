#include <selfsup/schema.h>

#include <algorithm>
#include <cmath>
#include <filesystem>
#include <sstream>
#include <stdexcept>

#include <selfsup/errors.h>

#include "nearest.h"

namespace selfsup {

const char* arg_type_name(ArgType t) {
  switch (t) {
  case ArgType::Any:
    return "any";
  case ArgType::Bool:
    return "bool";
  case ArgType::Int:
    return "int";
  case ArgType::Float:
    return "float";
  case ArgType::String:
    return "str";
  case ArgType::IntList:
    return "list[int]";
  case ArgType::FloatList:
    return "list[float]";
  case ArgType::StringList:
    return "list[str]";
  case ArgType::List:
    return "list";
  case ArgType::Dict:
    return "dict";
  }
  return "?";
}

// ---- constraints ----------------------------------------------------------------------

namespace {

std::string number_text(double v) {
  if (std::isfinite(v) && v == std::floor(v) && std::fabs(v) < 1e15)
    return std::to_string(static_cast<long long>(v));
  std::ostringstream s;
  s << v;
  return s.str();
}

Constraint bound(std::string op, double b, std::function<bool(double)> ok) {
  return Constraint{op + " " + number_text(b), [ok = std::move(ok)](const Json& v) {
                      return !v.is_number() || ok(v.as_number());
                    }};
}

} // namespace

namespace check {

Constraint gt(double b) {
  return bound(">", b, [b](double x) { return x > b; });
}
Constraint ge(double b) {
  return bound(">=", b, [b](double x) { return x >= b; });
}
Constraint lt(double b) {
  return bound("<", b, [b](double x) { return x < b; });
}
Constraint le(double b) {
  return bound("<=", b, [b](double x) { return x <= b; });
}
Constraint in(double lo, double hi) {
  return Constraint{"in [" + number_text(lo) + ", " + number_text(hi) + "]",
                    [lo, hi](const Json& v) {
                      return !v.is_number() || (v.as_number() >= lo && v.as_number() <= hi);
                    }};
}

Constraint one_of(std::initializer_list<Json> values) {
  std::vector<Json> allowed(values);
  std::string text = "one of ";
  for (size_t i = 0; i < allowed.size(); ++i) text += (i ? ", " : "") + allowed[i].dump();
  Constraint c{std::move(text), [allowed](const Json& v) {
                 for (const auto& a : allowed)
                   if (a == v && a.type() == v.type()) return true;
                 return false;
               }};
  c.names_type = false;
  return c;
}

Constraint size(size_t n) {
  return Constraint{"of " + std::to_string(n) + (n == 1 ? " value" : " values"),
                    [n](const Json& v) { return !v.is_array() || v.size() == n; }};
}

Constraint non_empty() {
  return Constraint{"of at least one value",
                    [](const Json& v) { return !v.is_array() || v.size() > 0; }};
}

Constraint each(const Constraint& c) {
  return Constraint{"each " + c.text, [holds = c.holds](const Json& v) {
                      if (!v.is_array()) return holds(v);
                      for (const auto& e : v.items())
                        if (!holds(e)) return false;
                      return true;
                    }};
}

namespace {

// A constraint on strings naming a path that `exists` (with `what`: "file"); `also` passes.
Constraint path_check(const char* what, bool (*exists)(const std::filesystem::path&),
                      std::vector<std::string> also) {
  std::string text = std::string("an existing ") + what;
  for (const auto& a : also)
    if (!a.empty()) text += " or " + Json(a).dump(); // "" (none given) goes without saying
  Constraint c{std::move(text), [exists, also = std::move(also)](const Json& v) {
                 if (!v.is_string()) return true;
                 const std::string& s = v.as_string();
                 if (std::find(also.begin(), also.end(), s) != also.end()) return true;
                 try {
                   return !s.empty() && exists(std::filesystem::path(s));
                 } catch (const std::filesystem::filesystem_error&) {
                   return false;
                 }
               }};
  c.names_type = false;
  return c;
}

} // namespace

Constraint existing_path(std::vector<std::string> also) {
  return path_check(
      "path", [](const std::filesystem::path& p) { return std::filesystem::exists(p); },
      std::move(also));
}

Constraint existing_file(std::vector<std::string> also) {
  return path_check(
      "file", [](const std::filesystem::path& p) { return std::filesystem::is_regular_file(p); },
      std::move(also));
}

Constraint existing_dir(std::vector<std::string> also) {
  return path_check(
      "folder", [](const std::filesystem::path& p) { return std::filesystem::is_directory(p); },
      std::move(also));
}

} // namespace check

std::string ArgSpec::describe() const {
  std::string out = arg_type_name(type);
  bool first = true;
  for (const auto& c : constraints) {
    if (first && !c.names_type) {
      out = c.text;
    } else {
      out += (first ? " " : ", ") + c.text;
    }
    first = false;
  }
  return out;
}

std::string ArgSpec::violation(const Json& value) const {
  for (const auto& c : constraints) {
    if (!c.holds || c.holds(value)) continue;
    const std::string expected = c.names_type ? describe() : c.text;
    return "expected " + expected + ", got " + describe_value(value);
  }
  return "";
}

void ArgSpec::check(const Config& cfg, const Json& value) const {
  const std::string what = violation(value);
  if (!what.empty()) cfg.fail_key(name, what);
}

// ---- Schema ---------------------------------------------------------------------------

Schema& Schema::required(std::string name, ArgType type, std::string doc,
                         std::vector<Constraint> constraints) {
  ArgSpec spec;
  spec.name = std::move(name);
  spec.type = type;
  spec.required = true;
  spec.doc = std::move(doc);
  spec.constraints = std::move(constraints);
  return add(std::move(spec));
}

Schema& Schema::optional(std::string name, ArgType type, Json default_value, std::string doc,
                         std::vector<Constraint> constraints) {
  ArgSpec spec;
  spec.name = std::move(name);
  spec.type = type;
  spec.default_value = std::move(default_value);
  spec.doc = std::move(doc);
  spec.constraints = std::move(constraints);
  return add(std::move(spec));
}

Schema& Schema::add(ArgSpec spec) {
  for (auto& a : args_)
    if (a.name == spec.name) {
      a = std::move(spec);
      return *this;
    }
  args_.push_back(std::move(spec));
  validator_ = nullptr; // it would refuse the new key
  return *this;
}

Schema& Schema::extend(const Schema& base) {
  for (const auto& a : base.args_)
    if (!find(a.name)) {
      args_.push_back(a);
      validator_ = nullptr;
    }
  if (doc_.empty()) doc_ = base.doc_;
  return *this;
}

ArgSpec& Schema::arg(const std::string& name, const char* what) {
  for (auto& a : args_)
    if (a.name == name) return a;
  throw std::invalid_argument(std::string("Schema::") + what + ": no argument '" + name +
                              "' is declared");
}

Schema& Schema::component(const std::string& name, std::string kind, std::string default_type) {
  ArgSpec& a = arg(name, "component");
  a.component = std::move(kind);
  a.default_type = std::move(default_type);
  return *this;
}

Schema& Schema::nested(const std::string& name, const Schema& fields) {
  arg(name, "nested").fields = std::make_shared<const Schema>(fields);
  return *this;
}

Schema& Schema::validator(std::function<void(const Config&)> check) {
  validator_ = std::move(check);
  return *this;
}

const ArgSpec* Schema::find(const std::string& name) const {
  for (const auto& a : args_)
    if (a.name == name) return &a;
  return nullptr;
}

namespace {

bool matches(const Json& v, ArgType t) {
  auto all = [&](auto pred) {
    if (!v.is_array()) return false;
    for (const auto& e : v.items())
      if (!pred(e)) return false;
    return true;
  };
  switch (t) {
  case ArgType::Any:
    return true;
  case ArgType::Bool:
    return v.is_bool();
  case ArgType::Int:
    return v.is_int();
  case ArgType::Float:
    return v.is_number();
  case ArgType::String:
    return v.is_string();
  case ArgType::IntList:
    return all([](const Json& e) { return e.is_int(); });
  case ArgType::FloatList:
    return all([](const Json& e) { return e.is_number(); });
  case ArgType::StringList:
    return all([](const Json& e) { return e.is_string(); });
  case ArgType::List:
    return v.is_array();
  case ArgType::Dict:
    return v.is_object();
  }
  return false;
}

} // namespace

namespace {

// Where apply() throws, collect() appends.
struct Report {
  std::vector<std::string>* problems; // null: throw the first

  void at(const Config& cfg, std::string_view key, const std::string& what) const {
    if (!problems) cfg.fail_key(key, what);
    problems->push_back(cfg.path_of(key) + ": " + what);
  }
};

// Checks `cfg` against `schema` (keys, types, constraints, required keys); fills `out` with
// the given values and the defaults when it is not null.
void check_node(const Schema& schema, const Config& cfg, Json* out, const Report& report) {
  if (!cfg.is_object()) {
    const std::string what = std::string("expected a dict, got ") + describe_value(cfg.json());
    if (!report.problems) cfg.fail(what);
    report.problems->push_back(cfg.where() + ": " + what);
    return;
  }
  if (out)
    if (const Json* t = cfg.json().find("type")) out->set("type", *t);
  for (const auto& key : cfg.keys()) {
    if (key == "type" && !schema.find(key)) continue; // the registry's type name
    const ArgSpec* spec = schema.find(key);
    if (!spec) {
      std::string known;
      std::vector<std::string> names;
      for (const auto& a : schema.args()) {
        known += (known.empty() ? "" : ", ") + a.name;
        names.push_back(a.name);
      }
      std::string what = "unknown key (accepted: " + (known.empty() ? "none" : known) + ")";
      const std::string near = detail::nearest(key, names);
      if (!near.empty()) what += "; did you mean '" + near + "'?";
      report.at(cfg, key, what);
      continue;
    }
    const Json& v = *cfg.json().find(key);
    if (v.is_null() && !spec->required) continue; // explicit null = use the default / absent
    if (v.is_null() && report.problems) continue; // "required key is missing", below
    if (!matches(v, spec->type)) {
      report.at(cfg, key,
                std::string("expected ") + arg_type_name(spec->type) + ", got " +
                    describe_value(v));
      continue;
    }
    const std::string broken = spec->violation(v);
    if (!broken.empty()) report.at(cfg, key, broken);
  }
  for (const auto& a : schema.args()) {
    const Json* v = cfg.json().find(a.name);
    if (v && !v->is_null()) {
      if (out) out->set(a.name, *v);
    } else if (a.required) {
      report.at(cfg, a.name,
                std::string("required key is missing (") + arg_type_name(a.type) + ": " + a.doc +
                    ")");
    } else if (!a.default_value.is_null()) {
      if (out) out->set(a.name, a.default_value);
      if (report.problems) { // a default may name a folder this machine lacks
        const std::string broken = a.violation(a.default_value);
        if (!broken.empty()) report.at(cfg, a.name, broken + " (the default)");
      }
    }
  }
}

} // namespace

Json Schema::apply(const Config& cfg) const {
  Json out = Json::object();
  check_node(*this, cfg, &out, Report{nullptr});
  return out;
}

void Schema::collect(const Config& cfg, std::vector<std::string>& problems) const {
  check_node(*this, cfg, nullptr, Report{&problems});
}

Json Schema::to_json() const {
  Json args = Json::array();
  for (const auto& a : args_) {
    Json j = Json::object({{"name", a.name}, {"type", arg_type_name(a.type)}});
    j.set("required", a.required);
    if (!a.required) j.set("default", a.default_value);
    if (!a.constraints.empty()) j.set("constraint", a.describe());
    j.set("doc", a.doc);
    args.push_back(std::move(j));
  }
  return Json::object({{"doc", doc_}, {"args", args}});
}

} // namespace selfsup
