#pragma once
// A test's own registry, so that the types a test registers never enter Registry::global().
#include <functional>
#include <memory>
#include <stdexcept>
#include <string>
#include <utility>

#include <selfsup/core/builtins.h>
#include <selfsup/core/plugin_loader.h>
#include <selfsup/registry.h>

namespace selfsup::test {

/// The engine's types and the build tree's plugins, plus the types `add` registers under
/// plugin name `plugin`. Configs from config() build from it, and so do the children their
/// factories build (the registry travels with the Config); a Runner uses it through
/// TrainOptions::registry.
class LocalRegistry {
public:
  explicit LocalRegistry(const std::string& plugin = "",
                         const std::function<void(Registrar&)>& add = {}) {
    core::register_builtins(registry_);
    core::PluginLoader loader(registry_);
    loader.on_refusal = nullptr;
    loader.load_directory(SELFSUP_TEST_PLUGIN_DIR);
    if (!loader.refusals().empty())
      throw std::runtime_error("test plugins refused: " + loader.refusals()[0].file + ": " +
                               loader.refusals()[0].reason);
    if (add) {
      Registrar r(plugin, plugin + " (test)");
      add(r);
      r.commit(registry_);
    }
  }
  LocalRegistry(const LocalRegistry&) = delete;
  LocalRegistry& operator=(const LocalRegistry&) = delete;

  [[nodiscard]] const Registry& registry() const { return registry_; }
  /// A config of `value` at `path` that builds from this registry.
  [[nodiscard]] Config config(Json value, std::string path = "") const {
    return Config(std::move(value), std::move(path)).with_registry(registry_);
  }

private:
  Registry registry_;
};

} // namespace selfsup::test
