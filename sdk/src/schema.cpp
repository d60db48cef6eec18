#include <selfsup/schema.h>

#include <cmath>
#include <sstream>

#include <selfsup/errors.h>

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

void ArgSpec::check(const Config& cfg, const Json& value) const {
  for (const auto& c : constraints) {
    if (!c.holds || c.holds(value)) continue;
    const std::string expected = c.names_type ? describe() : c.text;
    cfg.fail_key(name, "expected " + expected + ", got " + describe_value(value));
  }
}

// ---- Schema ---------------------------------------------------------------------------

Schema& Schema::required(std::string name, ArgType type, std::string doc,
                         std::vector<Constraint> constraints) {
  return add(ArgSpec{std::move(name), type, true, Json(), std::move(doc), std::move(constraints)});
}

Schema& Schema::optional(std::string name, ArgType type, Json default_value, std::string doc,
                         std::vector<Constraint> constraints) {
  return add(ArgSpec{std::move(name), type, false, std::move(default_value), std::move(doc),
                     std::move(constraints)});
}

Schema& Schema::add(ArgSpec spec) {
  for (auto& a : args_)
    if (a.name == spec.name) {
      a = std::move(spec);
      return *this;
    }
  args_.push_back(std::move(spec));
  return *this;
}

Schema& Schema::extend(const Schema& base) {
  for (const auto& a : base.args_)
    if (!find(a.name)) args_.push_back(a);
  if (doc_.empty()) doc_ = base.doc_;
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

Json Schema::apply(const Config& cfg) const {
  if (!cfg.is_object()) cfg.fail(std::string("expected a dict, got ") + describe_value(cfg.json()));
  Json out = Json::object();
  if (const Json* t = cfg.json().find("type")) out.set("type", *t);
  for (const auto& key : cfg.keys()) {
    if (key == "type" && !find(key)) continue; // the registry's type name
    const ArgSpec* spec = find(key);
    if (!spec) {
      std::string known;
      for (const auto& a : args_) known += (known.empty() ? "" : ", ") + a.name;
      cfg.fail_key(key, "unknown key (accepted: " + (known.empty() ? "none" : known) + ")");
    }
    const Json& v = *cfg.json().find(key);
    if (v.is_null() && !spec->required) continue; // explicit null = use the default / absent
    if (!matches(v, spec->type))
      cfg.fail_key(key, std::string("expected ") + arg_type_name(spec->type) + ", got " +
                            describe_value(v));
    spec->check(cfg, v);
  }
  for (const auto& a : args_) {
    const Json* v = cfg.json().find(a.name);
    if (v && !v->is_null()) {
      out.set(a.name, *v);
    } else if (a.required) {
      cfg.fail_key(a.name, std::string("required key is missing (") + arg_type_name(a.type) + ": " +
                               a.doc + ")");
    } else if (!a.default_value.is_null()) {
      out.set(a.name, a.default_value);
    }
  }
  return out;
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
