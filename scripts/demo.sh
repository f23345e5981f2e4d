#!/usr/bin/env bash
# The main job on the built-in default: installs what is missing, builds, then pretrains a small model on
# synthetic CT phantoms on the CPU (a few minutes on two cores). Extra arguments go to ./pretrain.
set -euo pipefail
cd "$(dirname "$0")/.."
# Idle OpenMP threads sleep instead of spinning: on a shared or small machine spinning made steps ~10x slower.
export OMP_WAIT_POLICY=${OMP_WAIT_POLICY:-PASSIVE}
bash scripts/build.sh
exec "${BUILD_DIR:-build}"/pretrain --demo "$@"
