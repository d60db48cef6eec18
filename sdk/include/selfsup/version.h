#pragma once
// Versions and the build fingerprint used by the plugin handshake.
#include <string>

#include <torch/version.h>

#define SELFSUP_VERSION_STRING "0.1.0"
// Bump on any change of the plugin info layout, an sdk class layout or a vtable.
#define SELFSUP_ABI_VERSION 1

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

/// The fingerprint of the translation unit that expands it: sdk ABI, LibTorch
/// major.minor, C++ string ABI and compiler. Fixed at compile time.
#define SELFSUP_BUILD_FINGERPRINT                                                                  \
  "abi=" SELFSUP_STR_(                                                                             \
      SELFSUP_ABI_VERSION) ";torch=" SELFSUP_TORCH_VERSION_                                        \
                           ";cxx11abi=" SELFSUP_STR_(                                              \
                               _GLIBCXX_USE_CXX11_ABI) ";compiler=" SELFSUP_COMPILER_
