#include "odc_hook.h"

#include <cstdio>

#include <torch/torch.h>

#include <selfsup/errors.h>

#include "clustering.h"
#include "odc.h"

namespace selfsup::plugins::odc {

OptionTable<ODCHookOptions> ODCHookOptions::table() {
  using O = ODCHookOptions;
  using namespace selfsup::check;
  return OptionTable<O>("Online cluster upkeep of ODC after every iteration (centroids, small "
                        "clusters, loss weights), as MMSelfSup's ODCHook",
                        O())
      .required("centroids_update_interval", &O::centroids_update_interval,
                "iterations between centroid updates", gt(0))
      .required("deal_with_small_clusters_interval", &O::deal_with_small_clusters_interval,
                "iterations between small-cluster handling", gt(0))
      .required("evaluate_interval", &O::evaluate_interval, "iterations between cluster-size logs",
                gt(0))
      .required("reweight", &O::reweight, "set the loss weights from the cluster sizes")
      .required("reweight_pow", &O::reweight_pow, "the power of the re-weighting", ge(0))
      .optional("dist_mode", &O::dist_mode,
                "accepted for upstream's configs; one process and several act alike here");
}

std::shared_ptr<Hook> ODCHook::make(const Config& cfg) {
  return std::make_shared<ODCHook>(ODCHookOptions::table().parse(cfg));
}

void ODCHook::after_train_iter(RunnerContext& context) {
  auto* odc = dynamic_cast<ODC*>(&context.model());
  if (!odc) throw ValueError("ODCHook: the model is not an ODC");
  ODCMemory& memory = odc->memory_bank();
  const int64_t it = context.iter(); // iterations done (MMEngine's every_n_train_iters)
  if (it % options_.centroids_update_interval == 0) memory.update_centroids_memory();
  if (it % options_.deal_with_small_clusters_interval == 0) memory.deal_with_small_clusters();
  if (options_.reweight) {
    torch::NoGradGuard no_grad;
    odc->loss_weight().copy_(
        clustering::class_weights(memory.labels(), odc->num_classes(), options_.reweight_pow));
  }
  if (it % options_.evaluate_interval == 0 && context.rank() == 0) {
    const torch::Tensor h = clustering::cluster_sizes(memory.labels(), odc->num_classes());
    char line[160];
    std::snprintf(line, sizeof line,
                  "ODCHook: empty_num: %lld\tmin_cluster: %lld\tmax_cluster: %lld",
                  (long long)(h == 0).sum().item<int64_t>(), (long long)h.min().item<int64_t>(),
                  (long long)h.max().item<int64_t>());
    context.log(line);
  }
}

} // namespace selfsup::plugins::odc
