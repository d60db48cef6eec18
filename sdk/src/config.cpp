#include <selfsup/config.h>

#include <cmath>
#include <limits>

#include <selfsup/registry.h>

namespace selfsup {

std::string describe_value(const Json& v) {
  std::string s = v.dump();
  if (s.size() > 60) s = s.substr(0, 57) + "...";
  return s;
}

Config::Config() : Config(Json::object()) {}

Config::Config(Json value, std::string path)
    : root_(std::make_shared<const Json>(std::move(value))), node_(root_.get()),
      path_(std::move(path)) {}

Config::Config(std::shared_ptr<const Json> root, const Json* node, std::string path)
    : root_(std::move(root)), node_(node), path_(std::move(path)) {}

std::string Config::path_of(std::string_view key) const {
  return path_.empty() ? std::string(key) : path_ + "." + std::string(key);
}

std::vector<std::string> Config::keys() const {
  return node_->is_object() ? node_->keys() : std::vector<std::string>{};
}

bool Config::has(std::string_view key) const {
  const Json* v = node_->find(key);
  return v && !v->is_null();
}

Config Config::operator[](std::string_view key) const {
  if (!node_->is_object()) fail(std::string("expected a dict, got ") + node_->type_name());
  const Json* v = node_->find(key);
  if (!v) throw ConfigError(path_of(key) + ": required key is missing");
  Config child(root_, v, path_of(key));
  child.registry_ = registry_;
  return child;
}

Config Config::at(size_t i) const {
  if (!node_->is_array()) fail(std::string("expected a list, got ") + node_->type_name());
  if (i >= node_->size())
    fail("index " + std::to_string(i) + " out of range (size " + std::to_string(node_->size()) +
         ")");
  Config child(root_, &node_->at(i), where() + "[" + std::to_string(i) + "]");
  child.registry_ = registry_;
  return child;
}

const Registry& Config::registry() const {
  return registry_ ? *registry_ : Registry::global();
}

Config Config::with_registry(const Registry& registry) const {
  Config c = *this;
  c.registry_ = &registry;
  return c;
}

Config Config::derive(Json value, std::string path) const {
  Config c(std::move(value), std::move(path));
  c.registry_ = registry_;
  return c;
}

void Config::fail(const std::string& what) const {
  throw ConfigError(where() + ": " + what);
}

void Config::fail_key(std::string_view key, const std::string& what) const {
  throw ConfigError(path_of(key) + ": " + what);
}

namespace {
[[noreturn]] void mismatch(const Config& c, const char* expected) {
  c.fail(std::string("expected ") + expected + ", got " + describe_value(c.json()));
}
} // namespace

template <> bool Config::as<bool>() const {
  if (!node_->is_bool()) mismatch(*this, "a bool");
  return node_->as_bool();
}

template <> int64_t Config::as<int64_t>() const {
  if (node_->is_int()) return node_->as_int();
  if (node_->type() == Json::Type::Float) {
    double d = node_->as_number();
    if (std::isfinite(d) && d == std::floor(d) && std::fabs(d) < 9e15) return int64_t(d);
  }
  mismatch(*this, "an int");
}

template <> int Config::as<int>() const {
  int64_t v = as<int64_t>();
  if (v < std::numeric_limits<int>::min() || v > std::numeric_limits<int>::max())
    mismatch(*this, "a 32-bit int");
  return int(v);
}

template <> double Config::as<double>() const {
  if (!node_->is_number()) mismatch(*this, "a number");
  return node_->as_number();
}

template <> float Config::as<float>() const {
  return float(as<double>());
}

template <> std::string Config::as<std::string>() const {
  if (!node_->is_string()) mismatch(*this, "a string");
  return node_->as_string();
}

namespace {
template <class T> std::vector<T> as_list(const Config& c) {
  if (!c.is_array()) mismatch(c, "a list");
  std::vector<T> out;
  out.reserve(c.size());
  for (size_t i = 0; i < c.size(); ++i) out.push_back(c.at(i).as<T>());
  return out;
}
} // namespace

template <> std::vector<int64_t> Config::as<std::vector<int64_t>>() const {
  return as_list<int64_t>(*this);
}
template <> std::vector<int> Config::as<std::vector<int>>() const {
  return as_list<int>(*this);
}
template <> std::vector<double> Config::as<std::vector<double>>() const {
  return as_list<double>(*this);
}
template <> std::vector<std::string> Config::as<std::vector<std::string>>() const {
  return as_list<std::string>(*this);
}

} // namespace selfsup
