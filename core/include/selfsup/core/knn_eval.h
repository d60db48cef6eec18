#pragma once
// Weighted kNN evaluation on global-pooled backbone features (MMSelfSup's knn_eval):
// L2-normalised features, cosine similarity, the top-k neighbours vote with exp(sim / T).
#include <cstdint>
#include <functional>
#include <string>

#include <torch/types.h>

#include <selfsup/core/export.h>

namespace selfsup {
class Algorithm;
}

namespace selfsup::core {

class DataLoader;

struct KnnResult {
  double top1 = 0; // percent
  double top5 = 0; // percent
  int64_t num_bank = 0;
  int64_t num_queries = 0;
};

/// The arithmetic of feature extraction. `BFloat16`: the model's floating-point parameters
/// and buffers and its inputs are cast to bfloat16 for the extraction (the model's own float32
/// weights are put back afterwards); features are returned as float32. `Auto`: bfloat16
/// where the hardware computes it natively (a CPU with AVX512-BF16 or AMX, or a CUDA device
/// with bf16 support), else float32.
enum class ExtractPrecision { Auto, Float32, BFloat16 };

/// "auto", "fp32" or "bf16" (config key `precision`, `--precision`); anything else is a
/// ConfigError naming `where` and the accepted values.
SELFSUP_CORE_API ExtractPrecision parse_extract_precision(const std::string& name,
                                                          const std::string& where);
/// The config spelling: "auto", "fp32" or "bf16".
SELFSUP_CORE_API std::string to_string(ExtractPrecision precision);

/// True when this CPU has native bfloat16 arithmetic (the avx512_bf16 or amx_bf16 flags of
/// /proc/cpuinfo); false where that file cannot be read.
SELFSUP_CORE_API bool cpu_has_native_bf16();

/// The dtype `precision` resolves to on `device` (kFloat32 or kBFloat16).
SELFSUP_CORE_API torch::ScalarType resolve_extract_dtype(ExtractPrecision precision,
                                                         torch::Device device);

/// How extract_features runs and reports. The API's default is exact float32; the hooks and
/// `selfsup eval`/`extract` default to Auto (their `precision` key and `--precision`).
struct ExtractOptions {
  ExtractPrecision precision = ExtractPrecision::Float32;
  /// A progress line (batches, images, images/s, ETA) every `log_interval` batches and after
  /// the last one; 0: none. Lines go to `log` (none when it is empty).
  int64_t log_interval = 10;
  std::function<void(const std::string&)> log;
  /// What the progress lines call the data, e.g. "kNN bank".
  std::string name = "features";
};

/// L2-normalised features of every sample of one loader epoch: the last tensor of the
/// algorithm's extract_feat (forward in tensor mode), global-average-pooled when it is a map.
/// Batched in inference mode (no autograd), eval mode, channels-last 4-D inputs and conv
/// weights, in `options.precision`; the model's mode, weights and memory format are restored
/// afterwards (also when it throws). The loader's workers prepare the next batches while the
/// model computes. Labels go to `labels`; features are float32 [N, D] on the CPU.
SELFSUP_CORE_API torch::Tensor extract_features(Algorithm& model, DataLoader& loader,
                                                torch::Tensor& labels, torch::Device device,
                                                const ExtractOptions& options = {});

/// Classifies each query by its k nearest bank features (cosine); class score is the sum of
/// exp(sim / temperature) over the neighbours of that class. Queries run in chunks.
SELFSUP_CORE_API KnnResult knn_classify(const torch::Tensor& bank, const torch::Tensor& bank_labels,
                                        const torch::Tensor& queries,
                                        const torch::Tensor& query_labels, int64_t k,
                                        double temperature, int64_t num_classes = -1);

} // namespace selfsup::core
