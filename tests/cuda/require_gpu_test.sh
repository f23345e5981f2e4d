#!/usr/bin/env bash
# ctest cuda_tests_require_gpu: with HDSSL_REQUIRE_GPU=1 a run of cuda_tests never ends green with skipped
# tests. Without a usable GPU (this CI machine) the run must fail and say why; with one it must pass with
# nothing skipped. Either way a "no CUDA device" skip that stayed a skip makes this test fail.
#   require_gpu_test.sh PATH/TO/cuda_tests
set -u
bin=$1
out=$(HDSSL_REQUIRE_GPU=1 HDSSL_PARITY_SELFTEST=0 "$bin" --gtest_filter='CudaElementwise.*:CudaReduce.*' 2>&1)
rc=$?
if [ $rc -ne 0 ]; then
  if grep -q "HDSSL_REQUIRE_GPU=1 makes that a failure" <<<"$out"; then
    echo "ok: no usable GPU, and the run failed (exit $rc) saying so"; exit 0
  fi
  echo "FAIL: the run failed (exit $rc) for another reason:"; tail -30 <<<"$out"; exit 1
fi
if grep -q "\[  SKIPPED \]" <<<"$out"; then
  echo "FAIL: HDSSL_REQUIRE_GPU=1, yet the run ended green with skipped tests:"; grep "SKIPPED" <<<"$out"; exit 1
fi
echo "ok: a GPU is present and every test ran"
