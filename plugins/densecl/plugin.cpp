// The `densecl` plugin: DenseCL, its neck and its loss_lambda warm-up hook.
#include <selfsup/plugin.h>

#include "densecl.h"
#include "densecl_hook.h"
#include "densecl_neck.h"

namespace selfsup::plugins::densecl {

void register_types(Registrar& r) {
  r.add<Algorithm>(
      "DenseCL", [](const Config& cfg) { return std::make_shared<DenseCL>(cfg); },
      DenseCL::schema());
  r.add<Neck>(
      "DenseCLNeck",
      [](const Config& cfg) {
        return std::make_shared<DenseCLNeck>(DenseCLNeckOptions::table().parse(cfg));
      },
      DenseCLNeckOptions::table().schema());
  r.add<Hook>(
      "DenseCLHook",
      [](const Config& cfg) {
        return std::make_shared<DenseCLHook>(DenseCLHookOptions::table().parse(cfg));
      },
      DenseCLHookOptions::table().schema());
}

} // namespace selfsup::plugins::densecl

SELFSUP_PLUGIN("densecl", "0.1.0", selfsup::plugins::densecl::register_types)
