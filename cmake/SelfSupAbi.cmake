# The SDK's ABI identity, computed at configure time.
#
# selfsup_sdk_headers_hash(DIR OUT_VAR)
#   A 16-hex-digit SHA-256 over the path and contents of every *.h under DIR, in sorted order.
#   Usable in script mode too (cmake -P), which is how a test checks a build's hash is current.
#
# selfsup_generate_abi_header(HEADERS_DIR OUTPUT)
#   Writes OUTPUT, the generated <selfsup/abi.h>: SELFSUP_VERSION_STRING, SELFSUP_ABI_VERSION
#   and SELFSUP_SDK_HEADERS_HASH, which the plugin fingerprint carries. A plugin compiled
#   against SDK headers that differ in any way from the host's is refused when loaded, and
#   nobody has to remember to bump a number. Every header is a configure dependency: editing,
#   adding or removing one re-runs CMake (well under a second) before the next build, which
#   recomputes the hash; OUTPUT is rewritten only when its contents change.

function(selfsup_sdk_headers_hash dir out_var)
  file(GLOB_RECURSE headers LIST_DIRECTORIES false RELATIVE ${dir} ${dir}/*.h)
  list(SORT headers)
  set(manifest "")
  foreach(header IN LISTS headers)
    file(SHA256 ${dir}/${header} sum)
    string(APPEND manifest "${sum}  ${header}\n")
  endforeach()
  string(SHA256 hash "${manifest}")
  string(SUBSTRING ${hash} 0 16 hash)
  set(${out_var} ${hash} PARENT_SCOPE)
endfunction()

function(selfsup_generate_abi_header headers_dir output)
  # CONFIGURE_DEPENDS re-globs at build time (a header added or removed); the directory
  # property re-runs CMake when an existing header's contents change.
  file(GLOB_RECURSE headers CONFIGURE_DEPENDS LIST_DIRECTORIES false ${headers_dir}/*.h)
  set_property(DIRECTORY APPEND PROPERTY CMAKE_CONFIGURE_DEPENDS ${headers})
  selfsup_sdk_headers_hash(${headers_dir} SELFSUP_SDK_HEADERS_HASH)
  configure_file(${CMAKE_CURRENT_FUNCTION_LIST_DIR}/abi.h.in ${output} @ONLY)
  message(STATUS "selfsup: SDK ABI ${SELFSUP_ABI_VERSION}, headers hash ${SELFSUP_SDK_HEADERS_HASH}")
endfunction()
