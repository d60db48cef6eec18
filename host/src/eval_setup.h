#pragma once
// What `selfsup eval` and `selfsup extract` share: the model of a config with a checkpoint's
// weights, and the labelled datasets to evaluate on.
#include <memory>
#include <string>

#include <torch/types.h>

#include <selfsup/config.h>
#include <selfsup/core/knn_eval.h>
#include <selfsup/interfaces/algorithm.h>
#include <selfsup/json.h>

namespace selfsup::core {
class DataLoader;
}

namespace selfsup::host {

/// Builds `cfg.model` (as `train` does, seed 0) on `device` and loads the weights of the
/// checkpoint at `checkpoint`. Throws ValueError naming the file when it is missing or not a
/// checkpoint, and naming the checkpoint and `config_path` with the missing, unexpected or
/// mis-shaped entries when the checkpoint holds another model.
std::shared_ptr<Algorithm> model_from_checkpoint(const Json& cfg, const std::string& config_path,
                                                 const std::string& checkpoint,
                                                 torch::Device device);

/// The dataloader config of a labelled split: "train" is the evaluation hook's bank_dataloader;
/// "test" is the top-level test_dataloader, else val_dataloader, else the evaluation hook's
/// query_dataloader. Throws ConfigError naming what is missing.
Config split_dataloader(const Json& cfg, const std::string& split);

/// The config's evaluation hook in custom_hooks: the first KNNEvalHook, else the first
/// LinearProbeHook (both name a bank_dataloader and a query_dataloader), or a null Config.
Config eval_hook(const Json& cfg);

/// Extracts the split's features (extract_features: the algorithm's last extract_feat output,
/// global-average-pooled and L2-normalised) and labels in `precision`, printing what it does
/// to stdout: a line before, a progress line every 10 batches, the time and images/s after.
torch::Tensor split_features(Algorithm& model, const Json& cfg, const std::string& split,
                             torch::Tensor& labels, torch::Device device,
                             core::ExtractPrecision precision);

/// `--precision` of eval and extract: `name` when given, else the config's evaluation hook's
/// `precision`, else auto. Throws ConfigError naming the option or the hook key.
core::ExtractPrecision eval_precision(const Json& cfg, const std::string& name);

/// --threads: `threads` compute threads, or every core when 0 (LibTorch alone would use 1
/// here).
void set_compute_threads(int threads);

/// --device: "cpu" or "cuda" (refused when LibTorch has no CUDA device).
torch::Device parse_device(const std::string& name);

} // namespace selfsup::host
