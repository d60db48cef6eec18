#include <selfsup/plugin.h>
#include <selfsup/registry.h>

#include "deepcluster.h"
#include "deepcluster_dataset.h"
#include "deepcluster_hook.h"
#include "deepcluster_sampler.h"

namespace selfsup::plugins::deepcluster {

void register_types(Registrar& r) {
  r.add<Algorithm>(
      "DeepCluster", [](const Config& cfg) { return std::make_shared<DeepCluster>(cfg); },
      DeepCluster::schema());
  r.add<Hook>("DeepClusterHook", &DeepClusterHook::make, DeepClusterHookOptions::table().schema());
  r.add<Sampler>(
      "DeepClusterSampler",
      [](const Config& cfg) {
        return std::make_shared<DeepClusterSampler>(DeepClusterSamplerOptions::table().parse(cfg));
      },
      DeepClusterSamplerOptions::table().schema());
  r.add<Dataset>("DeepClusterImageNet", &DeepClusterImageNet::make,
                 DeepClusterImageNet::schema(Registry::global()));
}

} // namespace selfsup::plugins::deepcluster

SELFSUP_PLUGIN("deepcluster", "0.1.0", selfsup::plugins::deepcluster::register_types)
