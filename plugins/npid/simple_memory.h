#pragma once
#include <cstdint>
#include <ostream>

#include <torch/arg.h>
#include <torch/types.h>

#include <selfsup/config.h>
#include <selfsup/interfaces/modules.h>
#include <selfsup/options.h>

namespace selfsup::plugins::npid {

struct SimpleMemoryOptions {
  SimpleMemoryOptions(int64_t length, int64_t feat_dim, double momentum)
      : length_(length), feat_dim_(feat_dim), momentum_(momentum) {}
  static OptionTable<SimpleMemoryOptions> table();

  TORCH_ARG(int64_t, length);
  TORCH_ARG(int64_t, feat_dim);
  TORCH_ARG(double, momentum);

private:
  SimpleMemoryOptions() = default;
};

/// MMSelfSup's SimpleMemory, the memory bank of NPID: a [length, feat_dim] buffer
/// `feature_bank` of L2-normalised rows (initialised as normalised Gaussian noise), one row per
/// dataset sample. An update blends the stored rows of the batch's samples with the new
/// (normalised) features and normalises again:
///   bank[idx] <- normalize((1 - momentum) * bank[idx] + momentum * normalize(feature)),
/// with the indices and features gathered over all ranks first (the identity in one process).
/// Negatives are drawn uniformly over the rows, with replacement (upstream's alias sampler
/// with equal weights).
class SimpleMemory final : public selfsup::Memory {
public:
  explicit SimpleMemory(const SimpleMemoryOptions& options);

  void update(const torch::Tensor& idx, const torch::Tensor& feature) override;
  /// `n` row indices drawn uniformly from [0, length) with replacement, int64 on the bank's
  /// device.
  [[nodiscard]] torch::Tensor draw(int64_t n) const;
  [[nodiscard]] const torch::Tensor& feature_bank() const { return feature_bank_; }
  /// Replaces the bank's content (same shape), e.g. to start from known rows in a test.
  void set_feature_bank(const torch::Tensor& bank);
  void pretty_print(std::ostream& stream) const override;

  SimpleMemoryOptions options;

private:
  torch::Tensor feature_bank_;
};

} // namespace selfsup::plugins::npid
