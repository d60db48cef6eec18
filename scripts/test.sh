#!/usr/bin/env bash
# The second README command: installs what is missing, builds, and runs every test.
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/build.sh
ctest --test-dir build --output-on-failure -j 2 --timeout 900
