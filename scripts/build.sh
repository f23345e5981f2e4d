#!/usr/bin/env bash
# Configures and builds hdssl into build/ (CUDA backend too when nvcc and cuDNN are present).
#   scripts/build.sh [extra cmake args...]      BUILD_DIR=... to build elsewhere
# CMake never guesses the GPU architecture (CMakeLists.txt): with a GPU visible it uses "native"; on a
# machine with nvcc but no GPU (CI) this script passes 90, the H100/H200 the project targets, and prints
# that it does, unless the arguments name an architecture or turn CUDA off.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install-deps.sh
build=${BUILD_DIR:-build}
jobs=${JOBS:-$(nproc)}
args=("$@")
has_nvcc() { command -v nvcc >/dev/null 2>&1 || [ -x /usr/local/cuda/bin/nvcc ]; }
gpu_visible() { nvidia-smi -L 2>/dev/null | grep -q "^GPU [0-9]"; }
arch_known() {
  [[ " $* " == *CMAKE_CUDA_ARCHITECTURES* || " $* " == *HDSSL_CUDA=OFF* ]] && return 0
  grep -qsE "^CMAKE_CUDA_ARCHITECTURES:|^HDSSL_CUDA:[A-Z]+=(OFF|FALSE|NO|0)$" "$build/CMakeCache.txt"
}
if has_nvcc && ! gpu_visible && ! arch_known "$@"; then
  echo "build.sh: nvcc found but no GPU visible to detect the architecture: compiling the CUDA backend for" \
       "sm_90 (H100/H200), -DCMAKE_CUDA_ARCHITECTURES=90 (pass another value for another card)"
  args+=(-DCMAKE_CUDA_ARCHITECTURES=90)
fi
cmake -S . -B "$build" -DCMAKE_BUILD_TYPE=Release "${args[@]}" >/dev/null
cmake --build "$build" -j"$jobs"
