// `selfsup visualize CONFIG --checkpoint CKPT --out DIR [--num N] [--split test|train]`: PNG
// images of what a masked-image-modelling model (MAE, SimMIM) makes of some images: original,
// masked input, reconstruction, and the reconstruction with the visible part pasted back.
#include <algorithm>
#include <cstdint>
#include <filesystem>
#include <iostream>
#include <string>
#include <vector>

#include <boost/program_options.hpp>
#include <png.h>
#include <torch/torch.h>

#include <selfsup/core/data.h>
#include <selfsup/errors.h>

#include "cli.h"
#include "eval_setup.h"

namespace po = boost::program_options;
namespace fs = std::filesystem;

namespace selfsup::host {

namespace {

// The data preprocessor's mean and std (model.data_preprocessor), as [1, C, 1, 1] for a model
// input of C channels; identity without them.
std::pair<torch::Tensor, torch::Tensor> preprocessor_stats(const Json& cfg, int64_t channels) {
  auto mean = torch::zeros({1, channels, 1, 1});
  auto std = torch::ones({1, channels, 1, 1});
  const Config root(cfg);
  if (!root.has("model") || !root["model"].has("data_preprocessor")) return {mean, std};
  const Config dp = root["model"]["data_preprocessor"];
  auto read = [&](const char* key, torch::Tensor& out) {
    if (!dp.has(key) || dp[key].is_null()) return;
    const auto v = dp[key].as<std::vector<double>>();
    if (v.size() != 1 && int64_t(v.size()) != channels)
      dp.fail_key(key, "expected 1 or " + std::to_string(channels) +
                           " values (the model's input "
                           "channels), got " +
                           std::to_string(v.size()));
    for (int64_t c = 0; c < channels; ++c) out[0][c][0][0] = v.size() == 1 ? v[0] : v[c];
  };
  read("mean", mean);
  read("std", std);
  return {mean, std};
}

// [C, H, W] float 0..255 -> uint8 [H*scale, W*scale, C] (nearest upscaling).
torch::Tensor to_pixels(const torch::Tensor& img, int64_t scale) {
  auto x = img.clamp(0, 255).round().to(torch::kUInt8);
  if (scale > 1) x = x.repeat_interleave(scale, 1).repeat_interleave(scale, 2);
  return x.permute({1, 2, 0}).contiguous();
}

// Writes uint8 [H, W, C] (C 1 or 3) as an 8-bit gray or RGB PNG; throws ValueError naming the
// file when libpng cannot.
void write_png(const fs::path& file, const torch::Tensor& hwc) {
  png_image image{};
  image.version = PNG_IMAGE_VERSION;
  image.width = static_cast<png_uint_32>(hwc.size(1));
  image.height = static_cast<png_uint_32>(hwc.size(0));
  image.format = hwc.size(2) == 1 ? PNG_FORMAT_GRAY : PNG_FORMAT_RGB;
  const auto data = hwc.contiguous();
  if (!png_image_write_to_file(&image, file.string().c_str(), 0, data.data_ptr<uint8_t>(), 0,
                               nullptr))
    throw ValueError("visualize: cannot write " + file.string() + ": " + image.message);
}

} // namespace

int cmd_visualize(int argc, char** argv) {
  po::options_description opts(
      "selfsup visualize CONFIG --checkpoint CKPT --out DIR [options]\n\n"
      "Writes, for the first N images of a split, a PNG of four panels: the original, the "
      "masked input, the reconstruction and the reconstruction with the visible part pasted "
      "back (sample_<i>.png), and all of them as rows of one picture (reconstructions.png). "
      "For masked image modelling algorithms (MAE, SimMIM)");
  std::vector<std::string> overrides, plugin_dirs;
  std::string checkpoint, out, split = "test", device_name = "cpu";
  int64_t num = 8, scale = 0;
  uint64_t seed = 0;
  // clang-format off
  opts.add_options()
    ("help,h", "show this help")
    ("checkpoint", po::value(&checkpoint), "the trained checkpoint (.pth)")
    ("out", po::value(&out), "the folder for the PNG files (created)")
    ("num", po::value(&num)->default_value(num), "how many images")
    ("split", po::value(&split)->default_value(split),
     "test (test_dataloader, val_dataloader, else the KNNEvalHook's queries) or train (the "
     "train_dataloader with its training pipeline, e.g. SimMIM's mask generator)")
    ("scale", po::value(&scale), "pixel upscaling (default: to at least 112 pixels)")
    ("seed", po::value(&seed)->default_value(seed), "the seed of the masks and the loader")
    ("cfg-options", po::value(&overrides)->multitoken(), "override config keys: a.b=value ...")
    ("device", po::value(&device_name), "cpu or cuda")
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
    std::cerr << "selfsup visualize: CONFIG, --checkpoint CKPT and --out DIR are required\n\n"
              << opts << "\n";
    return kUsage;
  }
  if (num <= 0) throw po::error("--num must be > 0");
  if (scale < 0) throw po::error("--scale must be >= 0");
  if (split != "train" && split != "test") throw po::error("--split: expected train or test");

