#!/usr/bin/env bash
# fetch-device-debs.sh: download (never install) the Debian packages that the GPU machine lacks, so a
# device run can carry them and unpack them there (scripts/device-check.sh, step 1).
# Run HERE, on a machine that reaches Debian's registry, from anywhere:
#   scripts/fetch-device-debs.sh [DIR] [EXTRA-PACKAGE...]     (DIR: .devdeps in the repo root by default,
#                                                              git-ignored)
# DIR then holds the .debs and unpack-debs.sh (a copy of scripts/unpack-device-debs.sh), which the device
# script sources. The list: what configure and link of cuda_tests and bench need beyond build-essential,
# cmake, the CUDA toolkit and cuDNN. OpenBLAS needs libgfortran5 and libquadmath0 at link time. Plots are
# off on the device (-DHDSSL_PLOTS=OFF), so neither cairo nor pkg-config is carried.
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
cd "$here/.."
dir=${1:-.devdeps}; shift $(( $# > 0 ? 1 : 0 ))
mkdir -p "$dir"
pkgs=(libnifti2-dev libnifti2-2 libniftiio-dev libniftiio2 libznz-dev libznz3 libnifticdf-dev libnifticdf2
      libgtest-dev libgmock-dev nlohmann-json3-dev libcli11-dev
      libopenblas-dev libopenblas0 libopenblas-pthread-dev libopenblas0-pthread libgfortran5 libquadmath0
      libpng-dev zlib1g-dev)
[ -n "$(ls /var/lib/apt/lists/ 2>/dev/null | grep -v lock)" ] || apt-get update -qq
( cd "$dir" && apt-get download -qq "${pkgs[@]}" "$@" 2>&1 | grep -v "unsandboxed" || true )
cp "$here/unpack-device-debs.sh" "$dir/unpack-debs.sh"
n=$(ls "$dir"/*.deb 2>/dev/null | wc -l)
echo "debs in $dir: $n (and unpack-debs.sh)"
[ "$n" -ge "${#pkgs[@]}" ] || { echo "fetch-device-debs.sh: expected ${#pkgs[@]} .debs in $dir, found $n" >&2; exit 1; }
