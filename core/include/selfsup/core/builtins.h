#pragma once
#include <selfsup/core/export.h>
#include <selfsup/registry.h>

namespace selfsup::core {
/// Registers the engine's own types (datasets, transforms, optimizers, schedulers, hooks)
/// under plugin name "core", once; again only after the registry was cleared.
SELFSUP_CORE_API void register_builtins();
/// The same into `registry` (a test's or an embedder's own), once per registry.
SELFSUP_CORE_API void register_builtins(Registry& registry);
} // namespace selfsup::core
