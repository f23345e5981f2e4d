#!/usr/bin/env bash
# The engine micro-benchmark against its yardstick: conv3d 2x16x32x32x16 -> 16, 3x3x3, float32,
# forward + backward, hdssl's CPU backend vs Debian's PyTorch, same machine, same run, same threads.
# Rounds alternate between the two so a load change hits both; each round prints the load average next to
# its numbers (on a shared machine the ratio of the same run is what counts). Needs python3-torch
# (scripts/install-deps.sh --oracle) and a build (scripts/build.sh).
#   scripts/bench-cpu-conv.sh [THREADS=2] [ROUNDS=3]
set -euo pipefail
# shellcheck source=scripts/bench-table.sh
source "$(dirname "$0")/bench-table.sh"
cd "$(dirname "$0")/.."
threads=${1:-2}; rounds=${2:-3}
bench=${BUILD_DIR:-build}/bench
[ -x "$bench" ] || { echo "no $bench: run scripts/build.sh first" >&2; exit 1; }
export OMP_NUM_THREADS=$threads OMP_WAIT_POLICY=PASSIVE
ours=(); theirs=()
for r in $(seq "$rounds"); do
  ours+=("$("$bench" --device cpu --what conv --runs 30 --warmup 5 | bench_columns conv3d_fwd_bwd median_ms)")
  theirs+=("$(/usr/bin/python3 tests/reference/torch_cpu_conv3d.py "$threads" | sed -E 's/.*median ([0-9.]+) ms.*/\1/')")
  echo "round $r: hdssl ${ours[-1]} ms   pytorch ${theirs[-1]} ms   (load average $(cut -d' ' -f1 /proc/loadavg) on $(getconf _NPROCESSORS_ONLN) cores)"
done
best() { printf '%s\n' "$@" | sort -g | head -1; }
o=$(best "${ours[@]}"); t=$(best "${theirs[@]}")
echo "conv3d fwd+bwd, $threads threads, best round median: hdssl $o ms, PyTorch $t ms, ratio hdssl/PyTorch $(awk -v a="$o" -v b="$t" 'BEGIN{printf "%.2f", a/b}')"
