#include "eval_setup.h"

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <iostream>
#include <thread>

#include <torch/torch.h>

#include <selfsup/core/checkpoint.h>
#include <selfsup/core/data.h>
#include <selfsup/core/knn_eval.h>
#include <selfsup/core/weight_export.h>
#include <selfsup/errors.h>
#include <selfsup/registry.h>

namespace selfsup::host {

std::shared_ptr<Algorithm> model_from_checkpoint(const Json& cfg, const std::string& config_path,
                                                 const std::string& checkpoint,
                                                 torch::Device device) {
  const Config root(cfg);
  if (!root.has("model")) root.fail("expected a 'model' key (the algorithm to evaluate)");
  torch::manual_seed(0);
  Json model_json = root["model"].json(); // init_cfg Pretrained: the checkpoint's weights win
  const bool pretrained = !core::take_pretrained_init_cfg(model_json).empty();
  auto model =
      build<Algorithm>(pretrained ? root["model"].derive(model_json, "model") : root["model"]);
  const core::Checkpoint ckpt = core::load_checkpoint(checkpoint); // names the file
  try {
    core::load_module_state(*model, ckpt.state_dict, "checkpoint " + checkpoint);
  } catch (const ValueError& e) {
    throw ValueError("the checkpoint " + checkpoint + " does not fit the model of " + config_path +
                     " (a checkpoint of another model or config?): " + e.what());
  }
  model->to(device);
  model->eval();
  return model;
}

Config eval_hook(const Json& cfg) {
  const Config root(cfg);
  if (!root.has("custom_hooks")) return Config();
  const Config hooks = root["custom_hooks"];
  if (!hooks.is_array()) return Config();
  for (const char* type : {"KNNEvalHook", "LinearProbeHook"})
    for (size_t i = 0; i < hooks.size(); ++i) {
      const Config h = hooks.at(i);
      if (h.is_object() && h.has("type") && h["type"].json().is_string() &&
          h["type"].as<std::string>() == type)
        return h;
    }
  return Config();
}

Config split_dataloader(const Json& cfg, const std::string& split) {
  const Config root(cfg);
  if (split == "test")
    for (const char* key : {"test_dataloader", "val_dataloader"})
      if (root.has(key) && !root[key].is_null()) return root[key];
  if (split != "train" && split != "test")
    throw ConfigError("--split: expected 'train' or 'test', got '" + split + "'");
  const Config hook = eval_hook(cfg);
  const char* key = split == "train" ? "bank_dataloader" : "query_dataloader";
  if (hook.is_null() || !hook.has(key))
    throw ConfigError(std::string("custom_hooks: expected a KNNEvalHook (or LinearProbeHook) "
                                  "with a ") +
                      key + " (the labelled " + split + " split to evaluate on" +
                      (split == "test" ? "; or a top-level test_dataloader" : "") + ")");
  return hook[key];
}

torch::Tensor split_features(Algorithm& model, const Json& cfg, const std::string& split,
                             torch::Tensor& labels, torch::Device device,
                             core::ExtractPrecision precision) {
  const Config dl = split_dataloader(cfg, split);
  auto loader = core::DataLoader::from_config(dl, 0);
  const torch::ScalarType dtype = core::resolve_extract_dtype(precision, device);
  const char* arithmetic = dtype == torch::kBFloat16 ? "bf16" : "fp32";
  std::cout << "Extracting " << split << " features (" << dl.where() << ": "
            << loader->dataset().size() << " images, batch " << loader->options().batch_size << ", "
            << arithmetic << ", " << torch::get_num_threads() << " threads)..." << std::endl;
  core::ExtractOptions o;
  o.precision = precision;
  o.name = "  " + split;
  o.log = [](const std::string& line) { std::cout << line << std::endl; };
  const auto start = std::chrono::steady_clock::now();
  auto feats = core::extract_features(model, *loader, labels, device, o);
  const double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  char buf[160];
  std::snprintf(buf, sizeof buf, "  %lld x %lld features in %.1f s (%.0f images/s, %s)",
                (long long)feats.size(0), (long long)feats.size(1), s,
                s > 0 ? double(feats.size(0)) / s : 0.0, arithmetic);
  std::cout << buf << std::endl;
  return feats;
}

core::ExtractPrecision eval_precision(const Json& cfg, const std::string& name) {
  if (!name.empty()) return core::parse_extract_precision(name, "--precision");
  const Config hook = eval_hook(cfg);
  if (!hook.is_null() && hook.has("precision"))
    return core::parse_extract_precision(hook["precision"].as<std::string>(),
                                         hook["precision"].where());
  return core::ExtractPrecision::Auto;
}

void set_compute_threads(int threads) {
  torch::set_num_threads(threads > 0 ? threads
                                     : std::max(1, int(std::thread::hardware_concurrency())));
}

torch::Device parse_device(const std::string& name) {
  if (name == "cpu") return torch::kCPU;
  if (name == "cuda") {
    if (!torch::cuda::is_available())
      throw ConfigError("--device cuda: LibTorch sees no CUDA device here");
    return torch::kCUDA;
  }
  throw ConfigError("--device: expected 'cpu' or 'cuda', got '" + name + "'");
}

} // namespace selfsup::host
