#pragma once
// The Registry: per kind (backbone, neck, ..., or any other identifier), type names
// (MMSelfSup's own: "SimCLR", "ResNet") mapped to a factory, a schema and its provenance.
//
// Names are scoped by plugin, as mmengine scopes its registries: two plugins may both
// register `MLP`; `plugin.MLP` picks one, and a bare `MLP` that two plugins provide is an
// error naming both. OpenMMLab scopes (`mmcls.`, `mmselfsup.`, `mmpretrain.`, `mmengine.`,
// `mmdet.`) name a package, not a plugin, and match any provider. Where a package's semantics
// differ, a plugin registers a scope variant under the scoped name (`mmcls.ResNet`, whose
// out_indices count stages from 0): `mmcls.ResNet` finds that variant first, then plain
// `ResNet`; a bare `ResNet` (or `mmselfsup.ResNet`, when no such variant exists) never finds
// the variant. `plugin.mmcls.ResNet` narrows to one plugin.
//
// Plugins add entries only through a Registrar (`add<T>`) inside their register function;
// the Registrar commits all of a plugin's entries or none. Objects are made only through
// `build<T>`, which checks that the entry was registered for interface T before the cast.
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <type_traits>
#include <typeindex>
#include <typeinfo>
#include <utility>
#include <vector>

#include <selfsup/config.h>
#include <selfsup/errors.h>
#include <selfsup/export.h>
#include <selfsup/schema.h>

namespace selfsup {

/// The kinds `selfsup list` prints first, in this order. A kind is any identifier
/// ([a-z][a-z0-9_]*): a new one (e.g. "mask_generator") needs no change here or in the ABI.
SELFSUP_SDK_API const std::vector<std::string>& registry_kinds();

/// One registered type. Made only by a Registrar; read by `selfsup list` and the checks.
class SELFSUP_SDK_API RegistryEntry {
public:
  std::string kind;
  std::string name;
  std::string plugin; // "core" for the engine's own types
  std::string file;   // the library that provided it
  Schema schema;
  /// The interface T it was registered as (`add<T>`); `build<T>` checks it.
  std::type_index interface;

  /// "plugin 'common' (/usr/lib/selfsup/plugins/libselfsup_common.so)".
  [[nodiscard]] std::string provider() const;
  /// The interface's C++ name, e.g. "selfsup::Neck".
  [[nodiscard]] std::string interface_name() const;

private:
  friend class Registry;
  friend class Registrar;
  using Factory = std::function<std::shared_ptr<void>(const Config&)>;
  RegistryEntry(std::string kind, std::string name, std::string plugin, std::string file,
                Schema schema, std::type_index interface, Factory factory);
  Factory factory_; // returns a shared_ptr<T> of `interface`, type-erased
};

class SELFSUP_SDK_API Registry {
public:
  Registry() = default;
  Registry(const Registry&) = delete;
  Registry& operator=(const Registry&) = delete;

  /// The process-wide registry: the host's, holding the engine's types and the plugins'.
  /// Tests and embedders may use their own Registry instead (see Config::with_registry).
  static Registry& global();

  /// The entry for `name` ("Type", "plugin.Type", "mmcls.Type" or "plugin.mmcls.Type") of
  /// `kind`, or nullptr.
  /// Throws RegistryError (naming every provider) if a bare name has several providers.
  [[nodiscard]] const RegistryEntry* find(const std::string& kind, const std::string& name) const;
  /// Every entry `name` may mean: one for "plugin.Type", all providers for a bare name.
  [[nodiscard]] std::vector<const RegistryEntry*> providers(const std::string& kind,
                                                            const std::string& name) const;
  /// All entries of a kind ("" for all), sorted by kind (as kinds()), name, then plugin.
  [[nodiscard]] std::vector<const RegistryEntry*> entries(const std::string& kind = "") const;
  /// registry_kinds(), then every other kind that has entries, alphabetically.
  [[nodiscard]] std::vector<std::string> kinds() const;

