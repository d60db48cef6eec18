#include <iostream>

#include <boost/program_options.hpp>

#include "cli.h"

namespace po = boost::program_options;

namespace selfsup::host {

int cmd_config(int argc, char** argv) {
  po::options_description opts("selfsup config CONFIG [--cfg-options K=V ...]");
  std::vector<std::string> overrides;
  opts.add_options()("help,h", "show this help")(
      "cfg-options", po::value(&overrides)->multitoken(), "override config keys: a.b=value ...");
  po::options_description hidden;
  std::string config;
  hidden.add_options()("config", po::value(&config));
  po::positional_options_description pos;
  pos.add("config", 1);
  po::options_description all;
  all.add(opts).add(hidden);
  po::variables_map vm;
  po::store(po::command_line_parser(argc, argv).options(all).positional(pos).run(), vm);
  po::notify(vm);
  if (vm.count("help")) {
    std::cout << "Prints the config after _base_ inheritance and overrides.\n" << opts << "\n";
    return kOk;
  }
  if (config.empty()) {
    std::cerr << "selfsup config: a CONFIG file is required\n\n" << opts << "\n";
    return kUsage;
  }
  std::cout << load_config(config, overrides, nullptr).dump(4) << "\n";
  return kOk;
}

}  // namespace selfsup::host
