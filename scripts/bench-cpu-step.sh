#!/usr/bin/env bash
# Issue 14's whole-step row: one pretraining step of the paper's network (base 32, 5 scales; 2 pairs of
# 32x32x16, 64 voxels per pair; forward of both views, InfoNCE + restoration, backward, clip, Adam), float32,
# hdssl's CPU backend (bench --what step) vs its PyTorch twin (tests/reference/torch_cpu_pretrain_step.py),
# same machine, same run, same threads. Rounds alternate between the two so a load change hits both; each
# round prints the load average next to its numbers (on a shared machine the ratio of the same run is what
# counts). Each side reports the median wall time of a step and its median process CPU time (all threads
# together; a busy host moves it less). hdssl's per-op profile of the last round is kept in
# ${BUILD_DIR:-build}/bench-cpu-step.profile. Needs python3-torch (scripts/install-deps.sh --oracle) and a
# build (scripts/build.sh).
#   scripts/bench-cpu-step.sh [THREADS=2] [ROUNDS=3]
set -euo pipefail
# shellcheck source=scripts/bench-table.sh
source "$(dirname "$0")/bench-table.sh"
cd "$(dirname "$0")/.."
threads=${1:-2}; rounds=${2:-3}
build=${BUILD_DIR:-build}; bench=$build/bench
[ -x "$bench" ] || { echo "no $bench: run scripts/build.sh first" >&2; exit 1; }
export OMP_NUM_THREADS=$threads OMP_WAIT_POLICY=PASSIVE
size=(--pairs 2 --patch 32,32,16 --voxels 64 --runs 5 --warmup 2)
ratio() { awk -v a="$1" -v b="$2" 'BEGIN{printf "%.2f", a/b}'; }
best() { printf '%s\n' "$@" | sort -g | head -1; }
ours=(); theirs=(); ours_cpu=(); theirs_cpu=()
for r in $(seq "$rounds"); do
  "$bench" --device cpu --what step --threads "$threads" --base-channels 32 --scales 5 "${size[@]}" \
    > "$build/bench-cpu-step.profile"
  read -r o oc < <(bench_columns pretrain_step_ours median_ms,cpu_ms < "$build/bench-cpu-step.profile")
  line=$(/usr/bin/python3 tests/reference/torch_cpu_pretrain_step.py "$threads" --base 32 --scales 5 "${size[@]}")
  t=$(sed -E 's/.*median ([0-9.]+) ms.*/\1/' <<< "$line"); tc=$(sed -E 's/.* cpu ([0-9.]+) ms.*/\1/' <<< "$line")
  ours+=("$o"); ours_cpu+=("$oc"); theirs+=("$t"); theirs_cpu+=("$tc")
  echo "round $r: hdssl $o ms (cpu $oc)   pytorch $t ms (cpu $tc)" \
    "  ratio $(ratio "$o" "$t") (cpu $(ratio "$oc" "$tc"))" \
    "  (load average $(cut -d' ' -f1 /proc/loadavg) on $(getconf _NPROCESSORS_ONLN) cores)"
done
o=$(best "${ours[@]}"); t=$(best "${theirs[@]}"); oc=$(best "${ours_cpu[@]}"); tc=$(best "${theirs_cpu[@]}")
echo "pretraining step, $threads threads, best round medians: hdssl $o ms (cpu $oc ms), PyTorch $t ms" \
  "(cpu $tc ms), ratio hdssl/PyTorch $(ratio "$o" "$t") (cpu time $(ratio "$oc" "$tc"))"
