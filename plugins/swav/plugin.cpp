// The `swav` plugin: SwAV (algorithm, neck, head, loss with Sinkhorn-Knopp) and its hook.
#include <selfsup/plugin.h>

#include "swav.h"
#include "swav_hook.h"

namespace selfsup::plugins::swav {

void register_types(Registrar& r) {
  r.add<Algorithm>(
      "SwAV", [](const Config& cfg) { return std::make_shared<SwAV>(cfg); }, SwAV::schema());
  r.add<Neck>("SwAVNeck", &make_swav_neck, SwAVNeckOptions::table().schema());
  r.add<Head>("SwAVHead", &make_swav_head, SwAVHeadOptions::table().schema());
  r.add<Loss>("SwAVLoss", &make_swav_loss, SwAVLossOptions::table().schema());
  r.add<Hook>("SwAVHook", &SwAVHook::make, SwAVHook::schema());
}

} // namespace selfsup::plugins::swav

SELFSUP_PLUGIN("swav", "0.1.0", selfsup::plugins::swav::register_types)
