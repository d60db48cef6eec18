#pragma once
// The Registry: one table per kind (backbone, neck, ... param_scheduler) mapping a type
// name (MMSelfSup's own: "SimCLR", "ResNet") to a factory, a schema and its provenance.
// Plugins add entries only through a Registrar inside their register function; the
// Registrar commits all of a plugin's entries or none.
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include <selfsup/config.h>
#include <selfsup/errors.h>
#include <selfsup/export.h>
#include <selfsup/schema.h>

namespace selfsup {

/// The kinds, in the order `selfsup list` prints them.
SELFSUP_SDK_API const std::vector<std::string>& registry_kinds();

using AnyFactory = std::function<std::shared_ptr<void>(const Config&)>;

struct RegistryEntry {
  // First member, so it is released last: keeps the providing library mapped.
  std::shared_ptr<const void> keepalive;
  std::string kind;
  std::string name;
  std::string plugin; // "core" for the engine's own types
  std::string file;   // the library that provided it
  Schema schema;
  AnyFactory factory;
};

class SELFSUP_SDK_API Registry {
public:
  /// The process-wide registry.
  static Registry& global();

  /// Adds all entries or none: throws RegistryError if a kind is unknown or a name is
  /// taken (naming both providers), leaving the registry unchanged.
  void commit(std::vector<RegistryEntry> entries);

  /// The entry for `name` ("Type" or "plugin.Type") of `kind`, or nullptr. OpenMMLab scope
  /// prefixes (mmcls., mmselfsup., mmpretrain., mmengine.) match any provider.
  [[nodiscard]] const RegistryEntry* find(const std::string& kind, const std::string& name) const;
  /// All entries of a kind ("" for all), sorted by kind then name.
  [[nodiscard]] std::vector<const RegistryEntry*> entries(const std::string& kind = "") const;

  /// Builds an object of `kind` from `cfg`: reads `type`, checks the schema, fills defaults,
  /// calls the factory. The product keeps its library alive.
  [[nodiscard]] std::shared_ptr<void> build_any(const std::string& kind, const Config& cfg) const;

  /// Records that a plugin file was refused, so an unknown type can say why.
  void note_refused(const std::string& file, const std::string& reason);
  [[nodiscard]] std::vector<std::pair<std::string, std::string>> refused() const;

  /// Drops every entry (and with them the references to plugin libraries).
  void clear();

private:
  mutable std::mutex mutex_;
  std::vector<std::unique_ptr<RegistryEntry>> entries_;
  std::vector<std::pair<std::string, std::string>> refused_;
};

/// Builds an object of interface T (T::kKind names its kind) from a config node.
template <class T> std::shared_ptr<T> build(const Config& cfg) {
  return std::static_pointer_cast<T>(Registry::global().build_any(T::kKind, cfg));
}

/// Collects a plugin's entries during its register function.
class SELFSUP_SDK_API Registrar {
public:
  Registrar(std::string plugin, std::string file, std::shared_ptr<const void> keepalive = {});

  /// Registers `name` of interface T. `factory(const Config&)` returns a shared_ptr to
  /// something convertible to shared_ptr<T>; the Config it gets has defaults filled in.
  template <class T, class F> void add(const std::string& name, F factory, Schema schema) {
    add_any(
        T::kKind, name,
        [f = std::move(factory)](const Config& c) -> std::shared_ptr<void> {
          std::shared_ptr<T> p = f(c);
          return p;
        },
        std::move(schema));
  }
  void add_any(const std::string& kind, const std::string& name, AnyFactory factory, Schema schema);

  [[nodiscard]] const std::string& plugin() const { return plugin_; }
  [[nodiscard]] size_t size() const { return staged_.size(); }
  /// Moves the staged entries into `registry` (all or none).
  void commit(Registry& registry = Registry::global());

private:
  std::string plugin_;
  std::string file_;
  std::shared_ptr<const void> keepalive_;
  std::vector<RegistryEntry> staged_;
};

} // namespace selfsup
