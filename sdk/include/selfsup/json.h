#pragma once
// A small JSON value: the data model of configs. Objects keep insertion order, integers and
// floats stay distinct so `"depth": 18` is an int and `"lr": 0.3` is a float. RapidJSON is
// used to parse and print, inside libselfsup_sdk.so only.
#include <cstdint>
#include <initializer_list>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include <selfsup/export.h>

namespace selfsup {

class Json;
/// Deep equality; ints and floats compare by value (1 == 1.0), object key order is ignored.
SELFSUP_SDK_API bool operator==(const Json& a, const Json& b);

class SELFSUP_SDK_API Json {
public:
  enum class Type { Null, Bool, Int, Float, String, Array, Object };

  Json() = default;
  Json(std::nullptr_t) {}
  Json(bool v) : type_(Type::Bool), b_(v) {}
  Json(int v) : type_(Type::Int), i_(v) {}
  Json(int64_t v) : type_(Type::Int), i_(v) {}
  Json(double v) : type_(Type::Float), d_(v) {}
  Json(const char* v) : type_(Type::String), s_(v) {}
  Json(std::string v) : type_(Type::String), s_(std::move(v)) {}

  /// An array of the given values.
  static Json array(std::vector<Json> items = {});
  /// An object from key/value pairs, in the given order.
  static Json object(std::initializer_list<std::pair<std::string, Json>> items = {});

  [[nodiscard]] Type type() const { return type_; }
  [[nodiscard]] bool is_null() const { return type_ == Type::Null; }
  [[nodiscard]] bool is_bool() const { return type_ == Type::Bool; }
  [[nodiscard]] bool is_int() const { return type_ == Type::Int; }
  [[nodiscard]] bool is_number() const { return type_ == Type::Int || type_ == Type::Float; }
  [[nodiscard]] bool is_string() const { return type_ == Type::String; }
  [[nodiscard]] bool is_array() const { return type_ == Type::Array; }
  [[nodiscard]] bool is_object() const { return type_ == Type::Object; }

  [[nodiscard]] bool as_bool() const { return b_; }
  [[nodiscard]] int64_t as_int() const { return i_; }
  [[nodiscard]] double as_number() const { return type_ == Type::Int ? double(i_) : d_; }
  [[nodiscard]] const std::string& as_string() const { return s_; }

  /// Elements of an array, or values of an object (in key order).
  [[nodiscard]] size_t size() const { return items_.size(); }
  [[nodiscard]] const Json& at(size_t i) const { return items_.at(i); }
  Json& at(size_t i) { return items_.at(i); }
  void push_back(Json v) { items_.push_back(std::move(v)); }
  [[nodiscard]] const std::vector<Json>& items() const { return items_; }

  /// Keys of an object, in insertion order.
  [[nodiscard]] const std::vector<std::string>& keys() const { return keys_; }
  [[nodiscard]] const Json* find(std::string_view key) const;
  Json* find(std::string_view key);
  /// Sets (replacing or appending) a key of an object; a null value becomes an object.
  Json& set(const std::string& key, Json value);
  /// Removes a key of an object; returns whether it was there.
  bool erase(std::string_view key);

  /// Parses JSON text; errors name `source` and the line and column.
  static Json parse(std::string_view text, const std::string& source);
  /// Serialises; indent < 0 gives one line.
  [[nodiscard]] std::string dump(int indent = -1) const;

  [[nodiscard]] static const char* type_name(Type t);
  [[nodiscard]] const char* type_name() const { return type_name(type_); }

  friend bool operator==(const Json& a, const Json& b);
  friend bool operator!=(const Json& a, const Json& b) { return !(a == b); }

private:
  Type type_ = Type::Null;
  bool b_ = false;
  int64_t i_ = 0;
  double d_ = 0.0;
  std::string s_;
  std::vector<std::string> keys_; // objects only, parallel to items_
  std::vector<Json> items_;
};

} // namespace selfsup
