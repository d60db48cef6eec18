#include <selfsup/plugin.h>

#include "byol.h"

namespace selfsup::plugins::byol {

void register_types(Registrar& r) {
  r.add<Algorithm>(
      "BYOL", [](const Config& cfg) { return std::make_shared<BYOL>(cfg); }, BYOL::schema());
}

} // namespace selfsup::plugins::byol

SELFSUP_PLUGIN("byol", "0.1.0", selfsup::plugins::byol::register_types)
