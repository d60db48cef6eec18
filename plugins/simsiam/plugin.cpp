#include <selfsup/plugin.h>

#include "simsiam.h"
#include "simsiam_hook.h"

namespace selfsup::plugins::simsiam {

void register_types(Registrar& r) {
  r.add<Algorithm>(
      "SimSiam", [](const Config& cfg) { return std::make_shared<SimSiam>(cfg); },
      SimSiam::schema());
  r.add<Hook>("SimSiamHook", &SimSiamHook::make, SimSiamHook::schema());
}

} // namespace selfsup::plugins::simsiam

SELFSUP_PLUGIN("simsiam", "0.1.0", selfsup::plugins::simsiam::register_types)
