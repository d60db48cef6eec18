#pragma once
// Shared pieces of the `selfsup` sub-commands.
#include <string>
#include <vector>

#include <boost/program_options.hpp>

#include <selfsup/core/plugin_loader.h>
#include <selfsup/json.h>

namespace selfsup::host {

/// Exit codes: 0 success, 1 failure, 2 bad usage or bad config.
enum ExitCode : int { kOk = 0, kFailure = 1, kUsage = 2 };

/// Registers the engine's types and loads plugins from the default places plus `dirs`.
void load_plugins(core::PluginLoader& loader, const std::vector<std::string>& dirs,
                  bool allow_insecure);

/// Loads a config file, applies --cfg-options, then loads the plugins its "plugins" list
/// names (paths relative to the config file).
Json load_config(const std::string& path, const std::vector<std::string>& overrides,
                 core::PluginLoader* loader);

/// Parses `opts` plus one positional CONFIG argument into `config`.
boost::program_options::variables_map
parse_with_config(int argc, char** argv, const boost::program_options::options_description& opts,
                  std::string& config);

int cmd_train(int argc, char** argv);
int cmd_list(int argc, char** argv);
int cmd_config(int argc, char** argv);
int cmd_convert_config(int argc, char** argv);
int cmd_eval(int argc, char** argv);
int cmd_extract(int argc, char** argv);
int cmd_report(int argc, char** argv);
int cmd_export(int argc, char** argv);
int cmd_visualize(int argc, char** argv);
int cmd_launch(int argc, char** argv);

} // namespace selfsup::host
