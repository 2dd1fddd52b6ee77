#!/usr/bin/env bash
# Installs what the end-to-end tests and the README example need, from Debian's archive:
# qemu-system-x86 (boots the artifacts), linux-image-amd64 (the kernel they boot),
# busybox-static (busybox payload, so nothing is fetched from the internet),
# cpio and libarchive-tools (GNU cpio and bsdtar check the archives), pigz, zstd, lz4 and
# xz-utils (baselines and cross-checks of the compressors), musl-tools (rebuilds fledge's init),
# clang, lld and wasi-libc (rebuild the WebAssembly compressors and check they are the committed ones),
# time (GNU time: peak RSS in npm run bench), qemu-system-arm (boots aarch64 artifacts),
# binutils and binutils-aarch64-linux-gnu (strip for npm run package's one-file executables),
# qemu-user-static and the arm64 C and C++ runtime (libc6-arm64-cross, libstdc++6-arm64-cross,
# libgcc-s1-arm64-cross) to run the arm64 executable here.
# e2fsprogs (e2fsck and debugfs check the ext4 images), squashfs-tools (the squashfs option of
# oci_rootfs, and unsquashfs checks it), buildah (a container engine without a daemon: the
# Dockerfile-source tests build with it, vfs storage, chroot isolation).
# docker-registry (the distribution registry), skopeo and umoci (the OCI plugin's tests push
# images to it; the bench's Go-fledge route).
# Then, from Debian's arm64 packages (dpkg --add-architecture arm64), the kernel of
# linux-image-arm64 and busybox-static:arm64, unpacked (not installed: they would replace the
# host's busybox and add an arm64 kernel to /boot) into $FLEDGE_E2E_ARM64_DIR
# (default /opt/fledge-e2e/arm64): boot/vmlinuz-*-arm64, lib/modules/…, bin/busybox.
# Idempotent: installs only what is missing. Run as root (or with sudo available).
set -euo pipefail

# One package per line, so that additions from different changes merge cleanly.
packages=(
  qemu-system-x86
  qemu-system-arm
  linux-image-amd64
  busybox-static
  cpio
  libarchive-tools
  pigz
  zstd
  lz4
  xz-utils
  musl-tools
  clang
  lld
  wasi-libc
  time
  binutils
  binutils-aarch64-linux-gnu
  qemu-user-static
  libc6-arm64-cross
  libstdc++6-arm64-cross
  libgcc-s1-arm64-cross
  e2fsprogs
  squashfs-tools
  buildah
  docker-registry
  skopeo
  umoci
)
arm64_dir=${FLEDGE_E2E_ARM64_DIR:-/opt/fledge-e2e/arm64}

missing=()
for p in "${packages[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed"; then
    missing+=("$p")
  fi
done

arm64_ready() { ls "$arm64_dir"/boot/vmlinuz-*-arm64 >/dev/null 2>&1 && [ -x "$arm64_dir/bin/busybox" ]; }

if [ ${#missing[@]} -eq 0 ] && arm64_ready; then
  echo "install-e2e-deps: everything is installed (${packages[*]}; arm64 kernel and busybox in $arm64_dir)"
  exit 0
fi

SUDO=""
if [ "$(id -u)" -ne 0 ]; then
  if command -v sudo >/dev/null 2>&1; then SUDO="sudo"; else
    echo "install-e2e-deps: need root to install: ${missing[*]}" >&2
    exit 1
  fi
fi

export DEBIAN_FRONTEND=noninteractive
if ! dpkg --print-foreign-architectures | grep -qx arm64; then
  $SUDO dpkg --add-architecture arm64
fi
$SUDO apt-get update -q
if [ ${#missing[@]} -gt 0 ]; then
  echo "install-e2e-deps: installing ${missing[*]}"
  $SUDO apt-get install -y -q --no-install-recommends "${missing[@]}"
fi
ls /boot/vmlinuz-* >/dev/null

if ! arm64_ready; then
  # the kernel package linux-image-arm64 points at, e.g. linux-image-6.1.0-57-arm64
  kpkg=$(apt-cache depends linux-image-arm64:arm64 | awk '/Depends: linux-image-[0-9]/ { sub(":arm64", "", $2); print $2; exit }')
  [ -n "$kpkg" ] || { echo "install-e2e-deps: cannot tell which kernel linux-image-arm64 depends on" >&2; exit 1; }
  echo "install-e2e-deps: unpacking $kpkg:arm64 and busybox-static:arm64 into $arm64_dir"
  dl=$(mktemp -d)
  trap 'rm -rf "$dl"' EXIT
  chmod 0755 "$dl"
  (cd "$dl" && $SUDO apt-get download -q "$kpkg:arm64" busybox-static:arm64)
  $SUDO mkdir -p "$arm64_dir"
  for deb in "$dl"/*.deb; do $SUDO dpkg-deb -x "$deb" "$arm64_dir"; done
  arm64_ready || { echo "install-e2e-deps: $arm64_dir has no arm64 kernel or busybox after unpacking" >&2; exit 1; }
fi
echo "install-e2e-deps: done"
