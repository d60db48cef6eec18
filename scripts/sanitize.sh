#!/usr/bin/env bash
# Builds sdk, core, the host, the plugins and every test with AddressSanitizer and
# UndefinedBehaviorSanitizer into ./build-asan (cmake/Sanitizers.cmake), then runs the tests
# there. Any sanitizer report fails the test that caused it (undefined behaviour is fatal;
# leaks are reported when a process exits). .ci/run calls it after the normal test run.
#   usage: scripts/sanitize.sh [ctest arguments...]   e.g. -R Config
# Suppressions (.ci/lsan.supp, .ci/ubsan.supp) name third-party frames only, never ours.
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/deps.sh
. scripts/ccache_env.sh

if [ ! -f build-asan/build.ninja ]; then
  cmake -S . -B build-asan -G Ninja -DCMAKE_BUILD_TYPE=Release \
        -DSELFSUP_SANITIZE=address,undefined -DSELFSUP_WERROR=OFF
fi
cmake --build build-asan -j "$(nproc)"

# Every process a test starts (the selfsup host, the plugin scanner; Python's torch, used as
# an oracle, is not instrumented) inherits these. Reports go to files, one per process, so a
# report in a child process whose exit status a test does not look at still fails the run;
# a sanitizer's exit status (99) is one no selfsup command uses. handle_segv=0 leaves a
# segmentation fault to the kernel, as in the normal build: the plugin scanner reports a
# plugin that crashes by its signal, and tests check that (a crash of ours still fails).
logs="$PWD/build-asan/sanitizer-logs"
rm -rf "$logs" && mkdir -p "$logs"
common="halt_on_error=1:exitcode=99:handle_segv=0:handle_sigbus=0:handle_sigfpe=0"
export ASAN_OPTIONS="$common:detect_leaks=1:check_initialization_order=1:log_path=$logs/asan"
export LSAN_OPTIONS="suppressions=$PWD/.ci/lsan.supp:print_suppressions=0"
export UBSAN_OPTIONS="$common:print_stacktrace=1:suppressions=$PWD/.ci/ubsan.supp:log_path=$logs/ubsan"
# oneDNN 2.6.3 (Debian's, under LibTorch) crashed here now and then, never in the normal
# build: a SIGSEGV inside dnnl_primitive_create while building its brgemm bf16 convolution
# (brgconv:avx512_core_bf16) for the 1-input-channel stem of a tiny Fashion-MNIST run, in an
# uninstrumented library whose inputs are only shapes (CI stop 18; stack in docs/reliability.md).
# Capping oneDNN at AVX-512 without bf16 instructions keeps the runs in bf16 (emulated kernels)
# and leaves every line of ours under the sanitizers; the normal stage runs the full ISA.
export ONEDNN_MAX_CPU_ISA=AVX512_CORE
status=0
# Left out here (they run in the normal build): tests whose time goes to work no sanitizer
# sees or that repeat covered paths at scale -- building the out-of-tree SDK example with the
# compiler, and the bf16-vs-fp32 kNN figure over 12,000 Fashion-MNIST images (the kNN and
# extraction code runs under ASan in the other KnnEvalTest and EvalTest cases), and building
# every ViT-B/L/H and Swin-B/L recipe of the masked-image families (the same builders run
# under ASan on the tiny configs of each family's training test).
skip='SdkInstall\.BuildsAndLoadsOutOfTreeExample|KnnEvalTest\.Bf16KnnTopOneWithinPointTwoOfFp32'
skip+='|ConfigCheckTest\.EveryMimRecipePassesWithoutData'
ctest --test-dir build-asan --output-on-failure -j 2 --timeout 1800 -E "$skip" "$@" || status=$?
if compgen -G "$logs/*" > /dev/null; then
  echo "sanitize: sanitizer reports (from build-asan/sanitizer-logs):"
  for f in "$logs"/*; do
    echo "---- $f"
    head -60 "$f"
  done
  status=1
fi
exit $status
