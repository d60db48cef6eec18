#pragma once
// The engine's own registered types, grouped by source file.
#include <selfsup/registry.h>

namespace selfsup::core {
void register_datasets(Registrar& r);
void register_transforms(Registrar& r);
void register_optimizers(Registrar& r);
void register_schedulers(Registrar& r);
void register_hooks(Registrar& r);
void register_samplers(Registrar& r);
void register_train_loops(Registrar& r);
void register_data_preprocessors(Registrar& r);
} // namespace selfsup::core
