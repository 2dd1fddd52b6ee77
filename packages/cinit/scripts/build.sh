#!/bin/sh
# Rebuilds fledge's C init (src/init.c) as static, stripped musl binaries, reproducibly:
# the same toolchain gives the same bytes, whatever the directory, user, clock or locale.
#
#   scripts/build.sh [--out DIR] [x86_64] [aarch64]
#
# With no architecture named, builds every one whose toolchain is installed and says which it
# skipped; a named architecture without its toolchain is an error. Writes DIR/init-<arch> and
# DIR/init-<arch>.buildinfo (sha256, size, toolchain); DIR defaults to the package's bin/.
#
# Toolchains (Debian package names):
#   x86_64   musl-tools (musl-gcc)
#   aarch64  gcc-aarch64-linux-gnu and musl-dev:arm64 (dpkg --add-architecture arm64)
set -eu

pkg=$(cd "$(dirname "$0")/.." && pwd)
out="$pkg/bin"
archs=""
while [ $# -gt 0 ]; do
	case "$1" in
	--out) out=$2; shift 2 ;;
	--out=*) out=${1#--out=}; shift ;;
	x86_64 | aarch64) archs="$archs $1"; shift ;;
	-h | --help) sed -n '2,14p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
	*) echo "build.sh: unknown argument '$1' (architectures: x86_64 aarch64)" >&2; exit 2 ;;
	esac
done
explicit=yes
[ -n "$archs" ] || { archs="x86_64 aarch64"; explicit=no; }

export LC_ALL=C TZ=UTC SOURCE_DATE_EPOCH=1704067200
umask 022

# Fixed flags: size-optimised, static, no PIE, no build id, no unwind tables, no .comment,
# no host paths, symbols stripped. Segments are packed (noseparate-code, norelro): without
# that, page alignment pads aarch64's 64 KiB pages into a 66 KB file for 18 KB of code, and
# RELRO protects nothing in a process that execs its payload a few milliseconds after start.
CFLAGS="-std=c11 -Os -Wall -Wextra -static -no-pie -fno-pie -fstack-protector-strong \
-ffunction-sections -fdata-sections -fno-asynchronous-unwind-tables -fno-unwind-tables -fno-ident \
-ffile-prefix-map=$pkg=. -fdebug-prefix-map=$pkg=. \
-Wl,--gc-sections -Wl,--build-id=none -Wl,-z,noseparate-code -Wl,-z,norelro -Wl,--hash-style=gnu -s"

# Prints the compiler command for an architecture, or nothing when its toolchain is missing.
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

libc_version() {
	deb=$1
	v=$(dpkg-query -W -f '${Version}' "musl-dev:$deb" 2>/dev/null || true)
	echo "musl ${v:-unknown}"
}

mkdir -p "$out"
built=0
for arch in $archs; do
	cc=$(compiler "$arch")
	if [ -z "$cc" ]; then
		case "$arch" in
		x86_64) need="musl-tools" ;;
		aarch64) need="gcc-aarch64-linux-gnu and musl-dev:arm64" ;;
		esac
		if [ "$explicit" = yes ]; then
			echo "build.sh: no toolchain for $arch (install $need)" >&2
			exit 1
		fi
		echo "build.sh: skipping $arch: no toolchain (install $need)" >&2
		continue
	fi
	case "$arch" in x86_64) deb=amd64 ;; aarch64) deb=arm64 ;; esac
	tmp="$out/.init-$arch.tmp.$$"
	trap 'rm -f "$tmp"' EXIT INT TERM
	# Compile from the package directory with a relative source path.
	(cd "$pkg" && $cc $CFLAGS -o "$tmp" src/init.c)
	chmod 0755 "$tmp"
	mv -f "$tmp" "$out/init-$arch"
	trap - EXIT INT TERM
	sum=$(sha256sum "$out/init-$arch" | cut -d' ' -f1)
	size=$(wc -c <"$out/init-$arch" | tr -d ' ')
	ccversion=$(${cc%% *} --version | head -n1)
	{
		echo "# written by scripts/build.sh; a rebuild with the same toolchain gives the same sha256"
		echo "arch $arch"
		echo "sha256 $sum"
		echo "size $size"
		echo "cc $ccversion"
		echo "libc $(libc_version "$deb")"
	} >"$out/init-$arch.buildinfo"
	echo "init-$arch: $size bytes, sha256 $sum ($ccversion, $(libc_version "$deb"))"
	built=$((built + 1))
done
[ "$built" -gt 0 ] || { echo "build.sh: nothing built" >&2; exit 1; }
