#!/usr/bin/env bash
# Builds the libFuzzer harnesses (clang, ASan + UBSan, build-fuzz/) and runs each for SECONDS (default 60).
#   scripts/fuzz.sh [SECONDS] [HARNESS...]      e.g. scripts/fuzz.sh 600 fuzz_nifti
# Each harness first replays fuzz/corpus/<name> and fuzz/regressions/<name>, then mutates; new interesting
# inputs go to build-fuzz/fuzz/work/<name>, crashes to build-fuzz/fuzz/crash-<name>-*. A crash is fixed in
# the reader and its input copied into fuzz/regressions/<name>/ (see fuzz/README.md). Exit 1 on any finding.
set -euo pipefail
cd "$(dirname "$0")/.."
seconds=${1:-60}
shift || true
harnesses=("$@")
[ ${#harnesses[@]} -gt 0 ] || harnesses=(fuzz_nifti fuzz_checkpoint fuzz_dataset_json fuzz_splits)
bash scripts/install-deps.sh --fuzz
build=${FUZZ_BUILD_DIR:-build-fuzz}
export CCACHE_BASEDIR=${CCACHE_BASEDIR:-$PWD}
launcher=(); command -v ccache >/dev/null && launcher=(-DCMAKE_CXX_COMPILER_LAUNCHER=ccache)
cmake -S . -B "$build" -DCMAKE_BUILD_TYPE=Release -DHDSSL_CUDA=OFF -DHDSSL_FUZZ=ON -DBUILD_TESTING=OFF \
      -DCMAKE_C_COMPILER=clang -DCMAKE_CXX_COMPILER=clang++ -DHDSSL_FUZZ_SECONDS="$seconds" "${launcher[@]}" >/dev/null
cmake --build "$build" -j"${JOBS:-$(nproc)}" --target "${harnesses[@]}"
status=0
for h in "${harnesses[@]}"; do
  mkdir -p "$build/fuzz/work/$h" "fuzz/regressions/$h"
  echo "== $h: replay + ${seconds}s of mutation"
  if ! "$build/fuzz/$h" -max_total_time="$seconds" -rss_limit_mb=4096 -print_final_stats=1 \
       -artifact_prefix="$build/fuzz/crash-$h-" "$build/fuzz/work/$h" "fuzz/corpus/$h" "fuzz/regressions/$h" \
       > "$build/fuzz/$h.log" 2>&1; then
    echo "   FINDING: see $build/fuzz/$h.log and $build/fuzz/crash-$h-*"
    status=1
  fi
  grep -E "^#[0-9]+ +DONE|stat::number_of_executed_units|stat::peak_rss_mb" "$build/fuzz/$h.log" | sed 's/^/   /' || true
done
exit $status
