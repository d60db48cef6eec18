#include <chrono>
#include <iostream>

#include <boost/program_options.hpp>

#include <selfsup/core/preflight.h>

#include "cli.h"

namespace po = boost::program_options;

namespace selfsup::host {

int cmd_config(int argc, char** argv) {
  po::options_description opts("selfsup config CONFIG [--check] [--cfg-options K=V ...]");
  std::vector<std::string> overrides, plugin_dirs;
  opts.add_options()("help,h", "show this help")("cfg-options", po::value(&overrides)->multitoken(),
                                                 "override config keys: a.b=value ...")(
      "check",
      "check the whole config: its keys, types, values and files as `train` does before it "
      "starts, then build each part (model, optimizer and param groups, train loop, dataset "
      "and pipeline, schedulers, hooks) without training; list every problem, exit 2 if any")(
      "plugin-dir", po::value(&plugin_dirs), "with --check: also load plugins from this folder")(
      "allow-insecure-plugins", "with --check: load plugins others can write to")(
      "no-data", "with --check: do not require the files a run reads at start: dataset "
                 "files and folders (the datasets are not built, their pipelines are), "
                 "load_from, Pretrained init_cfg checkpoints (the module keeps its own "
                 "initial weights); their keys are still checked");
  std::string config;
  po::variables_map vm = parse_with_config(argc, argv, opts, config);
  if (vm.count("help")) {
    std::cout << "Prints the config after _base_ inheritance and overrides, or checks it.\n"
              << opts << "\n";
    return kOk;
  }
  if (config.empty()) {
    std::cerr << "selfsup config: a CONFIG file is required\n\n" << opts << "\n";
    return kUsage;
  }
  if (!vm.count("check")) {
    std::cout << load_config(config, overrides, nullptr).dump(4) << "\n";
    return kOk;
  }
  const auto start = std::chrono::steady_clock::now();
  core::PluginLoader loader;
  load_plugins(loader, plugin_dirs, vm.count("allow-insecure-plugins") > 0);
  const Json cfg = load_config(config, overrides, &loader);
  core::CheckOptions check;
  check.data = vm.count("no-data") == 0;
  core::throw_problems(core::check_config(cfg, core::TrainOptions{}, check), config,
                       "found by building each part without training"); // exit 2
  const auto ms = std::chrono::duration_cast<std::chrono::milliseconds>(
                      std::chrono::steady_clock::now() - start)
                      .count();
  std::cout << "config OK: " << config << " (checked in " << ms << " ms)\n";
  return kOk;
}

} // namespace selfsup::host
