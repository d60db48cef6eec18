#!/usr/bin/env bash
# The first README command: installs what is missing, builds, and runs the default job
# (a short SimCLR run on Fashion-MNIST that ends with kNN accuracies).
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/build.sh
exec ./build/bin/selfsup train configs/simclr/simclr_resnet18_fmnist_demo.json \
  --work-dir work_dirs/demo "$@"
