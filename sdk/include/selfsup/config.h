#pragma once
// Config: an immutable, path-aware view of a JSON node. Every error it raises starts with
// the node's JSON path, e.g. `model.head.temperature: expected a number, got "0.1x"`.
#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include <selfsup/errors.h>
#include <selfsup/export.h>
#include <selfsup/json.h>

namespace selfsup {

class Registry;

class SELFSUP_SDK_API Config {
public:
  /// An empty object at the root.
  Config();
  /// A view of `value` whose path is `path` ("" for the root).
  explicit Config(Json value, std::string path = "");
  Config(std::shared_ptr<const Json> root, const Json* node, std::string path);

  [[nodiscard]] const Json& json() const { return *node_; }
  [[nodiscard]] const std::string& path() const { return path_; }
  /// The path of a key below this node: "model.head" + "temperature".
  [[nodiscard]] std::string path_of(std::string_view key) const;
  /// The path of this node for messages ("<root>" for the root).
  [[nodiscard]] std::string where() const { return path_.empty() ? "<root>" : path_; }

  [[nodiscard]] bool is_object() const { return node_->is_object(); }
  [[nodiscard]] bool is_array() const { return node_->is_array(); }
  [[nodiscard]] bool is_null() const { return node_->is_null(); }
  [[nodiscard]] size_t size() const { return node_->size(); }
  [[nodiscard]] std::vector<std::string> keys() const;

  /// Whether the key is present and not null.
  [[nodiscard]] bool has(std::string_view key) const;
  /// The child at `key`; throws ConfigError naming the path if it is missing.
  [[nodiscard]] Config operator[](std::string_view key) const;
  /// The element at `i` of an array.
  [[nodiscard]] Config at(size_t i) const;

  /// This node converted to T; throws ConfigError (path, expected, got) on a mismatch.
  /// T: bool, int, int64_t, double, float, std::string, std::vector of int64_t, int, double,
  /// std::string.
  template <class T> [[nodiscard]] T as() const;
  /// The required key converted to T.
  template <class T> [[nodiscard]] T get(std::string_view key) const {
    return (*this)[key].template as<T>();
  }
  /// The key converted to T, or `fallback` when absent or null.
  template <class T> [[nodiscard]] T get(std::string_view key, T fallback) const {
    return has(key) ? (*this)[key].template as<T>() : fallback;
  }

  /// Throws ConfigError("<path>: <what>").
  [[noreturn]] void fail(const std::string& what) const;
  /// Throws ConfigError("<path>.<key>: <what>").
  [[noreturn]] void fail_key(std::string_view key, const std::string& what) const;

  /// The registry `build<T>(cfg)` builds from: the one set by with_registry() on this node or
  /// a parent (Registry::build sets it for the factory's Config), else Registry::global().
  [[nodiscard]] const Registry& registry() const;
  /// This view, building from `registry`; the children it hands out inherit it.
  [[nodiscard]] Config with_registry(const Registry& registry) const;
  /// A config of `value` at `path` that builds from this node's registry: for a factory
  /// that edits its config (adds a default type, drops keys) before building from it.
  [[nodiscard]] Config derive(Json value, std::string path) const;

private:
  std::shared_ptr<const Json> root_;
  const Json* node_;
  std::string path_;
  const Registry* registry_ = nullptr; // null: Registry::global()
};

template <> SELFSUP_SDK_API bool Config::as<bool>() const;
template <> SELFSUP_SDK_API int Config::as<int>() const;
template <> SELFSUP_SDK_API int64_t Config::as<int64_t>() const;
template <> SELFSUP_SDK_API double Config::as<double>() const;
template <> SELFSUP_SDK_API float Config::as<float>() const;
template <> SELFSUP_SDK_API std::string Config::as<std::string>() const;
template <> SELFSUP_SDK_API std::vector<int64_t> Config::as<std::vector<int64_t>>() const;
template <> SELFSUP_SDK_API std::vector<int> Config::as<std::vector<int>>() const;
template <> SELFSUP_SDK_API std::vector<double> Config::as<std::vector<double>>() const;
template <> SELFSUP_SDK_API std::vector<std::string> Config::as<std::vector<std::string>>() const;

/// "a string", 12, [..] — a short rendering of a value for error messages.
SELFSUP_SDK_API std::string describe_value(const Json& v);

} // namespace selfsup
