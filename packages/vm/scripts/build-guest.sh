#!/bin/sh
# Rebuilds fledge-guest (src/guest.c), the helper `fledge run` puts before a plugin's /init, as
# static, stripped musl binaries, reproducibly (same toolchain, same bytes).
#
#   scripts/build-guest.sh [x86_64] [aarch64]
#
# With no architecture named, builds every one whose toolchain is installed. Writes
# bin/guest-<arch> and bin/guest-<arch>.buildinfo.
#
# Toolchains (Debian package names):
#   x86_64   musl-tools (musl-gcc)
#   aarch64  gcc-aarch64-linux-gnu and musl-dev:arm64 (dpkg --add-architecture arm64)
set -eu

pkg=$(cd "$(dirname "$0")/.." && pwd)
out="$pkg/bin"
archs="$*"
explicit=yes
[ -n "$archs" ] || { archs="x86_64 aarch64"; explicit=no; }

export LC_ALL=C TZ=UTC SOURCE_DATE_EPOCH=1704067200
umask 022

# The same flags as @fledge/cinit's init (see its scripts/build.sh for why each is there).
CFLAGS="-std=c11 -Os -Wall -Wextra -static -no-pie -fno-pie -fstack-protector-strong \
-ffunction-sections -fdata-sections -fno-asynchronous-unwind-tables -fno-unwind-tables -fno-ident \
-ffile-prefix-map=$pkg=. -fdebug-prefix-map=$pkg=. \
-Wl,--gc-sections -Wl,--build-id=none -Wl,-z,noseparate-code -Wl,-z,norelro -Wl,--hash-style=gnu -s"

compiler() {
	case "$1" in
	x86_64)
		specs=/usr/lib/x86_64-linux-musl/musl-gcc.specs
		if command -v x86_64-linux-gnu-gcc >/dev/null 2>&1 && [ -f "$specs" ]; then
			echo "x86_64-linux-gnu-gcc -specs $specs"
		elif command -v musl-gcc >/dev/null 2>&1; then
			echo "musl-gcc"
		fi ;;
	aarch64)
		specs=/usr/lib/aarch64-linux-musl/musl-gcc.specs
		if command -v aarch64-linux-gnu-gcc >/dev/null 2>&1 && [ -f "$specs" ]; then
			echo "aarch64-linux-gnu-gcc -specs $specs"
		fi ;;
	esac
}

mkdir -p "$out"
built=0
for arch in $archs; do
	case "$arch" in x86_64) deb=amd64 ;; aarch64) deb=arm64 ;; *) echo "build-guest.sh: unknown architecture '$arch'" >&2; exit 2 ;; esac
	cc=$(compiler "$arch")
	if [ -z "$cc" ]; then
		[ "$explicit" = yes ] && { echo "build-guest.sh: no toolchain for $arch" >&2; exit 1; }
		echo "build-guest.sh: skipping $arch: no toolchain" >&2
		continue
	fi
	tmp="$out/.guest-$arch.tmp.$$"
	trap 'rm -f "$tmp"' EXIT INT TERM
	(cd "$pkg" && $cc $CFLAGS -o "$tmp" src/guest.c)
	chmod 0755 "$tmp"
	mv -f "$tmp" "$out/guest-$arch"
	trap - EXIT INT TERM
	sum=$(sha256sum "$out/guest-$arch" | cut -d' ' -f1)
	size=$(wc -c <"$out/guest-$arch" | tr -d ' ')
	libc=$(dpkg-query -W -f '${Version}' "musl-dev:$deb" 2>/dev/null || echo unknown)
	{
		echo "# written by scripts/build-guest.sh; a rebuild with the same toolchain gives the same sha256"
		echo "arch $arch"
		echo "sha256 $sum"
		echo "size $size"
		echo "cc $(${cc%% *} --version | head -n1)"
		echo "libc musl $libc"
	} >"$out/guest-$arch.buildinfo"
	echo "guest-$arch: $size bytes, sha256 $sum"
	built=$((built + 1))
done
[ "$built" -gt 0 ] || { echo "build-guest.sh: nothing built" >&2; exit 1; }
