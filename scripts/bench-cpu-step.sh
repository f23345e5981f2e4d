#!/usr/bin/env bash
# Issue 14's whole-step row: one pretraining step of the paper's network (base 32, 5 scales; 2 pairs of
# 32x32x16, 64 voxels per pair; forward of both views, InfoNCE + restoration, backward, clip, Adam), float32,
# hdssl's CPU backend (bench --what step) vs its PyTorch twin (tests/reference/torch_cpu_pretrain_step.py),
# same machine, same run, same threads. Rounds alternate between the two so a load change hits both; each
# round prints the load average next to its numbers (on a shared machine the ratio of the same run is what
# counts). hdssl's per-op profile of its last round is kept in ${BUILD_DIR:-build}/bench-cpu-step.profile.
# Needs python3-torch (scripts/install-deps.sh --oracle) and a build (scripts/build.sh).
#   scripts/bench-cpu-step.sh [THREADS=2] [ROUNDS=3]
set -euo pipefail
cd "$(dirname "$0")/.."
threads=${1:-2}; rounds=${2:-3}
build=${BUILD_DIR:-build}; bench=$build/bench
[ -x "$bench" ] || { echo "no $bench: run scripts/build.sh first" >&2; exit 1; }
export OMP_NUM_THREADS=$threads OMP_WAIT_POLICY=PASSIVE
size=(--pairs 2 --patch 32,32,16 --voxels 64 --runs 5 --warmup 2)
ours=(); theirs=()
for r in $(seq "$rounds"); do
  "$bench" --device cpu --what step --threads "$threads" --base-channels 32 --scales 5 "${size[@]}" \
    > "$build/bench-cpu-step.profile"
  ours+=("$(awk '/^pretrain_step_ours/ {print $2}' "$build/bench-cpu-step.profile")")
  theirs+=("$(/usr/bin/python3 tests/reference/torch_cpu_pretrain_step.py "$threads" --base 32 --scales 5 "${size[@]}" \
    | sed -E 's/.*median ([0-9.]+) ms.*/\1/')")
  echo "round $r: hdssl ${ours[-1]} ms   pytorch ${theirs[-1]} ms   ratio $(awk -v a="${ours[-1]}" -v b="${theirs[-1]}" \
    'BEGIN{printf "%.2f", a/b}')   (load average $(cut -d' ' -f1 /proc/loadavg) on $(getconf _NPROCESSORS_ONLN) cores)"
done
best() { printf '%s\n' "$@" | sort -g | head -1; }
o=$(best "${ours[@]}"); t=$(best "${theirs[@]}")
echo "pretraining step, $threads threads, best round median: hdssl $o ms, PyTorch $t ms," \
  "ratio hdssl/PyTorch $(awk -v a="$o" -v b="$t" 'BEGIN{printf "%.2f", a/b}')"
