#pragma once
// Versions and the build fingerprint used by the plugin handshake.
#include <string>

#include <torch/version.h>

// Generated at configure time (cmake/SelfSupAbi.cmake): SELFSUP_VERSION_STRING,
// SELFSUP_ABI_VERSION (set once in the top CMakeLists.txt; also the libraries' SONAME) and
// SELFSUP_SDK_HEADERS_HASH (a hash of every header under sdk/include, recomputed when one
// changes, so a plugin built against other headers is refused without a manual bump).
#include <selfsup/abi.h>

#define SELFSUP_STR2_(x) #x
#define SELFSUP_STR_(x) SELFSUP_STR2_(x)
#if defined(__clang__)
#define SELFSUP_COMPILER_ "clang-" SELFSUP_STR_(__clang_major__)
#elif defined(__GNUC__)
#define SELFSUP_COMPILER_ "gcc-" SELFSUP_STR_(__GNUC__)
#else
#define SELFSUP_COMPILER_ "unknown"
#endif
#define SELFSUP_TORCH_VERSION_                                                                     \
  SELFSUP_STR_(TORCH_VERSION_MAJOR) "." SELFSUP_STR_(TORCH_VERSION_MINOR)

/// The fingerprint of the translation unit that expands it: sdk ABI, sdk headers hash, LibTorch
/// major.minor, C++ string ABI and compiler, as `key=value` fields separated by `;` (the loader
/// names the fields that differ). Fixed at compile time.
// clang-format off
#define SELFSUP_BUILD_FINGERPRINT                                                                  \
  "abi=" SELFSUP_STR_(SELFSUP_ABI_VERSION)                                                         \
  ";headers=" SELFSUP_SDK_HEADERS_HASH                                                             \
  ";torch=" SELFSUP_TORCH_VERSION_                                                                 \
  ";cxx11abi=" SELFSUP_STR_(_GLIBCXX_USE_CXX11_ABI)                                                \
  ";compiler=" SELFSUP_COMPILER_
// clang-format on
