#include <selfsup/plugin.h>

#include "barlowtwins.h"

namespace selfsup::plugins::barlowtwins {

void register_types(Registrar& r) {
  r.add<Algorithm>(
      "BarlowTwins", [](const Config& cfg) { return std::make_shared<BarlowTwins>(cfg); },
      BarlowTwins::schema());
}

} // namespace selfsup::plugins::barlowtwins

SELFSUP_PLUGIN("barlowtwins", "0.1.0", selfsup::plugins::barlowtwins::register_types)
