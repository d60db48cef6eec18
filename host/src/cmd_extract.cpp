// `selfsup extract CONFIG --checkpoint CKPT --split train|test --out FILE.npy`: frozen
// features and labels of a labelled split as NumPy .npy files.
#include <filesystem>
#include <iostream>

#include <boost/program_options.hpp>
#include <torch/torch.h>

#include <selfsup/core/npy.h>
#include <selfsup/errors.h>

#include "cli.h"
#include "eval_setup.h"

namespace po = boost::program_options;
namespace fs = std::filesystem;

namespace selfsup::host {

int cmd_extract(int argc, char** argv) {
  po::options_description opts("selfsup extract CONFIG --checkpoint CKPT --out FILE.npy [options]");
  std::vector<std::string> overrides, plugin_dirs;
  std::string checkpoint, out, labels_out, split = "test", device_name = "cpu", precision;
  int threads = 0;
  // clang-format off
  opts.add_options()
    ("help,h", "show this help")
    ("checkpoint", po::value(&checkpoint), "the trained checkpoint (.pth)")
    ("split", po::value(&split)->default_value(split),
     "train (the KNNEvalHook's bank) or test (test_dataloader, val_dataloader, else the "
     "KNNEvalHook's queries)")
    ("out", po::value(&out), "the features, [N, D] float32 .npy")
    ("labels-out", po::value(&labels_out), "the labels, [N] int64 .npy (default: FILE_labels.npy)")
    ("cfg-options", po::value(&overrides)->multitoken(), "override config keys: a.b=value ...")
    ("device", po::value(&device_name), "cpu or cuda")
    ("threads", po::value(&threads), "compute threads (default: all cores)")
    ("precision", po::value(&precision),
     "feature extraction: bf16, fp32 or auto (bf16 on a CPU with native bf16); default: the "
     "evaluation hook's precision, else auto")
    ("plugin-dir", po::value(&plugin_dirs), "also load plugins from this folder (repeatable)")
    ("allow-insecure-plugins", "load plugins from folders or files others can write to");
  // clang-format on
  std::string config;
  po::variables_map vm = parse_with_config(argc, argv, opts, config);
  if (vm.count("help")) {
    std::cout << opts << "\n";
    return kOk;
  }
  if (config.empty() || checkpoint.empty() || out.empty()) {
    std::cerr << "selfsup extract: CONFIG, --checkpoint CKPT and --out FILE.npy are required\n\n"
              << opts << "\n";
    return kUsage;
  }
  if (split != "train" && split != "test") throw po::error("--split: expected train or test");
  if (threads < 0) throw po::error("--threads must be >= 0");
  if (labels_out.empty()) {
    fs::path p(out);
    const std::string stem = p.extension() == ".npy" ? p.stem().string() : p.filename().string();
    labels_out = (p.parent_path() / (stem + "_labels.npy")).string();
  }
  if (fs::absolute(labels_out).lexically_normal() == fs::absolute(out).lexically_normal())
    throw po::error("--labels-out must differ from --out");

  core::PluginLoader loader;
  load_plugins(loader, plugin_dirs, vm.count("allow-insecure-plugins") > 0);
  const Json cfg = load_config(config, overrides, &loader);
  set_compute_threads(threads);
  const core::ExtractPrecision extract_precision = eval_precision(cfg, precision);
  const torch::Device device = parse_device(device_name);

  std::shared_ptr<Algorithm> model;
  try {
    model = model_from_checkpoint(cfg, config, checkpoint, device);
  } catch (const ValueError& e) {
    std::cerr << "selfsup extract: error: " << e.what() << "\n";
    return kUsage;
  }
  torch::Tensor labels;
  const auto feats = split_features(*model, cfg, split, labels, device, extract_precision);
  core::write_npy(out, feats.to(torch::kFloat32));
  core::write_npy(labels_out, labels.to(torch::kInt64));
  std::cout << "Wrote " << out << " (" << feats.size(0) << " x " << feats.size(1)
            << " float32) and " << labels_out << " (" << labels.size(0) << " int64)" << std::endl;
  return kOk;
}

} // namespace selfsup::host
