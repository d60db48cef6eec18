#pragma once
#include <memory>
#include <string>

#include <selfsup/interfaces/algorithm.h>
#include <selfsup/interfaces/training.h>
#include <selfsup/schema.h>

#include "simple_memory.h"

namespace selfsup::plugins::npid {

/// NPID (Wu et al. 2018), non-parametric instance discrimination, as MMSelfSup computes it:
/// the normalised embedding v of each image is contrasted (ContrastiveHead) with its own row of
/// the memory bank (the positive) and `neg_num` rows drawn uniformly from the bank (the
/// negatives); then the bank rows of the batch are updated with v (SimpleMemory). The sample
/// indices come from DataSamples::sample_idx (PackSelfSupInputs always batches them).
class NPID final : public BaseModel {
public:
  explicit NPID(const Config& cfg);
  static Schema schema();

  LossMap loss(const std::vector<torch::Tensor>& inputs, const DataSamples& samples) override;
  /// The loss with given negative indices ([B * neg_num] int64), as loss() computes it after
  /// drawing them; updates the bank the same way.
  LossMap loss_with_negatives(const std::vector<torch::Tensor>& inputs, const torch::Tensor& idx,
                              const torch::Tensor& neg_idx);
  /// Negative indices for a batch with sample indices `idx`: B * neg_num uniform draws; with
  /// ensure_neg, draws equal to the row's own index are redrawn until none is.
  [[nodiscard]] torch::Tensor draw_negatives(const torch::Tensor& idx) const;
  /// BeforeRun: checks that the bank has a row for every sample of the training dataset.
  void on_run_event(RunEvent event, RunnerContext& context) override;

  [[nodiscard]] SimpleMemory& memory_bank() const { return *memory_bank_; }
  [[nodiscard]] int64_t neg_num() const { return neg_num_; }
  void pretty_print(std::ostream& stream) const override;

private:
  std::shared_ptr<SimpleMemory> memory_bank_;
  int64_t neg_num_;
  bool ensure_neg_;
  std::string length_path_; // "model.memory_bank.length", for errors
};

} // namespace selfsup::plugins::npid
