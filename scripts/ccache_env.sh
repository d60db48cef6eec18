# Sourced by the build scripts (build.sh, sanitize.sh, fuzz.sh) from the tree's root: ccache
# settings that let it cache the compiles that use the precompiled <torch/torch.h>, and share
# entries between clones of the tree in different folders (a fresh CI checkout).
#   sloppiness: pch_defines,time_macros are required for precompiled headers (ccache's manual,
#     "Precompiled headers"); include_file_mtime,include_file_ctime accept the .gch that the
#     same build has just written (otherwise "too new" and the compile is not cached).
#   base_dir: absolute paths under the tree are hashed as relative ones.
export CCACHE_SLOPPINESS="${CCACHE_SLOPPINESS:-pch_defines,time_macros,include_file_mtime,include_file_ctime}"
export CCACHE_BASEDIR="${CCACHE_BASEDIR:-$PWD}"
