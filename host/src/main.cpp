// selfsup: train self-supervised models from JSON configs.
#include <cstring>
#include <iostream>
#include <string>

#include <boost/program_options/errors.hpp>
#include <c10/util/Exception.h>

#include <selfsup/core/runner.h>
#include <selfsup/errors.h>
#include <selfsup/registry.h>
#include <selfsup/version.h>

#include "cli.h"

namespace {

void usage(std::ostream& os) {
  os << "Usage: selfsup <command> [options]\n\n"
        "Commands:\n"
        "  train CONFIG   train a model from a JSON config\n"
        "  list           list plugins and registered types\n"
        "  config CONFIG  print the merged config as JSON (--check: list every fault)\n"
        "  convert-config FILE.py\n"
        "                 turn an MMSelfSup/mmengine .py config into one JSON config\n"
        "  eval linear|knn CONFIG --checkpoint CKPT\n"
        "                 linear probe or weighted kNN on frozen features (top-1, top-5)\n"
        "  extract CONFIG --checkpoint CKPT --out FILE.npy\n"
        "                 write a split's features and labels as NumPy .npy files\n"
        "  report WORK_DIR\n"
        "                 write a self-contained HTML page of a run (plots, config, figures)\n"
        "  export CKPT --out FILE [--format torchvision|timm|selfsup]\n"
        "                 write the backbone weights for torchvision, timm or mmcls\n"
        "  visualize CONFIG --checkpoint CKPT --out DIR\n"
        "                 PNG images of masked-image-modelling reconstructions (MAE, SimMIM)\n"
        "  launch --nproc-per-node N [...] -- train CONFIG ...\n"
        "                 start N data-parallel ranks of train (torchrun's variables)\n\n"
        "Run 'selfsup <command> --help' for the options of a command.\n";
}

int dispatch(int argc, char** argv) {
  using namespace selfsup::host;
  if (argc < 2) {
    usage(std::cerr);
    return kUsage;
  }
  const std::string cmd = argv[1];
  if (cmd == "-h" || cmd == "--help" || cmd == "help") {
    usage(std::cout);
    return kOk;
  }
  if (cmd == "--version") {
    std::cout << "selfsup " << SELFSUP_VERSION_STRING << "\n";
    return kOk;
  }
  if (cmd == "train") return cmd_train(argc - 1, argv + 1);
  if (cmd == "list") return cmd_list(argc - 1, argv + 1);
  if (cmd == "config") return cmd_config(argc - 1, argv + 1);
  if (cmd == "convert-config") return cmd_convert_config(argc - 1, argv + 1);
  if (cmd == "eval") return cmd_eval(argc - 1, argv + 1);
  if (cmd == "extract") return cmd_extract(argc - 1, argv + 1);
  if (cmd == "report") return cmd_report(argc - 1, argv + 1);
  if (cmd == "export") return cmd_export(argc - 1, argv + 1);
  if (cmd == "visualize") return cmd_visualize(argc - 1, argv + 1);
  if (cmd == "launch") return cmd_launch(argc - 1, argv + 1);
  std::cerr << "selfsup: unknown command '" << cmd << "'\n\n";
  usage(std::cerr);
  return kUsage;
}

} // namespace

int main(int argc, char** argv) {
  using namespace selfsup::host;
  int rc = kFailure;
  try {
    rc = dispatch(argc, argv);
  } catch (const boost::program_options::error& e) {
    std::cerr << "selfsup: " << e.what() << " (see --help)\n";
    rc = kUsage;
  } catch (const selfsup::ConfigError& e) {
    std::cerr << "selfsup: config error: " << e.what() << "\n";
    rc = kUsage;
  } catch (const selfsup::RegistryError& e) {
    std::cerr << "selfsup: config error: " << e.what() << "\n";
    rc = kUsage;
  } catch (const selfsup::core::Interrupted& e) {
    std::cerr << "selfsup: " << e.what() << "\n";
    rc = kFailure;
  } catch (const c10::Error& e) {
    std::cerr << "selfsup: error: " << e.what_without_backtrace() << "\n";
    rc = kFailure;
  } catch (const std::exception& e) {
    std::cerr << "selfsup: error: " << e.what() << "\n";
    rc = kFailure;
  }
  // Products of plugins must go before the registry releases the libraries' handles.
  selfsup::Registry::global().clear();
  return rc;
}
