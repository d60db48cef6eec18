#!/usr/bin/env bash
# Installs selfsup to a temporary prefix, moves the prefix (it must be relocatable), builds
# examples/vicreg against the moved prefix only, drops the plugin into a folder, and checks
# that `selfsup list` shows its types and `selfsup train` runs its config.
#   usage: install_and_example_test.sh BUILD_DIR SOURCE_DIR
set -euo pipefail
build=$1
src=$2
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

cmake --install "$build" --prefix "$tmp/prefix" > "$tmp/install.log"
for f in bin/selfsup lib/libselfsup_sdk.so lib/libselfsup_core.so \
         lib/selfsup/plugins/libselfsup_backbones.so lib/selfsup/plugins/libselfsup_simclr.so \
         lib/selfsup/selfsup-plugin-scanner include/selfsup/sdk.h include/selfsup/plugin.h include/selfsup/export.h include/selfsup/abi.h \
         lib/cmake/SelfSupSDK/SelfSupSDKConfig.cmake lib/cmake/SelfSupSDK/SelfSupSDKConfigVersion.cmake \
         lib/cmake/SelfSupSDK/SelfSupSDKTargets.cmake lib/cmake/SelfSupSDK/SelfSupPluginHelpers.cmake; do
  [ -e "$tmp/prefix/$f" ] || { echo "missing in the install: $f"; exit 1; }
done
# The generated headers are the build's; the SONAME is the ABI version.
cmp "$build/sdk/include/selfsup/abi.h" "$tmp/prefix/include/selfsup/abi.h"
abi=$(sed -n 's/^#define SELFSUP_ABI_VERSION \([0-9]*\)$/\1/p' "$tmp/prefix/include/selfsup/abi.h")
for lib in sdk core; do
  soname=$(objdump -p "$tmp/prefix/lib/libselfsup_$lib.so" | awk '$1 == "SONAME" {print $2}')
  [ "$soname" = "libselfsup_$lib.so.$abi" ] || { echo "libselfsup_$lib: SONAME '$soname', expected ABI $abi"; exit 1; }
done
mv "$tmp/prefix" "$tmp/moved"
selfsup="$tmp/moved/bin/selfsup"

# The moved install still finds its libraries, its own plugins and its plugin scanner (the
# cache is off, so every plugin goes through the moved scanner first).
SELFSUP_PLUGIN_CACHE=off "$selfsup" list --json > "$tmp/list0.json" 2> "$tmp/list0.err"
if [ -s "$tmp/list0.err" ]; then echo "list of the moved install complained:"; cat "$tmp/list0.err"; exit 1; fi
grep -q '"SimCLR"' "$tmp/list0.json"
grep -q "$tmp/moved/lib/selfsup/plugins/libselfsup_simclr.so" "$tmp/list0.json"

# The package version is SameMajorVersion: asking for another major fails to configure.
mkdir "$tmp/probe"
cat > "$tmp/probe/CMakeLists.txt" <<'PROBE'
cmake_minimum_required(VERSION 3.20)
project(probe LANGUAGES CXX)
find_package(SelfSupSDK ${WANT} REQUIRED)
PROBE
cmake -S "$tmp/probe" -B "$tmp/probe-ok" -DWANT=0.1 -DCMAKE_PREFIX_PATH="$tmp/moved" > /dev/null
if cmake -S "$tmp/probe" -B "$tmp/probe-bad" -DWANT=1.0 -DCMAKE_PREFIX_PATH="$tmp/moved" \
     > "$tmp/probe.log" 2>&1; then
  echo "find_package(SelfSupSDK 1.0) accepted a 0.x SDK"; exit 1
fi
grep -q "not compatible\|not found\|version" "$tmp/probe.log" || { cat "$tmp/probe.log"; exit 1; }

# The example: a copy outside the source tree, configured against the moved prefix only.
cp -r "$src/examples/vicreg" "$tmp/vicreg"
launcher=()
command -v ccache > /dev/null && launcher=(-DCMAKE_CXX_COMPILER_LAUNCHER=ccache)
cmake -S "$tmp/vicreg" -B "$tmp/vicreg-build" -G Ninja -DCMAKE_PREFIX_PATH="$tmp/moved" \
      "${launcher[@]}" > "$tmp/configure.log"
cmake --build "$tmp/vicreg-build" > "$tmp/build.log" || { cat "$tmp/build.log"; exit 1; }
if grep -R -q "$src" "$tmp/vicreg-build/CMakeCache.txt"; then
  echo "the example build refers to the source tree"; exit 1
fi
mkdir "$tmp/drop"
cp "$tmp/vicreg-build/libselfsup_vicreg.so" "$tmp/drop/"

"$selfsup" list --plugin-dir "$tmp/drop" > "$tmp/list.txt"
for t in VICReg VICRegProjector VICRegLoss; do
  grep -q "^  $t .*\[vicreg\]" "$tmp/list.txt" || { cat "$tmp/list.txt"; echo "missing $t"; exit 1; }
done

"$selfsup" train "$tmp/vicreg/configs/vicreg_resnet18_fmnist.json" --plugin-dir "$tmp/drop" \
  --work-dir "$tmp/work" --threads 2 --cfg-options train_cfg.max_epochs=1 \
  train_dataloader.dataset.indices=96 train_dataloader.batch_size=32 \
  model.backbone.stem_channels=4 model.backbone.base_channels=4 model.neck.in_channels=32 model.neck.hid_channels=64 \
  model.neck.out_channels=64 > "$tmp/train.log" 2>&1 \
  || { cat "$tmp/train.log"; exit 1; }
[ -f "$tmp/work/epoch_1.pth" ] || { cat "$tmp/train.log"; echo "no checkpoint"; exit 1; }
[ "$(wc -l < "$tmp/work/scalars.jsonl")" -eq 3 ] || { echo "expected 3 iterations"; exit 1; }
echo "install + out-of-tree example: OK"
