#!/usr/bin/env bash
# The test command: installs what is missing, builds, runs every test with ctest (CUDA tests skip
# with a message where there is no GPU). Extra arguments go to ctest; a filter that matches no test is
# an error, not a green run. Test names are BINARY.Suite.Test, so select a room or a suite:
#   scripts/test.sh -R Gradcheck          the float64 gradient checks (autograd_tests.Gradcheck*...)
#   scripts/test.sh -R autograd_tests     a whole binary (engine_tests, autograd_tests, eval_tests, ...)
#   scripts/test.sh --sanitize [ctest args]   the same suite built with ASan + UBSan (CPU only) in
#                                             build-sanitize/; any finding fails its test
set -euo pipefail
cd "$(dirname "$0")/.."
# Idle OpenMP threads sleep instead of spinning: on a shared or small machine spinning made steps ~10x slower.
export OMP_WAIT_POLICY=${OMP_WAIT_POLICY:-PASSIVE}
if [ "${1:-}" = "--sanitize" ]; then
  shift
  export BUILD_DIR=${BUILD_DIR:-build-sanitize}
  export ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=1:abort_on_error=1:strict_string_checks=1:detect_stack_use_after_return=1}
  export UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}
  # Leaks that third-party libraries keep for the life of the process (fontconfig via cairo, Open MPI).
  export LSAN_OPTIONS=${LSAN_OPTIONS:-suppressions=$PWD/tests/sanitizer/lsan.supp:print_suppressions=0}
  bash scripts/build.sh -DHDSSL_SANITIZE=ON -DHDSSL_CUDA=OFF
else
  bash scripts/build.sh
fi
cd "${BUILD_DIR:-build}"
ctest --output-on-failure --no-tests=error --timeout 1200 -j"${JOBS:-$(nproc)}" "$@"
