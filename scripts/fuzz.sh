#!/usr/bin/env bash
# Builds the libFuzzer harnesses of fuzz/ with clang into ./build-fuzz (sdk and core compiled
# with -fsanitize=fuzzer-no-link,address; cmake/Sanitizers.cmake) and runs each for a bounded
# time from its seed corpus (fuzz/corpus/<name>). Fails on any finding: a crash or sanitizer
# report, an exception other than selfsup::Error, a leak, a timeout (10 s per input) or an
# out-of-memory (2 GiB). The inputs it finds go to build-fuzz/corpus/<name> (kept between
# runs; the seeds in the repo are not changed), a finding to build-fuzz/artifacts/.
#   usage: scripts/fuzz.sh [SECONDS [NAME...]]   (30 s each and every harness by default)
#          scripts/fuzz.sh --seeds               rewrites the seeds a harness generates
#                                                (checkpoints from the current save_checkpoint)
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/deps.sh
. scripts/ccache_env.sh

if [ ! -f build-fuzz/build.ninja ]; then
  cmake -S . -B build-fuzz -G Ninja -DCMAKE_BUILD_TYPE=Release -DCMAKE_CXX_COMPILER=clang++-14 \
        -DSELFSUP_FUZZ=ON -DSELFSUP_WERROR=OFF
fi
cmake --build build-fuzz -j "$(nproc)"

export ASAN_OPTIONS="detect_leaks=1:halt_on_error=1"
export LSAN_OPTIONS="suppressions=$PWD/.ci/lsan.supp:print_suppressions=0"

if [ "${1:-}" = "--seeds" ]; then
  for bin in build-fuzz/bin/fuzz_*; do
    name=${bin##*/fuzz_}
    SELFSUP_FUZZ_WRITE_SEEDS="$PWD/fuzz/corpus/$name" "$bin" > /dev/null
  done
  git status --short fuzz/corpus
  exit 0
fi

seconds=${1:-30}
shift || true
names=("$@")
if [ ${#names[@]} -eq 0 ]; then
  for bin in build-fuzz/bin/fuzz_*; do names+=("${bin##*/fuzz_}"); done
fi

mkdir -p build-fuzz/artifacts build-fuzz/logs
failed=()
summary=()
for name in "${names[@]}"; do
  mkdir -p "build-fuzz/corpus/$name"
  dict=()
  [ -f "fuzz/$name.dict" ] && dict=(-dict="fuzz/$name.dict")
  log="build-fuzz/logs/$name.log"
  echo "fuzz: $name for ${seconds}s (log: $log)"
  if "build-fuzz/bin/fuzz_$name" -max_total_time="$seconds" -timeout=10 -rss_limit_mb=2048 \
       -print_final_stats=1 -artifact_prefix="build-fuzz/artifacts/$name-" "${dict[@]}" \
       "build-fuzz/corpus/$name" "fuzz/corpus/$name" > "$log" 2>&1; then
    status=ok
  else
    status=FAILED
    failed+=("$name")
    grep -E -A40 "ERROR: |selfsup fuzz finding|==[0-9]+== ?ERROR|deadly signal|Test unit written" "$log" | head -80 || tail -40 "$log"
  fi
  runs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -1)
  corpus=$(find "build-fuzz/corpus/$name" "fuzz/corpus/$name" -type f | wc -l)
  summary+=("$(printf '%-12s %-6s %10s executions in %ss, corpus %s files' \
               "$name" "$status" "${runs:-?}" "$seconds" "$corpus")")
done
printf 'fuzz: %s\n' "${summary[@]}"
if [ ${#failed[@]} -gt 0 ]; then
  echo "fuzz: findings in ${failed[*]} (inputs in build-fuzz/artifacts/, logs in build-fuzz/logs/)"
  exit 1
fi
