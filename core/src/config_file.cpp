#include <selfsup/core/config_file.h>

#include <algorithm>
#include <cctype>
#include <cerrno>
#include <cmath>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <sstream>
#include <string>
#include <vector>

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

std::string join(const std::string& path, const std::string& key) {
  return path.empty() ? key : path + "." + key;
}

bool all_digits(const std::string& s) {
  return !s.empty() && std::all_of(s.begin(), s.end(), [](char c) { return c >= '0' && c <= '9'; });
}

// Python's truth value, which mmengine tests `_delete_` with.
bool truthy(const Json& j) {
  switch (j.type()) {
  case Json::Type::Null:
    return false;
  case Json::Type::Bool:
    return j.as_bool();
  case Json::Type::Int:
  case Json::Type::Float:
    return j.as_number() != 0;
  case Json::Type::String:
    return !j.as_string().empty();
  default:
    return j.size() > 0;
  }
}

// mmengine's Config._merge_a_into_b: `child` (a dict) into `base`. A dict merges into a dict
// unless it holds a truthy `_delete_`; a dict over anything else is an error; any other value
// replaces. With `allow_list_keys` (--cfg-options), digit keys index into lists. `origin`
// prefixes every message (the file, or the override).
void merge_into(Json& base, const Json& child, const std::string& path, bool allow_list_keys,
                const std::string& origin) {
  for (size_t i = 0; i < child.size(); ++i) {
    const std::string& key = child.keys()[i];
    if (key == "_delete_") continue;
    const Json& value = child.at(i);
    const std::string sub = join(path, key);
    Json* existing = nullptr;
    if (base.is_array()) {
      if (!allow_list_keys || !all_digits(key))
        throw ConfigError(origin + sub + ": '" + key + "' is no index of the list at " +
                          (path.empty() ? std::string("<root>") : path));
      // More digits than any list could need is simply out of range (no stoul overflow).
      const size_t idx = key.size() <= 9 ? size_t(std::stoul(key)) : base.size();
      if (idx >= base.size())
        throw ConfigError(origin + sub + ": index " + key + " is out of range for a list of " +
                          std::to_string(base.size()));
      existing = &base.at(idx);
    } else {
      existing = base.find(key);
    }
    const Json* del = value.is_object() ? value.find("_delete_") : nullptr;
    if (value.is_object() && existing && !(del && truthy(*del))) {
      if (existing->is_object() || (allow_list_keys && existing->is_array())) {
        merge_into(*existing, value, sub, allow_list_keys, origin);
        continue;
      }
      throw ConfigError(origin + sub + ": a dict cannot merge into " + describe_value(*existing) +
                        " (" + existing->type_name() +
                        "), the value it overrides; mmengine refuses it too. Add "
                        "\"_delete_\": true to the dict to replace the value");
    }
    Json v = value;
    strip_delete(v);
    if (base.is_array()) {
      *existing = std::move(v);
    } else {
      base.set(key, std::move(v));
    }
  }
}

// ---- base variables: {{_base_.a.b}} and "_base_.a.b" ------------------------------------

bool is_ref_path(const std::string& s, size_t from, size_t to) {
  if (from >= to) return false;
  for (size_t i = from; i < to; ++i) {
    const char c = s[i];
    if (!(std::isalnum(static_cast<unsigned char>(c)) || c == '_' || c == '.')) return false;
  }
  return true;
}

// The dotted path of `{{ _base_.a.b }}` starting at s[i] (mmengine's regex
// \{\{\s*_base_\.([\w\.]+)\s*\}\}), with `end` one past the closing braces; empty if none.
std::string match_braced_ref(const std::string& s, size_t i, size_t& end) {
  if (s.compare(i, 2, "{{") != 0) return "";
  size_t j = i + 2;
  while (j < s.size() && std::isspace(static_cast<unsigned char>(s[j]))) ++j;
  if (s.compare(j, 7, "_base_.") != 0) return "";
  const size_t from = j + 7;
  size_t to = from;
  while (to < s.size() &&
         (std::isalnum(static_cast<unsigned char>(s[to])) || s[to] == '_' || s[to] == '.'))
    ++to;
  size_t k = to;
  while (k < s.size() && std::isspace(static_cast<unsigned char>(s[k]))) ++k;
  if (to == from || s.compare(k, 2, "}}") != 0) return "";
  end = k + 2;
  return s.substr(from, to - from);
}

