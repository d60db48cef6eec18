// The `moco` plugin: the momentum-contrast family (MoCo v1/v2 here; MoCo v3 beside it).
#include <selfsup/plugin.h>

#include "moco.h"
#include "mocov3.h"

namespace selfsup::plugins::moco {

void register_types(Registrar& r) {
  r.add<Algorithm>(
      "MoCo", [](const Config& cfg) { return std::make_shared<MoCo>(cfg); }, MoCo::schema());
  r.add<Algorithm>(
      "MoCoV3", [](const Config& cfg) { return std::make_shared<MoCoV3>(cfg); }, MoCoV3::schema());
  r.add<Head>("MoCoV3Head", &make_mocov3_head, MoCoV3HeadOptions::table().schema());
}

} // namespace selfsup::plugins::moco

SELFSUP_PLUGIN("moco", "0.1.0", selfsup::plugins::moco::register_types)
