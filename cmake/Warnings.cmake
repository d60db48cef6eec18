# selfsup_warnings(target): our warning set, private to each target.
function(selfsup_warnings target)
  target_compile_options(${target} PRIVATE -Wall -Wextra -Wno-unused-parameter)
  if(SELFSUP_WERROR)
    target_compile_options(${target} PRIVATE -Werror)
  endif()
endfunction()