// mmengine substitutes `{{_base_.x}}` in the file's text before parsing it. In JSON it stands
// unquoted where a value goes; it becomes the string "{{_base_.x}}", resolved after parsing.
// Strings and comments are left alone (a quoted "{{_base_.x}}" is already a string).
std::string quote_braced_refs(const std::string& text) {
  std::string out;
  out.reserve(text.size());
  for (size_t i = 0; i < text.size();) {
    const char c = text[i];
    if (c == '"') {
      size_t j = i + 1;
      while (j < text.size() && text[j] != '"') j += text[j] == '\\' ? 2 : 1;
      j = std::min(j + 1, text.size());
      out.append(text, i, j - i);
      i = j;
    } else if (c == '/' && i + 1 < text.size() && (text[i + 1] == '/' || text[i + 1] == '*')) {
      const bool line = text[i + 1] == '/';
      size_t j = line ? text.find('\n', i) : text.find("*/", i + 2);
      j = j == std::string::npos ? text.size() : j + (line ? 0 : 2);
      out.append(text, i, j - i);
      i = j;
    } else {
      size_t end = 0;
      const std::string ref = match_braced_ref(text, i, end);
      if (ref.empty()) {
        out += c;
        ++i;
      } else {
        out += "\"{{_base_." + ref + "}}\"";
        i = end;
      }
    }
  }
  return out;
}

// The path of a whole-value reference: "{{_base_.a.b}}" (mmengine's form) or "_base_.a.b"
// (the variable form of Python configs, written as a string); empty if `s` is neither.
std::string value_ref(const std::string& s) {
  size_t end = 0;
  std::string ref = match_braced_ref(s, 0, end);
  if (!ref.empty() && end == s.size()) return ref;
  if (s.compare(0, 7, "_base_.") == 0 && is_ref_path(s, 7, s.size())) return s.substr(7);
  return "";
}

const Json& resolve_ref(const Json& bases, const std::string& ref, const std::string& where) {
  const Json* node = &bases;
  std::string walked;
  size_t start = 0;
  while (true) {
    const size_t dot = ref.find('.', start);
    const std::string part = ref.substr(start, dot == std::string::npos ? dot : dot - start);
    const Json* next = nullptr;
    if (node->is_object()) {
      next = node->find(part);
    } else if (node->is_array() && all_digits(part) && part.size() <= 9 &&
               std::stoul(part) < node->size()) {
      next = &node->at(std::stoul(part));
    }
    if (part.empty() || !next) {
      std::string known;
      if (node->is_object())
        for (const auto& k : node->keys()) known += (known.empty() ? "" : ", ") + k;
      throw ConfigError(where + ": _base_." + ref + ": '" + part + "' is not defined in " +
                        (walked.empty() ? std::string("the _base_ configs")
                                        : "_base_." + walked + " (" + node->type_name() + ")") +
                        (known.empty() ? std::string() : "; it has: " + known));
    }
    walked = join(walked, part);
    node = next;
    if (dot == std::string::npos) return *node;
    start = dot + 1;
  }
}

