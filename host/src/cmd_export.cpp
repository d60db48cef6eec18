// `selfsup export CKPT --out FILE [--format torchvision|timm|selfsup]`: a checkpoint's backbone
// weights as a plain dict of tensors for torchvision, timm or mmcls (see
// <selfsup/core/weight_export.h>).
#include <iostream>

#include <boost/program_options.hpp>

#include <selfsup/core/checkpoint.h>
#include <selfsup/core/weight_export.h>
#include <selfsup/errors.h>

#include "cli.h"

namespace po = boost::program_options;

namespace selfsup::host {

int cmd_export(int argc, char** argv) {
  po::options_description opts(
      "selfsup export CKPT --out FILE [--format torchvision|timm|selfsup]");
  std::string out, format;
  opts.add_options()("help,h", "show this help")("out", po::value(&out),
                                                 "the file to write (required)")(
      "format", po::value(&format),
      "torchvision (ResNet), timm (VisionTransformer) or selfsup (the backbone's own names); "
      "default: torchvision for a ResNet, timm for a ViT, else selfsup");
  std::string ckpt_path;
  po::variables_map vm = parse_with_config(argc, argv, opts, ckpt_path);
  if (vm.count("help")) {
    std::cout << opts << "\n";
    return kOk;
  }
  if (ckpt_path.empty() || out.empty()) {
    std::cerr << "selfsup export: a CKPT and --out FILE are required\n\n" << opts << "\n";
    return kUsage;
  }
  try {
    const core::Checkpoint ckpt = core::load_checkpoint(ckpt_path);
    if (format.empty()) format = core::default_export_format(ckpt.state_dict);
    const core::TensorMap weights = core::export_backbone(ckpt.state_dict, format, ckpt_path);
    core::save_weights(out, weights);
    std::cout << "Wrote " << out << " (" << weights.size() << " tensors, format " << format << ")"
              << std::endl;
  } catch (const ValueError& e) {
    std::cerr << "selfsup export: error: " << e.what() << "\n";
    return kUsage;
  }
  return kOk;
}

} // namespace selfsup::host
