#include <iostream>

#include <boost/program_options.hpp>

#include "cli.h"

namespace po = boost::program_options;

namespace selfsup::host {

int cmd_config(int argc, char** argv) {
  po::options_description opts("selfsup config CONFIG [--cfg-options K=V ...]");
  std::vector<std::string> overrides;
  opts.add_options()("help,h", "show this help")("cfg-options", po::value(&overrides)->multitoken(),
                                                 "override config keys: a.b=value ...");
  std::string config;
  po::variables_map vm = parse_with_config(argc, argv, opts, config);
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

} // namespace selfsup::host