// Replaces every reference in `j` by a copy of the value it names in `bases` (the merged
// _base_ configs of the file, before the file's own keys, as in mmengine).
void substitute_refs(Json& j, const Json* bases, const std::string& path, const std::string& file) {
  if (j.is_string()) {
    const std::string ref = value_ref(j.as_string());
    const std::string where = file + ": " + (path.empty() ? std::string("<root>") : path);
    if (ref.empty()) {
      if (j.as_string().find("{{") != std::string::npos &&
          j.as_string().find("_base_.") != std::string::npos)
        throw ConfigError(where + ": '" + j.as_string() +
                          "': a {{_base_.x}} reference must be the whole value");
      return;
    }
    if (!bases) throw ConfigError(where + ": _base_." + ref + ": this file has no _base_");
    j = resolve_ref(*bases, ref, where);
  } else if (j.is_object()) {
    for (size_t i = 0; i < j.size(); ++i)
      if (!(path.empty() && j.keys()[i] == "_base_"))
        substitute_refs(j.at(i), bases, join(path, j.keys()[i]), file);
  } else if (j.is_array()) {
    for (size_t i = 0; i < j.size(); ++i)
      substitute_refs(j.at(i), bases, path + "[" + std::to_string(i) + "]", file);
  }
}

Json load_recursive(const fs::path& file, std::vector<fs::path>& stack,
                    const std::string& referrer) {
  std::error_code ec;
  fs::path canonical = fs::weakly_canonical(file, ec);
  if (std::find(stack.begin(), stack.end(), canonical) != stack.end())
    throw ConfigError(file.string() + ": _base_ cycle (" + referrer + " inherits it again)");
  Json self = Json::parse(quote_braced_refs(read_text(file, referrer)), file.string());
  if (!self.is_object())
    throw ConfigError(file.string() + ": a config file must hold a JSON object");
  stack.push_back(canonical);
  Json merged = Json::object();
  const Json* base = self.find("_base_");
  if (base) {
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
      for (size_t k = 0; k < b.size(); ++k) merged.set(b.keys()[k], b.at(k));
    }
  }
  substitute_refs(self, base ? &merged : nullptr, "", file.string());
  self.erase("_base_");
  merge_into(merged, self, "", false, file.string() + ": ");
  stack.pop_back();
  return merged;
}

std::string trim(const std::string& s) {
  size_t a = 0, b = s.size();
  while (a < b && std::isspace(static_cast<unsigned char>(s[a]))) ++a;
  while (b > a && std::isspace(static_cast<unsigned char>(s[b - 1]))) --b;
  return s.substr(a, b - a);
}

// ---- --cfg-options values: mmengine's DictAction ----------------------------------------

constexpr int kMaxOverrideDepth = 512;

// Levels of containers: 0 for a scalar, 1 + the deepest element for a list or dict.
size_t json_depth(const Json& j) {
  size_t deepest = 0;
  if (j.is_array() || j.is_object())
    for (size_t i = 0; i < j.size(); ++i) deepest = std::max(deepest, json_depth(j.at(i)));
  return j.is_array() || j.is_object() ? deepest + 1 : 0;
}

// Splits on commas outside brackets, as DictAction's find_next_comma (which knows () and []);
// commas inside a {...} JSON object, and inside its strings, are kept too. Throws on
// unbalanced or crossed brackets.
std::vector<std::string> split_top(const std::string& s, const std::string& text) {
  std::vector<std::string> parts;
  std::string open; // the brackets open so far
  bool in_string = false;
  std::string cur;
  for (size_t i = 0; i < s.size(); ++i) {
    const char c = s[i];
    if (in_string) {
      if (c == '\\' && i + 1 < s.size()) {
        cur += c;
        cur += s[++i];
        continue;
      }
      if (c == '"') in_string = false;
    } else if (c == '"' && open.find('{') != std::string::npos) {
      in_string = true;
    } else if (c == '[' || c == '(' || c == '{') {
      open += c;
      if (open.size() > size_t(kMaxOverrideDepth))
        throw ConfigError("--cfg-options value: nested more than " +
                          std::to_string(kMaxOverrideDepth) + " levels deep");
    } else if (c == ']' || c == ')' || c == '}') {
      const char want = c == ']' ? '[' : c == ')' ? '(' : '{';
      if (open.empty() || open.back() != want)
        throw ConfigError("--cfg-options: unbalanced brackets in '" + text + "'");
      open.pop_back();
    } else if (c == ',' && open.empty()) {
      parts.push_back(cur);
      cur.clear();
      continue;
    }
    cur += c;
  }
  if (!open.empty() || in_string)
    throw ConfigError("--cfg-options: unbalanced brackets in '" + text + "'");
  parts.push_back(cur);
  return parts;
}

