// The `moco` plugin: the momentum-contrast family (MoCo v1/v2 here; MoCo v3 beside it).
#include <selfsup/plugin.h>

#include "moco.h"

namespace selfsup::plugins::moco {

void register_types(Registrar& r) {
  r.add<Algorithm>(
      "MoCo", [](const Config& cfg) { return std::make_shared<MoCo>(cfg); }, MoCo::schema());
}

} // namespace selfsup::plugins::moco

SELFSUP_PLUGIN("moco", "0.1.0", selfsup::plugins::moco::register_types)
