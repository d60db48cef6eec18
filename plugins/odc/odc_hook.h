#pragma once
#include <cstdint>
#include <memory>

#include <selfsup/config.h>
#include <selfsup/interfaces/training.h>
#include <selfsup/options.h>

namespace selfsup::plugins::odc {

struct ODCHookOptions {
  int64_t centroids_update_interval = 0, deal_with_small_clusters_interval = 0,
          evaluate_interval = 0;
  bool reweight = true;
  double reweight_pow = 0.5;
  bool dist_mode = true;
  static OptionTable<ODCHookOptions> table();
};

/// MMSelfSup's ODCHook, after every iteration: the centroids every centroids_update_interval
/// iterations, the small clusters every deal_with_small_clusters_interval, the loss weights
/// (n_c + 1e-10)^-reweight_pow (sum 1) when `reweight` (upstream re-weights every iteration
/// whatever the flag, with the power 0.5: the recipe's values), the cluster-size histogram
/// logged every evaluate_interval.
class ODCHook final : public Hook {
public:
  explicit ODCHook(ODCHookOptions options) : options_(options) {}
  static std::shared_ptr<Hook> make(const Config& cfg);
  void after_train_iter(RunnerContext& context) override;

private:
  ODCHookOptions options_;
};

} // namespace selfsup::plugins::odc
