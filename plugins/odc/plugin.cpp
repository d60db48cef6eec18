#include <selfsup/plugin.h>

#include "odc.h"
#include "odc_hook.h"
#include "odc_memory.h"
#include "odc_neck.h"

namespace selfsup::plugins::odc {

void register_types(Registrar& r) {
  r.add<Algorithm>(
      "ODC", [](const Config& cfg) { return std::make_shared<ODC>(cfg); }, ODC::schema());
  r.add<Memory>(
      "ODCMemory",
      [](const Config& cfg) {
        return std::make_shared<ODCMemory>(ODCMemoryOptions::table().parse(cfg));
      },
      ODCMemoryOptions::table().schema());
  r.add<Neck>(
      "ODCNeck",
      [](const Config& cfg) {
        return std::make_shared<ODCNeck>(ODCNeckOptions::table().parse(cfg));
      },
      ODCNeckOptions::table().schema());
  r.add<Hook>("ODCHook", &ODCHook::make, ODCHookOptions::table().schema());
}

} // namespace selfsup::plugins::odc

SELFSUP_PLUGIN("odc", "0.1.0", selfsup::plugins::odc::register_types)
