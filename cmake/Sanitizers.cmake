# Sanitizer and fuzzing builds, each in its own build folder (scripts/sanitize.sh,
# scripts/fuzz.sh; .ci/run calls both).
#
# SELFSUP_SANITIZE (e.g. "address,undefined"): every target of the tree (sdk, core, host,
#   plugins, tests) compiles and links with -fsanitize=<list>; undefined behaviour is fatal
#   (-fno-sanitize-recover), frames are kept for stack traces, and the code is built at -O1
#   with line tables (-g1), whatever the build type, so reports are exact and the build stays
#   fast. Source paths in the debug info are relative to the tree (-fdebug-prefix-map), which
#   also lets ccache share entries between clones. LibTorch itself is not instrumented.
# SELFSUP_FUZZ (clang only): builds the libFuzzer harnesses of fuzz/ against sdk and core
#   compiled with -fsanitize=fuzzer-no-link,address (coverage for the fuzzer, ASan for the
#   findings); the host, the plugins and the tests are not built.
set(SELFSUP_SANITIZE "" CACHE STRING "Sanitizers for every target, e.g. address,undefined")
option(SELFSUP_FUZZ "Build the libFuzzer harnesses of fuzz/ (clang; sdk and core only)" OFF)

if(SELFSUP_FUZZ)
  if(NOT CMAKE_CXX_COMPILER_ID STREQUAL "Clang")
    message(FATAL_ERROR "SELFSUP_FUZZ needs clang (libFuzzer): configure with "
                        "-DCMAKE_CXX_COMPILER=clang++-14, not ${CMAKE_CXX_COMPILER_ID}")
  endif()
  if(SELFSUP_SANITIZE)
    message(FATAL_ERROR "SELFSUP_FUZZ brings its own sanitizers: leave SELFSUP_SANITIZE empty")
  endif()
  add_compile_options(-fsanitize=fuzzer-no-link,address -fno-omit-frame-pointer -O1 -g1
                      -fdebug-prefix-map=${PROJECT_SOURCE_DIR}=.)
  add_link_options(-fsanitize=address)
elseif(SELFSUP_SANITIZE)
  add_compile_options(-fsanitize=${SELFSUP_SANITIZE} -fno-sanitize-recover=undefined
                      -fno-omit-frame-pointer -O1 -g1 -fdebug-prefix-map=${PROJECT_SOURCE_DIR}=.)
  add_link_options(-fsanitize=${SELFSUP_SANITIZE})
  message(STATUS "selfsup: sanitizers ${SELFSUP_SANITIZE}")
endif()
