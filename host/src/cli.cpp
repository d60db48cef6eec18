#include "cli.h"

#include <filesystem>

#include <selfsup/config.h>
#include <selfsup/core/builtins.h>
#include <selfsup/core/config_file.h>

namespace fs = std::filesystem;

namespace selfsup::host {

void load_plugins(core::PluginLoader& loader, const std::vector<std::string>& dirs,
                  bool allow_insecure) {
  core::register_builtins();
  loader.allow_insecure(allow_insecure);
  loader.load_default_locations(dirs);
}

Json load_config(const std::string& path, const std::vector<std::string>& overrides,
                 core::PluginLoader* loader) {
  Json cfg = core::load_config_file(path);
  core::apply_overrides(cfg, overrides);
  if (loader && cfg.find("plugins")) {
    const Config plugins(cfg, "");
    const Config list = plugins["plugins"];
    if (!list.is_array()) list.fail("expected a list of plugin names or paths");
    for (size_t i = 0; i < list.size(); ++i) {
      std::string spec = list.at(i).as<std::string>();
      if (spec.find('/') != std::string::npos && fs::path(spec).is_relative())
        spec = (fs::path(path).parent_path() / spec).string();
      loader->load_spec(spec, list.at(i).where());
    }
  }
  return cfg;
}

}  // namespace selfsup::host
