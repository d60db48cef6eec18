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

boost::program_options::variables_map
parse_with_config(int argc, char** argv, const boost::program_options::options_description& opts,
                  std::string& config) {
  namespace po = boost::program_options;
  po::options_description hidden;
  hidden.add_options()("config", po::value(&config));
  po::positional_options_description pos;
  pos.add("config", 1);
  po::options_description all;
  all.add(opts).add(hidden);
  po::variables_map vm;
  po::store(po::command_line_parser(argc, argv).options(all).positional(pos).run(), vm);
  po::notify(vm);
  return vm;
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

} // namespace selfsup::host
