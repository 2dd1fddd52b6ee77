#!/usr/bin/env bash
# Installs what the end-to-end tests and the README example need, from Debian's archive:
# qemu-system-x86 (boots the artifacts), linux-image-amd64 (the kernel they boot),
# busybox-static (busybox payload, so nothing is fetched from the internet),
# cpio and libarchive-tools (GNU cpio and bsdtar check the archives), pigz, zstd, lz4 and
# xz-utils (baselines and cross-checks of the compressors), musl-tools (rebuilds fledge's init),
# time (GNU time: peak RSS in npm run bench), docker-registry (the distribution registry),
# skopeo and umoci (the OCI plugin's tests push images to it; the bench's Go-fledge route).
# Idempotent: installs only what is missing. Run as root (or with sudo available).
set -euo pipefail

packages=(qemu-system-x86 linux-image-amd64 busybox-static cpio libarchive-tools pigz zstd lz4 xz-utils musl-tools time docker-registry skopeo umoci)

missing=()
for p in "${packages[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed"; then
    missing+=("$p")
  fi
done

if [ ${#missing[@]} -eq 0 ]; then
  echo "install-e2e-deps: everything is installed (${packages[*]})"
  exit 0
fi

SUDO=""
if [ "$(id -u)" -ne 0 ]; then
  if command -v sudo >/dev/null 2>&1; then SUDO="sudo"; else
    echo "install-e2e-deps: need root to install: ${missing[*]}" >&2
    exit 1
  fi
fi

echo "install-e2e-deps: installing ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -q
$SUDO apt-get install -y -q --no-install-recommends "${missing[@]}"
ls /boot/vmlinuz-* >/dev/null
echo "install-e2e-deps: done"
