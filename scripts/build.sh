#!/usr/bin/env bash
# Configures and builds hdssl into build/ (CUDA backend too when nvcc and cuDNN are present).
#   scripts/build.sh [extra cmake args...]      BUILD_DIR=... to build elsewhere
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install-deps.sh
build=${BUILD_DIR:-build}
jobs=${JOBS:-$(nproc)}
cmake -S . -B "$build" -DCMAKE_BUILD_TYPE=Release "$@" >/dev/null
cmake --build "$build" -j"$jobs"
