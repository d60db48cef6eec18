#pragma once
#include <cstdint>

#include <torch/arg.h>

#include <selfsup/interfaces/training.h>
#include <selfsup/options.h>

namespace selfsup::plugins::densecl {

class DenseCL;

struct DenseCLHookOptions {
  static OptionTable<DenseCLHookOptions> table();
  TORCH_ARG(int64_t, start_iters) = 1000;
};

/// MMSelfSup's DenseCLHook: the dense loss's warm-up. Before iteration `start_iters` the
/// model's loss_lambda is 0 (only the global loss trains); from it on, the configured value.
class DenseCLHook final : public Hook {
public:
  explicit DenseCLHook(const DenseCLHookOptions& options) : options(options) {}
  void before_run(RunnerContext& context) override;
  void before_train_iter(RunnerContext& context) override;

  DenseCLHookOptions options;

private:
  DenseCL* model_ = nullptr;
  double loss_lambda_ = 0;
};

} // namespace selfsup::plugins::densecl
