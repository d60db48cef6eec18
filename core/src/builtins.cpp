#include <selfsup/core/builtins.h>

#include <mutex>

#include <boost/dll/runtime_symbol_info.hpp>

#include <selfsup/interfaces/algorithm.h>

#include "builtins.h"

namespace selfsup::core {

void register_data_preprocessors(Registrar& r) {
  r.add<DataPreprocessor>(
      "SelfSupDataPreprocessor",
      [](const Config& c) {
        return std::make_shared<SelfSupDataPreprocessor>(
            SelfSupDataPreprocessorOptions::table().parse(c));
      },
      SelfSupDataPreprocessorOptions::table().schema());
  r.add<DataPreprocessor>(
      "TwoNormDataPreprocessor",
      [](const Config& c) {
        return std::make_shared<TwoNormDataPreprocessor>(
            TwoNormDataPreprocessorOptions::table().parse(c));
      },
      TwoNormDataPreprocessorOptions::table().schema());
}

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
  register_samplers(r);
  register_train_loops(r);
  register_data_preprocessors(r);
  r.commit(registry);
}

} // namespace selfsup::core
