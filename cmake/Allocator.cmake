# The selfsup and selfsup_bench executables allocate through tcmalloc (Debian's
# libtcmalloc-minimal4) instead of glibc's malloc. glibc maps every block above 32 MB afresh
# and unmaps it on free, so each activation or gradient tensor of a training step pays its page
# faults and the kernel's zeroing again, every step; tcmalloc keeps freed pages for the next
# allocation. docs/performance.md has what it bought. Libraries and plugins are untouched: the
# allocator is the program's choice. Not with sanitizers (they bring their own allocator).
option(SELFSUP_TCMALLOC "Link the selfsup and selfsup_bench executables with tcmalloc" ON)

function(selfsup_use_tcmalloc target)
  if(NOT SELFSUP_TCMALLOC OR SELFSUP_SANITIZE OR SELFSUP_FUZZ)
    return()
  endif()
  find_library(SELFSUP_TCMALLOC_LIBRARY NAMES tcmalloc_minimal libtcmalloc_minimal.so.4)
  if(NOT SELFSUP_TCMALLOC_LIBRARY)
    message(FATAL_ERROR "selfsup: tcmalloc not found: install libtcmalloc-minimal4 "
                        "(scripts/deps.sh does) or configure with -DSELFSUP_TCMALLOC=OFF")
  endif()
  # Nothing references its symbols: keep it linked even where --as-needed is the default.
  target_link_libraries(${target} PRIVATE -Wl,--no-as-needed ${SELFSUP_TCMALLOC_LIBRARY}
                        -Wl,--as-needed)
endfunction()
