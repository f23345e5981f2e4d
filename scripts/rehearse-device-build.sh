#!/usr/bin/env bash
# rehearse-device-build.sh: rehearse HERE, without a GPU, the build step of scripts/device-check.sh as the GPU
# machine runs it: in a bare Debian chroot that has only build-essential and cmake, this machine's CUDA
# toolkit (cuDNN included) bind-mounted read-only, and the carried packages of scripts/fetch-device-debs.sh.
# A package the device build needs and does not carry shows up here as a configure or link failure.
#
#   sudo scripts/rehearse-device-build.sh          (root: debootstrap, chroot, mount; from anywhere)
#
# Steps: 1. the chroot (debootstrap --variant=minbase --include=build-essential,cmake, from the Debian mirror
# and suite that apt uses here), kept in $HDSSL_REHEARSAL_DIR (default /var/tmp/hdssl-rehearsal) for the next
# run; 2. .devdeps filled by scripts/fetch-device-debs.sh when it is missing; 3. the files a device run
# carries (tracked and untracked-not-ignored files, and .devdeps) copied into the chroot's /src, mtimes kept,
# so a rerun rebuilds only what changed; 4. the CUDA toolkit bind-mounted read-only, /proc and /dev bound,
# all unmounted on exit (trap); 5. inside: HDSSL_BUILD_ONLY=1 bash scripts/device-check.sh, which unpacks
# .devdeps, configures with -DHDSSL_CUDA=ON -DHDSSL_PLOTS=OFF -DCMAKE_CUDA_ARCHITECTURES=90 and builds
# cuda_tests and bench (nice, HDSSL_BUILD_JOBS=2 by default, no time limit). Exit 0 when the build passed;
# the logs land in $HDSSL_REHEARSAL_DIR/out.
# Differences from the device machine, on purpose: nvcc is put on PATH (the device machine has it there),
# and cuDNN sits in the toolkit's folders here, found by CMake's /usr/local/cuda hints.
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
repo=$(cd "$here/.." && pwd)
cd "$repo"
[ "$(id -u)" -eq 0 ] || { echo "rehearse-device-build.sh: needs root (debootstrap, chroot, mount)" >&2; exit 2; }
command -v debootstrap >/dev/null ||
  { echo "rehearse-device-build.sh: debootstrap missing (apt-get install debootstrap)" >&2; exit 2; }
cuda=$(readlink -f "${HDSSL_CUDA_HOME:-/usr/local/cuda}")
[ -x "$cuda/bin/nvcc" ] || { echo "rehearse-device-build.sh: no nvcc under $cuda (set HDSSL_CUDA_HOME)" >&2; exit 2; }
[ -f "$cuda/include/cudnn.h" ] || [ -f /usr/include/x86_64-linux-gnu/cudnn.h ] ||
  { echo "rehearse-device-build.sh: no cudnn.h under $cuda/include or /usr/include/x86_64-linux-gnu" >&2; exit 2; }

work=${HDSSL_REHEARSAL_DIR:-/var/tmp/hdssl-rehearsal}
root=$work/chroot
out=$work/out
mkdir -p "$work" "$out"
T0=$(date +%s)
note() { echo "[$(( $(date +%s) - T0 ))s] $*"; }

