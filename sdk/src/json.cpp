#include <selfsup/json.h>

#include <cmath>

#include <algorithm>

#include <rapidjson/document.h>
#include <rapidjson/error/en.h>
#include <rapidjson/prettywriter.h>
#include <rapidjson/stringbuffer.h>
#include <rapidjson/writer.h>

#include <selfsup/errors.h>

namespace selfsup {

Json Json::array(std::vector<Json> items) {
  Json j;
  j.type_ = Type::Array;
  j.items_ = std::move(items);
  return j;
}

Json Json::object(std::initializer_list<std::pair<std::string, Json>> items) {
  Json j;
  j.type_ = Type::Object;
  for (const auto& [k, v] : items) j.set(k, v);
  return j;
}

const Json* Json::find(std::string_view key) const {
  if (type_ != Type::Object) return nullptr;
  for (size_t i = 0; i < keys_.size(); ++i)
    if (keys_[i] == key) return &items_[i];
  return nullptr;
}

Json* Json::find(std::string_view key) {
  return const_cast<Json*>(static_cast<const Json*>(this)->find(key));
}

Json& Json::set(const std::string& key, Json value) {
  if (type_ == Type::Null) type_ = Type::Object;
  if (type_ != Type::Object) throw ValueError("Json::set: not an object");
  if (Json* existing = find(key)) {
    *existing = std::move(value);
    return *existing;
  }
  keys_.push_back(key);
  items_.push_back(std::move(value));
  return items_.back();
}

bool Json::erase(std::string_view key) {
  for (size_t i = 0; i < keys_.size(); ++i) {
    if (keys_[i] == key) {
      keys_.erase(keys_.begin() + long(i));
      items_.erase(items_.begin() + long(i));
      return true;
    }
  }
  return false;
}

const char* Json::type_name(Type t) {
  switch (t) {
  case Type::Null:
    return "null";
  case Type::Bool:
    return "bool";
  case Type::Int:
    return "int";
  case Type::Float:
    return "float";
  case Type::String:
    return "string";
  case Type::Array:
    return "list";
  case Type::Object:
    return "dict";
  }
  return "?";
}

bool operator==(const Json& a, const Json& b) {
  if (a.is_number() && b.is_number()) {
    if (a.type_ != b.type_) return a.as_number() == b.as_number();
  }
  if (a.type_ != b.type_) return false;
  switch (a.type_) {
  case Json::Type::Null:
    return true;
  case Json::Type::Bool:
    return a.b_ == b.b_;
  case Json::Type::Int:
    return a.i_ == b.i_;
  case Json::Type::Float:
    return a.d_ == b.d_;
  case Json::Type::String:
    return a.s_ == b.s_;
  case Json::Type::Array:
    return a.items_ == b.items_;
  case Json::Type::Object: {
    if (a.keys_.size() != b.keys_.size()) return false;
    for (size_t i = 0; i < a.keys_.size(); ++i) {
      const Json* other = b.find(a.keys_[i]);
      if (!other || !(*other == a.items_[i])) return false;
    }
    return true;
  }
  }
  return false;
}

namespace {

// Deeper documents are refused: they are never a real config, and every walk over a Json
// (merge, dump, destruction) recurses once per level.
constexpr int kMaxDepth = 512;

Json from_rapid(const rapidjson::Value& v, const std::string& source, int depth = 0) {
  if (depth > kMaxDepth)
    throw ConfigError(source + ": nested more than " + std::to_string(kMaxDepth) + " levels deep");
  if (v.IsNull()) return Json();
  if (v.IsBool()) return Json(v.GetBool());
  if (v.IsInt64()) return Json(int64_t(v.GetInt64()));
  if (v.IsNumber()) {
    // RapidJSON reads a number past the double range (2e308) as infinity or NaN, unreported
    // (found by fuzz/config): refused, as JSON has neither.
    if (!std::isfinite(v.GetDouble()))
      throw ConfigError(source + ": a number out of the range of a double (JSON has no infinity)");
    return Json(v.GetDouble());
  }
  if (v.IsString()) return Json(std::string(v.GetString(), v.GetStringLength()));
  if (v.IsArray()) {
    std::vector<Json> items;
    items.reserve(v.Size());
    for (const auto& e : v.GetArray()) items.push_back(from_rapid(e, source, depth + 1));
    return Json::array(std::move(items));
  }
  Json obj = Json::object();
  for (const auto& m : v.GetObject())
    obj.set(std::string(m.name.GetString(), m.name.GetStringLength()),
            from_rapid(m.value, source, depth + 1));
  return obj;
}

template <class Writer> void write(const Json& j, Writer& w) {
  switch (j.type()) {
  case Json::Type::Null:
    w.Null();
    break;
  case Json::Type::Bool:
    w.Bool(j.as_bool());
    break;
  case Json::Type::Int:
    w.Int64(j.as_int());
    break;
  case Json::Type::Float:
    // JSON has no NaN or infinity: they are written as null, so the output stays valid.
    if (std::isfinite(j.as_number())) {
      w.Double(j.as_number());
    } else {
      w.Null();
    }
    break;
  case Json::Type::String:
    w.String(j.as_string().c_str(), rapidjson::SizeType(j.as_string().size()));
    break;
  case Json::Type::Array:
    w.StartArray();
    for (const auto& e : j.items()) write(e, w);
    w.EndArray();
    break;
  case Json::Type::Object:
    w.StartObject();
    for (size_t i = 0; i < j.size(); ++i) {
      w.Key(j.keys()[i].c_str(), rapidjson::SizeType(j.keys()[i].size()));
      write(j.at(i), w);
    }
    w.EndObject();
    break;
  }
}

} // namespace

Json Json::parse(std::string_view text, const std::string& source) {
  rapidjson::Document doc;
  // Iterative parsing: a deeply nested document cannot overflow the stack. NaN and
  // infinity are not accepted (nor is a number too large for a double). Full precision: every
  // number reads as the double nearest to its text, so what dump() writes reads back equal
  // (RapidJSON's fast default misses by an ulp on some long numbers; found by fuzz/config).
  constexpr unsigned kFlags = rapidjson::kParseCommentsFlag | rapidjson::kParseTrailingCommasFlag |
                              rapidjson::kParseIterativeFlag | rapidjson::kParseFullPrecisionFlag;
  doc.Parse<kFlags>(text.data(), text.size());
  if (doc.HasParseError()) {
    size_t off = doc.GetErrorOffset(), line = 1, col = 1;
    for (size_t i = 0; i < off && i < text.size(); ++i) {
      if (text[i] == '\n') {
        ++line;
        col = 1;
      } else {
        ++col;
      }
    }
    throw ConfigError(source + ":" + std::to_string(line) + ":" + std::to_string(col) +
                      ": invalid JSON: " + rapidjson::GetParseError_En(doc.GetParseError()));
  }
  return from_rapid(doc, source);
}

std::string Json::dump(int indent) const {
  rapidjson::StringBuffer buf;
  if (indent < 0) {
    rapidjson::Writer<rapidjson::StringBuffer> w(buf);
    write(*this, w);
  } else {
    rapidjson::PrettyWriter<rapidjson::StringBuffer> w(buf);
    w.SetIndent(' ', unsigned(indent));
    w.SetFormatOptions(rapidjson::kFormatSingleLineArray);
    write(*this, w);
  }
  return std::string(buf.GetString(), buf.GetSize());
}

} // namespace selfsup