  core::PluginLoader loader;
  load_plugins(loader, plugin_dirs, vm.count("allow-insecure-plugins") > 0);
  const Json cfg = load_config(config, overrides, &loader);
  const torch::Device device = parse_device(device_name);
  std::shared_ptr<Algorithm> model;
  try {
    model = model_from_checkpoint(cfg, config, checkpoint, device);
  } catch (const ValueError& e) {
    std::cerr << "selfsup visualize: error: " << e.what() << "\n";
    return kUsage;
  }

  Config dl;
  if (split == "train") {
    const Config root(cfg);
    if (!root.has("train_dataloader")) root.fail("expected a train_dataloader (--split train)");
    dl = root["train_dataloader"];
  } else {
    dl = split_dataloader(cfg, split);
  }
  Json dl_json = dl.json();
  dl_json.set("batch_size", num);
  dl_json.set("drop_last", false);
  auto data = core::DataLoader::from_config(dl.derive(dl_json, dl.path()), seed);
  data->start_epoch(0);

  torch::manual_seed(static_cast<int64_t>(seed));
  std::vector<torch::Tensor> rows; // one [H', 4 panels, C] strip per image
  fs::create_directories(out);
  while (int64_t(rows.size()) < num) {
    auto batch = data->next();
    if (!batch) break;
    std::vector<torch::Tensor> views;
    for (auto& v : batch->views) views.push_back(v.to(device));
    DataSamples samples = to_data_samples(*batch, device);
    Reconstruction r;
    {
      torch::NoGradGuard no_grad;
      auto inputs = model->preprocess(views, samples);
      try {
        r = model->reconstruct(inputs, samples);
      } catch (const ValueError& e) {
        std::cerr << "selfsup visualize: error: " << e.what() << "\n";
        return kUsage;
      }
    }
    const auto [mean, std] = preprocessor_stats(cfg, r.original.size(1));
    auto pixels = [&, m = mean, s = std](const torch::Tensor& t) {
      return t.detach().to(torch::kCPU, torch::kFloat) * s + m;
    };
    const auto original = pixels(r.original), recon = pixels(r.reconstruction);
    const auto mask = r.mask.detach().to(torch::kCPU, torch::kFloat).expand_as(original);
    const auto masked = original * (1 - mask) + 127.5 * mask;
    const auto pasted = original * (1 - mask) + recon * mask;
    const int64_t s =
        scale > 0 ? scale : std::max<int64_t>(1, (112 + original.size(2) - 1) / original.size(2));
    for (int64_t i = 0; i < original.size(0) && int64_t(rows.size()) < num; ++i) {
      const int64_t c = original.size(1);
      auto gap = torch::full({c, original.size(2), 2}, 255.f);
      auto strip = torch::cat({original[i], gap, masked[i], gap, recon[i], gap, pasted[i]}, 2);
      auto png = to_pixels(strip, s);
      const fs::path file = fs::path(out) / ("sample_" + std::to_string(rows.size()) + ".png");
      write_png(file, png);
      rows.push_back(png);
    }
  }
  if (rows.empty()) {
    std::cerr << "selfsup visualize: error: " << dl.where() << " produced no images\n";
    return kFailure;
  }
  std::vector<torch::Tensor> grid;
  for (const auto& row : rows) {
    if (!grid.empty())
      grid.push_back(torch::full({4, row.size(1), row.size(2)}, 255, row.options()));
    grid.push_back(row);
  }
  const fs::path all = fs::path(out) / "reconstructions.png";
  write_png(all, torch::cat(grid, 0));
  std::cout << "Wrote " << rows.size() << " reconstructions (original | masked | reconstructed | "
            << "reconstructed + visible) to " << out << " (sample_<i>.png, "
            << all.filename().string() << ")" << std::endl;
  return kOk;
}

} // namespace selfsup::host
