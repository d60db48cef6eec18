// The `npid` plugin: NPID and its memory bank, SimpleMemory.
#include <selfsup/plugin.h>

#include "npid.h"
#include "simple_memory.h"

namespace selfsup::plugins::npid {

void register_types(Registrar& r) {
  r.add<Algorithm>(
      "NPID", [](const Config& cfg) { return std::make_shared<NPID>(cfg); }, NPID::schema());
  r.add<Memory>(
      "SimpleMemory",
      [](const Config& cfg) {
        return std::make_shared<SimpleMemory>(SimpleMemoryOptions::table().parse(cfg));
      },
      SimpleMemoryOptions::table().schema());
}

} // namespace selfsup::plugins::npid

SELFSUP_PLUGIN("npid", "0.1.0", selfsup::plugins::npid::register_types)
