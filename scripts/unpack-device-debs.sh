#!/usr/bin/env bash
# unpack-device-debs.sh: run THERE (the GPU machine), copied by scripts/fetch-device-debs.sh into the carried
# folder as unpack-debs.sh:   source .devdeps/unpack-debs.sh
# Unpacks every .deb beside it under /opt/devdeps (never into /) and exports the paths that CMake, the
# compiler and the loader need.
d=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
root=${HDSSL_DEVDEPS_ROOT:-/opt/devdeps}
mkdir -p "$root"
for f in "$d"/*.deb; do dpkg -x "$f" "$root"; done
lib=$root/usr/lib/x86_64-linux-gnu
export CMAKE_PREFIX_PATH="$root/usr${CMAKE_PREFIX_PATH:+:$CMAKE_PREFIX_PATH}"
export CMAKE_INCLUDE_PATH="$root/usr/include${CMAKE_INCLUDE_PATH:+:$CMAKE_INCLUDE_PATH}"
export CMAKE_LIBRARY_PATH="$lib:$lib/openblas-pthread${CMAKE_LIBRARY_PATH:+:$CMAKE_LIBRARY_PATH}"
export CPATH="$root/usr/include${CPATH:+:$CPATH}"
export LIBRARY_PATH="$lib${LIBRARY_PATH:+:$LIBRARY_PATH}"
export LD_LIBRARY_PATH="$lib:$lib/openblas-pthread${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
echo "devdeps unpacked under $root"
