# selfsup_add_plugin(NAME SOURCES src... [OUTPUT_DIRECTORY dir] [NO_PCH])
#
# Builds a selfsup plugin: a MODULE library that links only the SDK (and through it
# LibTorch), exports nothing but its info alias, and refuses undefined symbols.
# Inside the selfsup tree it lands in the build tree's plugin folder; out of tree it
# lands in the caller's binary dir unless OUTPUT_DIRECTORY is given.
#
# Precompiled <torch/torch.h>: in the selfsup tree the plugin reuses the shared one
# (selfsup_pch); out of tree it gets its own when it has more than one source (building the
# header costs about as much as compiling one source that includes it, so it pays only when
# reused). NO_PCH: none, for plugins that do not include LibTorch's headers.
function(selfsup_add_plugin name)
  cmake_parse_arguments(ARG "NO_PCH" "OUTPUT_DIRECTORY" "SOURCES" ${ARGN})
  if(NOT ARG_SOURCES)
    message(FATAL_ERROR "selfsup_add_plugin(${name}): SOURCES is required")
  endif()
  add_library(${name} MODULE ${ARG_SOURCES})
  if(TARGET selfsup_sdk)
    target_link_libraries(${name} PRIVATE selfsup_sdk)
  else()
    target_link_libraries(${name} PRIVATE SelfSup::sdk)
  endif()
  set_target_properties(${name} PROPERTIES
    PREFIX "lib"
    CXX_VISIBILITY_PRESET hidden
    VISIBILITY_INLINES_HIDDEN ON)
  target_link_options(${name} PRIVATE -Wl,--no-undefined)
  if(DEFINED SELFSUP_PLUGIN_SUBDIR AND NOT ARG_OUTPUT_DIRECTORY)
    # In the selfsup tree: installed beside the host, finding the sdk two folders up.
    set_target_properties(${name} PROPERTIES INSTALL_RPATH "$ORIGIN/../..")
    install(TARGETS ${name} LIBRARY DESTINATION ${SELFSUP_PLUGIN_SUBDIR})
  endif()
  if(ARG_OUTPUT_DIRECTORY)
    set_target_properties(${name} PROPERTIES LIBRARY_OUTPUT_DIRECTORY ${ARG_OUTPUT_DIRECTORY})
  elseif(DEFINED SELFSUP_PLUGIN_OUTPUT_DIRECTORY)
    set_target_properties(${name} PROPERTIES LIBRARY_OUTPUT_DIRECTORY ${SELFSUP_PLUGIN_OUTPUT_DIRECTORY})
  endif()
  if(NOT ARG_NO_PCH)
    if(TARGET selfsup_pch)
      target_precompile_headers(${name} REUSE_FROM selfsup_pch)
    else()
      list(LENGTH ARG_SOURCES source_count)
      if(source_count GREATER 1)
        target_precompile_headers(${name} PRIVATE <torch/torch.h>)
      endif()
    endif()
  endif()
  if(COMMAND selfsup_warnings)
    selfsup_warnings(${name})
  endif()
endfunction()
