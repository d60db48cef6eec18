#pragma once
// The plugin entry point. One source file of a plugin writes
//
//   SELFSUP_PLUGIN("simclr", "0.1.0", selfsup::plugins::simclr::register_types)
//
// which exports (through BOOST_DLL_ALIAS, under the alias `selfsup_plugin_info`) a function
// returning a frozen POD record: the ABI version first, then the fingerprint, names and the
// register function. The host checks the record before anything is registered.
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <exception>

#include <boost/dll/alias.hpp>

#include <selfsup/registry.h>
#include <selfsup/version.h>

namespace selfsup {

extern "C" {
/// Frozen layout: only append fields, and bump SELFSUP_ABI_VERSION when it changes.
struct PluginInfo {
  uint32_t abi_version;
  const char* fingerprint;
  const char* name;
  const char* version;
  const char* selfsup_version;
  const char* torch_version;
  /// Registers the plugin's types; returns 0, or non-zero with a message in `err`.
  int (*register_types)(Registrar* registrar, char* err, size_t err_size);
};
}

namespace detail {
/// Runs a register function behind a noexcept boundary.
template <void (*Fn)(Registrar&)> int guarded_register(Registrar* r, char* err, size_t n) noexcept {
  try {
    Fn(*r);
    return 0;
  } catch (const std::exception& e) {
    std::snprintf(err, n, "%s", e.what());
  } catch (...) {
    std::snprintf(err, n, "unknown exception");
  }
  return 1;
}
} // namespace detail

} // namespace selfsup

#define SELFSUP_PLUGIN_INFO_ALIAS selfsup_plugin_info

#define SELFSUP_PLUGIN(NAME, VERSION, REGISTER_FN)                                                 \
  namespace {                                                                                      \
  const ::selfsup::PluginInfo* selfsup_plugin_info_fn() {                                          \
    static const ::selfsup::PluginInfo info{SELFSUP_ABI_VERSION,                                   \
                                            SELFSUP_BUILD_FINGERPRINT,                             \
                                            NAME,                                                  \
                                            VERSION,                                               \
                                            SELFSUP_VERSION_STRING,                                \
                                            SELFSUP_TORCH_VERSION_,                                \
                                            &::selfsup::detail::guarded_register<&REGISTER_FN>};   \
    return &info;                                                                                  \
  }                                                                                                \
  }                                                                                                \
  BOOST_DLL_ALIAS(selfsup_plugin_info_fn, selfsup_plugin_info)
