#pragma once
#include <selfsup/core/export.h>

namespace selfsup::core {
/// Registers the engine's own types (datasets, transforms, optimizers, schedulers, hooks)
/// under plugin name "core", once; again only after the registry was cleared.
SELFSUP_CORE_API void register_builtins();
} // namespace selfsup::core