# 1. The chroot, from the mirror and suite apt uses here (deb822 sources first, then sources.list).
mirror=$(grep -hs '^URIs:' /etc/apt/sources.list.d/*.sources | grep -v security | awk '{print $2}' | head -1)
suite=$(grep -hs '^Suites:' /etc/apt/sources.list.d/*.sources | awk '{print $2}' | head -1)
if [ -z "$mirror" ]; then
  read -r mirror suite < <(grep -hs '^deb ' /etc/apt/sources.list | grep -v security | awk '{print $2, $3}' |
                           head -1)
fi
[ -n "$mirror" ] && [ -n "$suite" ] ||
  { echo "rehearse-device-build.sh: no Debian mirror found in /etc/apt" >&2; exit 1; }
if [ ! -f "$root/.hdssl-ready" ]; then
  note "debootstrap --variant=minbase $suite from $mirror (build-essential, cmake)"
  rm -rf "$root"
  nice debootstrap --variant=minbase --include=build-essential,cmake "$suite" "$root" "$mirror" \
    > "$out/debootstrap.log" 2>&1 ||
    { tail -20 "$out/debootstrap.log"; note "FAILED: debootstrap (see $out/debootstrap.log)"; exit 1; }
  touch "$root/.hdssl-ready"
fi
note "chroot $root: $(chroot "$root" cmake --version | head -1), $(chroot "$root" g++ --version | head -1)"

# 2. The carried packages.
if ! ls .devdeps/*.deb >/dev/null 2>&1 || [ ! -f .devdeps/unpack-debs.sh ]; then
  note "fetching the carried packages into .devdeps"
  scripts/fetch-device-debs.sh .devdeps
fi

# 4. Mounts, undone on every exit. (Set up before the copy so that the trap covers a failing copy too.)
mounted=()
cleanup() {
  local i
  for (( i=${#mounted[@]}-1; i>=0; i-- )); do
    umount "${mounted[$i]}" 2>/dev/null || umount -l "${mounted[$i]}" || true
  done
}
trap cleanup EXIT
bind() {  # bind SRC DST [ro]
  mkdir -p "$2"
  mount --bind "$1" "$2"; mounted+=("$2")
  [ "${3:-}" = ro ] && mount -o remount,bind,ro "$2"
  return 0
}
bind /proc "$root/proc"
bind /dev "$root/dev"
bind "$cuda" "$root$cuda" ro
if [ "$cuda" != /usr/local/cuda ]; then ln -sfn "$cuda" "$root/usr/local/cuda"; fi
if [ -f /usr/include/x86_64-linux-gnu/cudnn.h ]; then  # cuDNN from Debian/NVIDIA packages, as on the device
  for f in /usr/include/x86_64-linux-gnu/cudnn*.h; do
    mkdir -p "$root${f%/*}"; touch "$root$f"; bind "$f" "$root$f" ro
  done
  for f in /usr/lib/x86_64-linux-gnu/libcudnn*.so*; do cp -P "$f" "$root$f"; done  # links and files, read-only there
fi

# 3. What a device run carries: tracked files, untracked files git does not ignore, and .devdeps.
note "copying the carried files into $root/src"
mkdir -p "$root/src"
{ git ls-files -co --exclude-standard -z; find .devdeps -type f -print0; } |
  tar --null -T - -cf - | tar -C "$root/src" -xpf - 2>/dev/null || true
git ls-files -co --exclude-standard | while read -r f; do
  [ -e "$root/src/$f" ] || { echo "rehearse-device-build.sh: $f was not copied" >&2; exit 1; }
done

# 5. The device script's build step, inside.
note "inside the chroot: HDSSL_BUILD_ONLY=1 bash scripts/device-check.sh (jobs ${HDSSL_BUILD_JOBS:-2})"
rc=0
chroot "$root" /usr/bin/env -i HOME=/root LANG=C.UTF-8 PATH="$cuda/bin:/usr/sbin:/usr/bin:/sbin:/bin" \
  OUT=/out HDSSL_BUILD_ONLY=1 HDSSL_BUILD_JOBS="${HDSSL_BUILD_JOBS:-2}" \
  HDSSL_BUILD_TIMEOUT=0 HDSSL_CONFIGURE_TIMEOUT=0 \
  HDSSL_BUILD_DIR=/tmp/b nice bash -c 'cd /src && bash scripts/device-check.sh' || rc=$?
cp -r "$root/out/." "$out/" 2>/dev/null || true
if [ $rc -eq 0 ]; then note "PASSED: configure and build of cuda_tests and bench in the bare chroot"
else note "FAILED (exit $rc): see $out/configure.log and $out/build.log"; fi
exit $rc
