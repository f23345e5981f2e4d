#!/usr/bin/env bash
# The test command: installs what is missing, builds, runs every test with ctest (CUDA tests skip
# with a message where there is no GPU). Extra arguments go to ctest, e.g. scripts/test.sh -R gradcheck
set -euo pipefail
cd "$(dirname "$0")/.."
# Idle OpenMP threads sleep instead of spinning: on a shared or small machine spinning made steps ~10x slower.
export OMP_WAIT_POLICY=${OMP_WAIT_POLICY:-PASSIVE}
bash scripts/build.sh
cd "${BUILD_DIR:-build}"
ctest --output-on-failure --timeout 1200 -j"${JOBS:-$(nproc)}" "$@"
