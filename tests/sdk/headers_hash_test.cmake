# cmake -DSOURCE_DIR=... -DBUILD_DIR=... -P headers_hash_test.cmake
#
# 1. The build's generated <selfsup/abi.h> carries the hash of the SDK headers as they are
#    now (CMake re-ran after the last header edit), so plugins built now get today's hash.
# 2. The hash follows the headers: another byte in one header, a renamed header, or one more
#    header each give another hash; the same headers give the same hash.
include(${SOURCE_DIR}/cmake/SelfSupAbi.cmake)

selfsup_sdk_headers_hash(${SOURCE_DIR}/sdk/include expected)
file(STRINGS ${BUILD_DIR}/sdk/include/selfsup/abi.h line REGEX "SELFSUP_SDK_HEADERS_HASH \"")
string(REGEX REPLACE ".*\"([0-9a-f]*)\".*" "\\1" generated "${line}")
if(NOT generated STREQUAL expected)
  message(FATAL_ERROR "${BUILD_DIR}/sdk/include/selfsup/abi.h: expected headers hash "
                      "${expected} (sdk/include now), got '${generated}'")
endif()

set(tmp ${BUILD_DIR}/headers_hash_test)
file(REMOVE_RECURSE ${tmp})
file(COPY ${SOURCE_DIR}/sdk/include/ DESTINATION ${tmp})
selfsup_sdk_headers_hash(${tmp} copy)
if(NOT copy STREQUAL expected)
  message(FATAL_ERROR "a copy of sdk/include hashes to ${copy}, the original to ${expected}")
endif()
file(APPEND ${tmp}/selfsup/config.h "\n")
selfsup_sdk_headers_hash(${tmp} edited)
file(RENAME ${tmp}/selfsup/config.h ${tmp}/selfsup/config2.h)
selfsup_sdk_headers_hash(${tmp} renamed)
file(WRITE ${tmp}/selfsup/extra/new.h "#pragma once\n")
selfsup_sdk_headers_hash(${tmp} added)
file(REMOVE_RECURSE ${tmp})
foreach(a expected edited renamed added)
  foreach(b expected edited renamed added)
    if(NOT a STREQUAL b AND "${${a}}" STREQUAL "${${b}}")
      message(FATAL_ERROR "headers hash: '${a}' and '${b}' both give ${${a}}")
    endif()
  endforeach()
endforeach()
message(STATUS "headers hash ${expected}: current, and follows edits, renames and additions")
