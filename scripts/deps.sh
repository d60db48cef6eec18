#!/usr/bin/env bash
# Installs the Debian packages selfsup needs, if any is missing. Idempotent and quiet when
# everything is there. Needs root (or sudo) only when something must be installed.
set -euo pipefail

PACKAGES=(
  build-essential cmake ninja-build ccache pkg-config
  libtorch-dev            # LibTorch 1.13 (CPU)
  libgloo-dev             # c10d's ProcessGroupGloo headers (distributed training, core/src/dist_c10d.cpp)
  libfaiss-dev            # k-means and PCA whitening of DeepCluster/ODC (plugins/deepcluster/clustering.cpp)
  libdnnl-dev             # oneDNN 2.6 headers: fp32 Winograd convolutions of ResNet (plugins/backbones/winograd_conv.cpp)
  libtcmalloc-minimal4    # the executables' allocator: no page faults per step (cmake/Allocator.cmake)
  libopenblas0-openmp     # makes libblas.so.3 an optimised BLAS instead of the reference one
  libboost-dev libboost-program-options-dev
  rapidjson-dev zlib1g-dev
  libjpeg62-turbo-dev libpng-dev  # ImageFolder decodes JPEG (libjpeg-turbo) and PNG (libpng)
  libopencv-core-dev libopencv-imgproc-dev libopencv-imgcodecs-dev  # not libopencv-dev: cmake/FindOpenCV.cmake
  libgtest-dev libgmock-dev clang-format
  clang-14 libclang-rt-14-dev  # scripts/fuzz.sh: clang with its libFuzzer and ASan runtimes
  dataset-fashion-mnist   # /usr/share/datasets/fashion-mnist
  python3-torch           # test-time oracle: Python reads our checkpoints (/usr/bin/python3)
  python3-torchvision     # test-time oracle: exported/checkpoint weights load into torchvision's ResNet
  python3-pil             # test-time oracle: the pillow backend's augmentations equal PIL's
  chromium                # test-time oracle: `selfsup report`'s page renders its plots (headless)
)

missing=()
for p in "${PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -eq 0 ]; then
  exit 0
fi
echo "selfsup: installing ${missing[*]}"
SUDO=""
if [ "$(id -u)" -ne 0 ]; then SUDO="sudo"; fi
$SUDO apt-get update -qq
DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}"
