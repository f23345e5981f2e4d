#!/usr/bin/env bash
# The main job on the built-in default: installs what is missing, builds, then pretrains a small model on
# synthetic CT phantoms on the CPU (a few minutes on two cores). Extra arguments go to ./pretrain.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/build.sh
exec "${BUILD_DIR:-build}"/pretrain --demo "$@"