// Python's int() and float() grammars: an optional sign, digits with single underscores
// between them; float adds a point, an exponent, inf and nan.
bool digit_part(const std::string& s, size_t& i) {
  const size_t start = i;
  while (i < s.size() && std::isdigit(static_cast<unsigned char>(s[i]))) {
    ++i;
    if (i + 1 < s.size() && s[i] == '_' && std::isdigit(static_cast<unsigned char>(s[i + 1]))) ++i;
  }
  return i > start;
}

bool python_int(const std::string& s) {
  size_t i = s.empty() || (s[0] != '+' && s[0] != '-') ? 0 : 1;
  return digit_part(s, i) && i == s.size();
}

bool python_float(const std::string& s) {
  size_t i = s.empty() || (s[0] != '+' && s[0] != '-') ? 0 : 1;
  std::string rest = s.substr(i);
  std::transform(rest.begin(), rest.end(), rest.begin(),
                 [](unsigned char c) { return char(std::tolower(c)); });
  if (rest == "inf" || rest == "infinity" || rest == "nan") return true;
  const bool whole = digit_part(s, i);
  bool frac = false;
  if (i < s.size() && s[i] == '.') {
    ++i;
    frac = digit_part(s, i);
  }
  if (!whole && !frac) return false;
  if (i < s.size() && (s[i] == 'e' || s[i] == 'E')) {
    ++i;
    if (i < s.size() && (s[i] == '+' || s[i] == '-')) ++i;
    if (!digit_part(s, i)) return false;
  }
  return i == s.size();
}

// DictAction._parse_int_float_bool; `null` is also JSON's null (mmengine keeps it a string).
Json parse_scalar(const std::string& t) {
  if (python_int(t) || python_float(t)) {
    std::string digits;
    std::copy_if(t.begin(), t.end(), std::back_inserter(digits), [](char c) { return c != '_'; });
    if (python_int(t)) {
      char* end = nullptr;
      errno = 0;
      const long long i = std::strtoll(digits.c_str(), &end, 10);
      if (errno == 0) return Json(int64_t(i));
      // Past 64 bits (Python's int has no bound): the nearest double, as JSON readers do.
    }
    const double d = std::strtod(digits.c_str(), nullptr);
    if (!std::isfinite(d))
      throw ConfigError("--cfg-options value '" + t +
                        "': not a finite number (JSON has no infinity or NaN)");
    return Json(d);
  }
  std::string lower = t;
  std::transform(lower.begin(), lower.end(), lower.begin(),
                 [](unsigned char c) { return char(std::tolower(c)); });
  if (lower == "true") return Json(true);
  if (lower == "false") return Json(false);
  if (t == "None" || t == "null") return Json();
  return Json(t);
}

// Python's str.strip('\'"'): every quote at either end.
std::string strip_quotes(const std::string& s) {
  size_t a = 0, b = s.size();
  while (a < b && (s[a] == '\'' || s[a] == '"')) ++a;
  while (b > a && (s[b - 1] == '\'' || s[b - 1] == '"')) --b;
  return s.substr(a, b - a);
}

// Whether the bracket opening s[0] closes at the last character.
bool encloses(const std::string& s, char open, char close) {
  if (s.size() < 2 || s.front() != open || s.back() != close) return false;
  int depth = 0;
  for (size_t i = 0; i < s.size(); ++i) {
    if (s[i] == '(' || s[i] == '[' || s[i] == '{') ++depth;
    if (s[i] == ')' || s[i] == ']' || s[i] == '}') --depth;
    if (depth == 0) return i + 1 == s.size();
  }
  return false;
}

