#include <selfsup/core/builtins.h>

#include <mutex>

#include <boost/dll/runtime_symbol_info.hpp>

#include "builtins.h"

namespace selfsup::core {

void register_builtins() {
  register_builtins(Registry::global());
}

void register_builtins(Registry& registry) {
  static std::mutex mutex;
  std::lock_guard<std::mutex> lock(mutex);
  for (const auto* e : registry.entries())
    if (e->plugin == "core") return;
  Registrar r("core", boost::dll::this_line_location().string());
  register_datasets(r);
  register_transforms(r);
  register_optimizers(r);
  register_schedulers(r);
  register_hooks(r);
  r.commit(registry);
}

} // namespace selfsup::core
