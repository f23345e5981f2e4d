#!/usr/bin/env bash
# Installs what a fresh Debian machine lacks to build and test hdssl (idempotent, quiet when done).
#   scripts/install-deps.sh          build + test dependencies (python3-numpy for the weight importer)
#   scripts/install-deps.sh --oracle also Debian's python3-torch / python3-nibabel (only to regenerate fixtures)
#   scripts/install-deps.sh --fuzz   also clang and its libFuzzer runtime (scripts/fuzz.sh)
set -euo pipefail
pkgs=(cmake g++ make libgtest-dev libgmock-dev libnifti2-dev libniftiio-dev libznz-dev zlib1g-dev
      libopenblas-dev nlohmann-json3-dev libcli11-dev libpng-dev libcairo2-dev
      libopenmpi-dev openmpi-bin  # dist/: data-parallel pretraining under mpirun
      python3-numpy)  # scripts/import_weights.py and tests/apps/test_import_weights_app.cpp
[ "${1:-}" = "--oracle" ] && pkgs+=(python3-torch python3-nibabel python3-numpy)
# --fuzz: clang with its libFuzzer / sanitizer runtimes (scripts/fuzz.sh).
[ "${1:-}" = "--fuzz" ] && pkgs+=(clang libclang-rt-dev)
missing=()
for p in "${pkgs[@]}"; do dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p"); done
if [ ${#missing[@]} -gt 0 ]; then
  echo "installing: ${missing[*]}"
  sudo_cmd=""; [ "$(id -u)" = 0 ] || sudo_cmd="sudo"
  $sudo_cmd apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo_cmd apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi
