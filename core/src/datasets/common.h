#pragma once
// Helpers shared by the engine's file-backed datasets (CIFAR, ImageFolder).
#include <cstdint>
#include <string>
#include <vector>

#include <selfsup/registry.h>

namespace selfsup::core {

/// The whole content of the regular file `path`. Throws ValueError naming it (and `what`,
/// e.g. "CIFAR-10 batch") when it is missing, not a regular file, unreadable, or larger than
/// `max_bytes`.
std::vector<uint8_t> read_regular_file(const std::string& path, uint64_t max_bytes,
                                       const std::string& what);

void register_cifar(Registrar& r);
void register_image_folder(Registrar& r);

} // namespace selfsup::core
