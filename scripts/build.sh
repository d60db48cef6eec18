#!/usr/bin/env bash
# Configures (once) and builds selfsup into ./build with Ninja and ccache.
set -euo pipefail
cd "$(dirname "$0")/.."
"./scripts/deps.sh"
if [ ! -f build/build.ninja ]; then
  cmake -S . -B build -G Ninja -DCMAKE_BUILD_TYPE=Release
fi
cmake --build build -j "$(nproc)"
