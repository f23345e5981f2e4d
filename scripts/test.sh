#!/usr/bin/env bash
# The test command: installs what is missing, builds, runs every test with ctest (CUDA tests skip
# with a message where there is no GPU). Extra arguments go to ctest; a filter that matches no test is
# an error, not a green run. Test names are BINARY.Suite.Test, so select a room or a suite:
#   scripts/test.sh -R Gradcheck          the float64 gradient checks (autograd_tests.Gradcheck*...)
#   scripts/test.sh -R autograd_tests     a whole binary (engine_tests, autograd_tests, eval_tests, ...)
set -euo pipefail
cd "$(dirname "$0")/.."
# Idle OpenMP threads sleep instead of spinning: on a shared or small machine spinning made steps ~10x slower.
export OMP_WAIT_POLICY=${OMP_WAIT_POLICY:-PASSIVE}
bash scripts/build.sh
cd "${BUILD_DIR:-build}"
ctest --output-on-failure --no-tests=error --timeout 1200 -j"${JOBS:-$(nproc)}" "$@"