// DictAction._parse_iterable: quotes stripped at every level, (..) and [..] lists, bare
// comma lists, then int, float, bool, None; a {...} element is a JSON object.
Json parse_iterable(const std::string& text, const std::string& whole, int depth) {
  if (depth > kMaxOverrideDepth)
    throw ConfigError("--cfg-options value: nested more than " + std::to_string(kMaxOverrideDepth) +
                      " levels deep");
  const std::string v = trim(strip_quotes(trim(text)));
  // `elif ',' not in val`: a single value, brackets or not ("a(b" stays a string).
  if (v.find(',') == std::string::npos && !encloses(v, '(', ')') && !encloses(v, '[', ']')) {
    if (!v.empty() && v.front() == '{') return Json::parse(v, "--cfg-options value");
    return parse_scalar(v);
  }
  std::string inner;
  bool list = false;
  if (encloses(v, '(', ')') || encloses(v, '[', ']')) {
    inner = v.substr(1, v.size() - 2);
    list = true;
  }
  const std::vector<std::string> parts = split_top(list ? inner : v, whole);
  if (!list && parts.size() == 1) {
    if (!v.empty() && v.front() == '{') return Json::parse(v, "--cfg-options value");
    return parse_scalar(v);
  }
  Json out = Json::array();
  if (list && trim(inner).empty()) return out;
  // "1,2," is [1, 2] (the loop of _parse_iterable ends at the last comma); "1,,2" keeps ''.
  const size_t n = parts.size() > 1 && trim(parts.back()).empty() ? parts.size() - 1 : parts.size();
  for (size_t i = 0; i < n; ++i) out.push_back(parse_iterable(parts[i], whole, depth + 1));
  return out;
}

} // namespace

void merge_config(Json& base, const Json& child, const std::string& path) {
  merge_into(base, child, path, false, "");
}

Json load_config_file(const std::string& path) {
  std::vector<fs::path> stack;
  Json cfg = load_recursive(fs::path(path), stack, "");
  strip_delete(cfg);
  return cfg;
}

Json parse_override_value(const std::string& text) {
  return parse_iterable(text, text, 0);
}

void apply_override(Json& cfg, const std::string& assignment) {
  auto eq = assignment.find('=');
  if (eq == std::string::npos || eq == 0)
    throw ConfigError("--cfg-options: expected KEY=VALUE, got '" + assignment + "'");
  const std::string key = trim(assignment.substr(0, eq));
  Json value = parse_override_value(assignment.substr(eq + 1));
  // mmengine's Config.merge_from_dict: a.b.c=v is {a: {b: {c: v}}}, merged with list keys.
  std::vector<std::string> parts;
  size_t start = 0;
  while (true) {
    const size_t dot = key.find('.', start);
    parts.push_back(key.substr(start, dot == std::string::npos ? dot : dot - start));
    if (parts.back().empty())
      throw ConfigError("--cfg-options: empty key component in '" + key + "'");
    if (dot == std::string::npos) break;
    start = dot + 1;
  }
  // The key's levels and the value's together stay within what Json::parse reads back (a
  // key of 100,000 components overflowed the stack; found by fuzz/config).
  const size_t depth = parts.size() + json_depth(value);
  if (depth > size_t(kMaxOverrideDepth))
    throw ConfigError("--cfg-options " + key.substr(0, 40) + (key.size() > 40 ? "...: " : ": ") +
                      "nested " + std::to_string(depth) + " levels deep (key and value); at most " +
                      std::to_string(kMaxOverrideDepth));
  Json nested = std::move(value);
  for (size_t i = parts.size(); i-- > 0;) {
    Json level = Json::object();
    level.set(parts[i], std::move(nested));
    nested = std::move(level);
  }
  if (cfg.is_null()) cfg = Json::object();
  if (!cfg.is_object())
    throw ConfigError("--cfg-options " + key + ": the config is a " + cfg.type_name() +
                      ", not a dict");
  merge_into(cfg, nested, "", true, "--cfg-options " + key + ": ");
}

void apply_overrides(Json& cfg, const std::vector<std::string>& assignments) {
  for (const auto& a : assignments) apply_override(cfg, a);
}

} // namespace selfsup::core