  /// Builds an object of interface T (T::kKind names its kind) from `cfg`: reads `type`,
  /// checks the schema, fills defaults, calls the factory. The factory's Config builds its
  /// children from this same registry. Errors are ConfigErrors naming the JSON path.
  template <class T> [[nodiscard]] std::shared_ptr<T> build(const Config& cfg) const {
    return std::static_pointer_cast<T>(build_checked(T::kKind, typeid(T), cfg));
  }

  /// Pre-flight: checks `cfg` against `schema` and every component below it, to any depth,
  /// without building anything: the keys each schema marks as components (their `type`,
  /// looked up here, with the nearest registered names when unknown, then that type's schema),
  /// nested dicts, constraints (files and folders that must exist) and, where a node's keys
  /// pass, its validator (an OptionTable's rules). Returns every problem, each
  /// "<json path>: <what>" as build() would say it; empty when all is well.
  [[nodiscard]] std::vector<std::string> validate(const Config& cfg, const Schema& schema) const;
  /// The same for one component of `kind` (a dict with a `type`).
  [[nodiscard]] std::vector<std::string> validate_component(const std::string& kind,
                                                            const Config& cfg) const;

  /// Records that a plugin file was refused, so an unknown type can say why.
  void note_refused(const std::string& file, const std::string& reason);
  [[nodiscard]] std::vector<std::pair<std::string, std::string>> refused() const;

  /// Drops every entry and refusal.
  void clear();

private:
  friend class Registrar;
  /// Adds all entries or none: throws RegistryError if a kind is not an identifier, a name
  /// is invalid, or the same plugin registers a (kind, name) twice.
  void commit(std::vector<RegistryEntry> entries);
  /// The product of the entry `cfg.type` names, after checking it was registered as `type`.
  [[nodiscard]] std::shared_ptr<void>
  build_checked(const std::string& kind, const std::type_info& type, const Config& cfg) const;
  [[nodiscard]] std::vector<const RegistryEntry*> providers_locked(const std::string& kind,
                                                                   const std::string& name) const;
  /// "unknown <kind> type '<name>'; did you mean ...? (registered: ...)" and refusal notes.
  [[nodiscard]] std::string unknown_type(const std::string& kind, const std::string& name) const;

  mutable std::mutex mutex_;
  std::vector<std::unique_ptr<RegistryEntry>> entries_;
  std::vector<std::pair<std::string, std::string>> refused_;
};

/// Builds an object of interface T from a config node, in the registry the node carries
/// (Config::registry(): the one that built its parent, or Registry::global()).
template <class T> [[nodiscard]] std::shared_ptr<T> build(const Config& cfg) {
  return cfg.registry().build<T>(cfg);
}

/// Collects a plugin's entries during its register function.
class SELFSUP_SDK_API Registrar {
public:
  Registrar(std::string plugin, std::string file);

  /// Registers `name` of interface T (of kind T::kKind). `factory(const Config&)` returns
  /// something convertible to shared_ptr<T>; the Config it gets has defaults filled in.
  template <class T, class F> void add(const std::string& name, F factory, Schema schema) {
    using Product = decltype(factory(std::declval<const Config&>()));
    static_assert(std::is_convertible_v<Product, std::shared_ptr<T>>,
                  "the factory of add<T> must return a shared_ptr convertible to shared_ptr<T>");
    stage(
        T::kKind, typeid(T), name,
        [f = std::move(factory)](const Config& c) -> std::shared_ptr<void> {
          std::shared_ptr<T> p = f(c);
          return p;
        },
        std::move(schema));
  }

  [[nodiscard]] const std::string& plugin() const { return plugin_; }
  [[nodiscard]] size_t size() const { return staged_.size(); }
  /// Moves the staged entries into `registry` (all or none).
  void commit(Registry& registry = Registry::global());

private:
  void stage(const std::string& kind, const std::type_info& type, const std::string& name,
             RegistryEntry::Factory factory, Schema schema);

  std::string plugin_;
  std::string file_;
  std::vector<RegistryEntry> staged_;
};

} // namespace selfsup
