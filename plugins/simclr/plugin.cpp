#include <selfsup/plugin.h>

#include "simclr.h"

namespace selfsup::plugins::simclr {

void register_types(Registrar& r) {
  r.add<Algorithm>(
      "SimCLR", [](const Config& cfg) { return std::make_shared<SimCLR>(cfg); }, SimCLR::schema());
}

} // namespace selfsup::plugins::simclr

SELFSUP_PLUGIN("simclr", "0.1.0", selfsup::plugins::simclr::register_types)
