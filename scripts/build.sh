#!/usr/bin/env bash
# Configures and builds selfsup into ./build with Ninja and ccache.
# Warnings are errors (-DSELFSUP_WERROR=ON) when CI or SELFSUP_WERROR is set (and not 0/OFF),
# as .ci/run does; the choice is re-applied to an already configured build folder.
set -euo pipefail
cd "$(dirname "$0")/.."
"./scripts/deps.sh"
. scripts/ccache_env.sh # ccache caches the precompiled-header compiles, across clones too

is_set() { case "${1:-}" in "" | 0 | [Oo][Ff][Ff] | [Ff][Aa][Ll][Ss][Ee] | [Nn][Oo]) return 1 ;; esac; }
werror=OFF
if is_set "${CI:-}" || is_set "${SELFSUP_WERROR:-}"; then werror=ON; fi

if [ ! -f build/build.ninja ]; then
  cmake -S . -B build -G Ninja -DCMAKE_BUILD_TYPE=Release -DSELFSUP_WERROR=$werror
elif ! grep -q "^SELFSUP_WERROR:BOOL=$werror\$" build/CMakeCache.txt; then
  cmake -S . -B build -DSELFSUP_WERROR=$werror
fi
cmake --build build -j "$(nproc)"
