#include <selfsup/core/config_file.h>

#include <algorithm>
#include <cmath>
#include <cctype>
#include <filesystem>
#include <fstream>
#include <sstream>

#include <selfsup/config.h>
#include <selfsup/errors.h>

namespace fs = std::filesystem;

namespace selfsup::core {

namespace {

// A config is a small text file: anything else (a folder, a device such as /dev/zero, a
// FIFO, a file of gigabytes) is refused before reading, so it can neither hang nor eat memory.
constexpr std::uintmax_t kMaxConfigBytes = 16u << 20;

std::string read_text(const fs::path& p, const std::string& referrer) {
  const std::string who = referrer.empty() ? p.string() : referrer + ": base config " + p.string();
  std::error_code ec;
  const fs::file_status st = fs::status(p, ec);
  if (fs::exists(st) && !fs::is_regular_file(st)) throw ConfigError(who + ": not a regular file");
  if (fs::is_regular_file(st)) {
    const std::uintmax_t size = fs::file_size(p, ec);
    if (!ec && size > kMaxConfigBytes)
      throw ConfigError(who + ": " + std::to_string(size) + " bytes; a config may have at most " +
                        std::to_string(kMaxConfigBytes));
  }
  std::ifstream in(p, std::ios::binary);
  if (!in) {
    throw ConfigError(referrer.empty() ? p.string() + ": cannot open config file"
                                       : referrer + ": base config " + p.string() + " not found");
  }
  std::ostringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

void strip_delete(Json& j) {
  if (j.is_object()) {
    j.erase("_delete_");
    for (size_t i = 0; i < j.size(); ++i) strip_delete(j.at(i));
  } else if (j.is_array()) {
    for (size_t i = 0; i < j.size(); ++i) strip_delete(j.at(i));
  }
}

Json load_recursive(const fs::path& file, std::vector<fs::path>& stack,
                    const std::string& referrer) {
  std::error_code ec;
  fs::path canonical = fs::weakly_canonical(file, ec);
  if (std::find(stack.begin(), stack.end(), canonical) != stack.end())
    throw ConfigError(file.string() + ": _base_ cycle (" + referrer + " inherits it again)");
  Json self = Json::parse(read_text(file, referrer), file.string());
  if (!self.is_object())
    throw ConfigError(file.string() + ": a config file must hold a JSON object");
  stack.push_back(canonical);
  Json merged = Json::object();
  if (const Json* base = self.find("_base_")) {
    std::vector<Json> bases;
    if (base->is_string()) {
      bases.push_back(*base);
    } else if (base->is_array()) {
      bases = base->items();
    } else {
      throw ConfigError(file.string() + ": _base_: expected a path or a list of paths, got " +
                        describe_value(*base));
    }
    for (size_t i = 0; i < bases.size(); ++i) {
      if (!bases[i].is_string())
        throw ConfigError(file.string() + ": _base_[" + std::to_string(i) +
                          "]: expected a path, got " + describe_value(bases[i]));
      fs::path p = file.parent_path() / bases[i].as_string();
      Json b = load_recursive(p, stack, file.string());
      // Keys defined by two bases are an error in MMEngine; follow it.
      for (const auto& k : b.keys())
        if (merged.find(k))
          throw ConfigError(file.string() + ": _base_ files define '" + k + "' twice");
      merge_config(merged, b);
    }
    self.erase("_base_");
  }
  merge_config(merged, self);
  stack.pop_back();
  return merged;
}

std::string trim(const std::string& s) {
  size_t a = 0, b = s.size();
  while (a < b && std::isspace(static_cast<unsigned char>(s[a]))) ++a;
  while (b > a && std::isspace(static_cast<unsigned char>(s[b - 1]))) --b;
  return s.substr(a, b - a);
}

// Splits on commas at bracket depth 0.
std::vector<std::string> split_top(const std::string& s) {
  std::vector<std::string> parts;
  int depth = 0;
  char quote = 0;
  std::string cur;
  for (char c : s) {
    if (quote) {
      if (c == quote) quote = 0;
    } else if (c == '"' || c == '\'') {
      quote = c;
    } else if (c == '[' || c == '(') {
      ++depth;
    } else if (c == ']' || c == ')') {
      --depth;
    } else if (c == ',' && depth == 0) {
      parts.push_back(cur);
      cur.clear();
      continue;
    }
    cur += c;
  }
  parts.push_back(cur);
  return parts;
}

Json parse_scalar(const std::string& t) {
  if (t.size() >= 2 && (t.front() == '"' || t.front() == '\'') && t.back() == t.front())
    return Json(t.substr(1, t.size() - 2));
  if (t == "true" || t == "True") return Json(true);
  if (t == "false" || t == "False") return Json(false);
  if (t == "null" || t == "None") return Json();
  if (!t.empty()) {
    char* end = nullptr;
    errno = 0;
    long long i = std::strtoll(t.c_str(), &end, 10);
    if (end && *end == 0 && errno == 0) return Json(int64_t(i));
    double d = std::strtod(t.c_str(), &end);
    if (end && *end == 0) {
      if (!std::isfinite(d))
        throw ConfigError("--cfg-options value '" + t +
                          "': not a finite number (JSON has no infinity or NaN)");
      return Json(d);
    }
  }
  if (!t.empty() && (t.front() == '{')) return Json::parse(t, "--cfg-options value");
  return Json(t);
}

} // namespace

void merge_config(Json& base, const Json& child, const std::string& path) {
  for (size_t i = 0; i < child.size(); ++i) {
    const std::string& key = child.keys()[i];
    if (key == "_delete_") continue;
    const Json& value = child.at(i);
    Json* existing = base.find(key);
    const std::string sub = path.empty() ? key : path + "." + key;
    bool replace = value.is_object() && value.find("_delete_") &&
                   value.find("_delete_")->is_bool() && value.find("_delete_")->as_bool();
    if (existing && existing->is_object() && value.is_object() && !replace) {
      merge_config(*existing, value, sub);
    } else {
      Json v = value;
      strip_delete(v);
      base.set(key, std::move(v));
    }
  }
}

Json load_config_file(const std::string& path) {
  std::vector<fs::path> stack;
  Json cfg = load_recursive(fs::path(path), stack, "");
  strip_delete(cfg);
  return cfg;
}

Json parse_override_value(const std::string& text) {
  std::string t = trim(text);
  if (!t.empty() && (t.front() == '[' || t.front() == '(')) {
    char close = t.front() == '[' ? ']' : ')';
    if (t.back() != close)
      throw ConfigError("--cfg-options: unbalanced brackets in '" + text + "'");
    std::string inner = trim(t.substr(1, t.size() - 2));
    Json list = Json::array();
    if (inner.empty()) return list;
    for (const auto& part : split_top(inner)) list.push_back(parse_override_value(part));
    return list;
  }
  auto parts = split_top(t);
  if (parts.size() > 1 && !(t.front() == '"' || t.front() == '\'' || t.front() == '{')) {
    Json list = Json::array();
    for (const auto& part : parts) list.push_back(parse_override_value(part));
    return list;
  }
  return parse_scalar(t);
}

void apply_override(Json& cfg, const std::string& assignment) {
  auto eq = assignment.find('=');
  if (eq == std::string::npos || eq == 0)
    throw ConfigError("--cfg-options: expected KEY=VALUE, got '" + assignment + "'");
  std::string key = trim(assignment.substr(0, eq));
  Json value = parse_override_value(assignment.substr(eq + 1));
  Json* node = &cfg;
  std::string path;
  size_t start = 0;
  while (true) {
    size_t dot = key.find('.', start);
    std::string part =
        key.substr(start, dot == std::string::npos ? std::string::npos : dot - start);
    if (part.empty()) throw ConfigError("--cfg-options: empty key component in '" + key + "'");
    bool last = dot == std::string::npos;
    std::string here = path.empty() ? part : path + "." + part;
    if (node->is_array()) {
      bool numeric = std::all_of(part.begin(), part.end(), ::isdigit);
      // More digits than any list could need is simply out of range (no stoul overflow).
      size_t idx = numeric && part.size() <= 9 ? size_t(std::stoul(part)) : node->size();
      if (!numeric || idx >= node->size())
        throw ConfigError(here + ": --cfg-options index '" + part +
                          "' is not valid for a list of " + std::to_string(node->size()));
      if (last) {
        node->at(idx) = value;
        return;
      }
      node = &node->at(idx);
    } else {
      if (!node->is_object() && !node->is_null())
        throw ConfigError(here + ": --cfg-options cannot set a key inside " +
                          (path.empty() ? std::string("<root>") : path) + ", which is a " +
                          node->type_name());
      if (last) {
        node->set(part, value);
        return;
      }
      Json* next = node->find(part);
      if (!next) next = &node->set(part, Json::object());
      node = next;
    }
    path = here;
    start = dot + 1;
  }
}

void apply_overrides(Json& cfg, const std::vector<std::string>& assignments) {
  for (const auto& a : assignments) apply_override(cfg, a);
}

} // namespace selfsup::core
