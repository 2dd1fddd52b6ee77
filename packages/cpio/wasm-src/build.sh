#!/bin/sh
# Builds fledge's compressors as WebAssembly, reproducibly, from pinned upstream sources taken
# from Debian's archive (the .orig tarballs of Debian 13's source packages; the sha256 of each
# is the one in its .dsc):
#
#   build.sh [--out DIR] [deflate] [zstd] [xz]
#
# With no module named, builds all three. Writes DIR/<name>.wasm and DIR/<name>.wasm.buildinfo
# (sha256, size, source and toolchain); DIR defaults to the package's wasm/. Sources are
# downloaded once into $FLEDGE_WASM_SOURCES (default: <repository>/.cache/wasm-src) and checked
# against their sha256 before use.
#
# Toolchain (Debian packages): clang lld wasi-libc. Only wasi-libc's malloc and string
# functions are linked; the modules import nothing.
set -eu

here=$(cd "$(dirname "$0")" && pwd)
pkg=$(cd "$here/.." && pwd)
out="$pkg/wasm"
mods=""
while [ $# -gt 0 ]; do
	case "$1" in
	--out) out=$2; shift 2 ;;
	--out=*) out=${1#--out=}; shift ;;
	deflate | zstd | xz) mods="$mods $1"; shift ;;
	-h | --help) sed -n '2,14p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
	*) echo "build.sh: unknown argument '$1' (modules: deflate zstd xz)" >&2; exit 2 ;;
	esac
done
[ -n "$mods" ] || mods="deflate zstd xz"
mkdir -p "$out"
out=$(cd "$out" && pwd)

export LC_ALL=C TZ=UTC SOURCE_DATE_EPOCH=1704067200
umask 022

POOL=${FLEDGE_DEBIAN_POOL:-https://deb.debian.org/debian/pool/main}
# name  pool path  sha256 (from the Debian 13 .dsc)
SOURCES="
libdeflate libd/libdeflate/libdeflate_1.23.orig.tar.gz 1ab18349b9fb0ce8a0ca4116bded725be7dcbfa709e19f6f983d99df1fb8b25f
zstd libz/libzstd/libzstd_1.5.7+dfsg.orig.tar.xz 0c092ef267edce57ba7f3f2645c861f72eaf5e76273c6c3632869423464b90a5
xz x/xz-utils/xz-utils_5.8.1.orig.tar.xz 0b54f79df85912504de0b14aec7971e3f964491af1812d83447005807513cd9e
"

for t in clang wasm-ld sha256sum tar patch; do
	command -v "$t" >/dev/null 2>&1 || { echo "build.sh: $t not found (apt-get install clang lld wasi-libc patch xz-utils)" >&2; exit 1; }
done
[ -f /usr/lib/wasm32-wasi/libc.a ] || { echo "build.sh: wasi-libc not found (apt-get install wasi-libc)" >&2; exit 1; }

cache=${FLEDGE_WASM_SOURCES:-$(cd "$pkg/../.." && pwd)/.cache/wasm-src}
mkdir -p "$cache"
work=$(mktemp -d "${TMPDIR:-/tmp}/fledge-wasm.XXXXXX")
trap 'rm -rf "$work"' EXIT INT TERM

# Fetches (once) and unpacks a pinned source into $work/<name>; prints nothing.
source_of() {
	line=$(echo "$SOURCES" | grep "^$1 ")
	path=$(echo "$line" | cut -d' ' -f2)
	want=$(echo "$line" | cut -d' ' -f3)
	file="$cache/$(basename "$path")"
	if [ ! -f "$file" ] || [ "$(sha256sum "$file" | cut -d' ' -f1)" != "$want" ]; then
		echo "build.sh: downloading $POOL/$path" >&2
		curl -fsSL --retry 3 -o "$file.part.$$" "$POOL/$path" || { rm -f "$file.part.$$"; echo "build.sh: cannot download $POOL/$path" >&2; exit 1; }
		mv -f "$file.part.$$" "$file"
	fi
	got=$(sha256sum "$file" | cut -d' ' -f1)
	[ "$got" = "$want" ] || { echo "build.sh: $file has sha256 $got, expected $want" >&2; exit 1; }
	mkdir -p "$work/$1"
	tar -xf "$file" -C "$work/$1" --strip-components=1
	echo "$(basename "$path") sha256 $want"
}

RD=$(clang -print-resource-dir)
# Fixed flags: only the compiler's and wasi-libc's headers (never the host's /usr/include),
# -O2 with wasm SIMD (deterministic by the WebAssembly spec), no debug info, no host paths,
# no asserts, nothing exported but the EXPORT()ed functions and the memory.
CFLAGS="--target=wasm32-wasi -nostdinc -isystem $RD/include -isystem /usr/include/wasm32-wasi \
-O2 -msimd128 -DNDEBUG -ffunction-sections -fdata-sections -ffile-prefix-map=$work=. -ffile-prefix-map=$here=. \
-fno-ident -Wno-unused-command-line-argument"
LDFLAGS="-nostartfiles -Wl,--no-entry -Wl,--strip-all -Wl,--gc-sections -Wl,-z,stack-size=1048576"

build_deflate() {
	src=$(source_of libdeflate)
	(cd "$work/libdeflate" && patch -s -p1 <"$here/libdeflate-1.23-nonfinal-chunks.patch")
	S=libdeflate
	(cd "$work" && clang $CFLAGS $LDFLAGS -I$S -o "$1" "$here/deflate.c" $S/lib/deflate_compress.c $S/lib/crc32.c $S/lib/utils.c)
	echo "source $src + libdeflate-1.23-nonfinal-chunks.patch"
}

build_zstd() {
	src=$(source_of zstd)
	Z=zstd/lib
	# No ZSTD_MULTITHREAD: zstdmt_compress.c, pool.c and threading.c compile to single-threaded stubs.
	(cd "$work" && clang $CFLAGS $LDFLAGS -DZSTD_DISABLE_ASM -DDEBUGLEVEL=0 -DZSTD_LEGACY_SUPPORT=0 -I$Z -I$Z/common -o "$1" \
		"$here/zstd.c" $Z/common/*.c $Z/compress/*.c $Z/decompress/*.c)
	echo "source $src"
}

build_xz() {
	src=$(source_of xz)
	L=xz/src/liblzma
	mkdir -p "$work/xzconfig"
	cp "$here/xz-config.h" "$work/xzconfig/config.h"
	files="common/common.c common/easy_preset.c common/easy_encoder.c common/stream_encoder.c common/block_encoder.c
common/block_util.c common/block_header_encoder.c common/filter_common.c common/filter_encoder.c common/filter_flags_encoder.c
common/index.c common/index_encoder.c common/stream_flags_common.c common/stream_flags_encoder.c common/vli_encoder.c
common/vli_size.c check/check.c check/crc32_fast.c lz/lz_encoder.c lz/lz_encoder_mf.c lzma/lzma_encoder.c
lzma/lzma_encoder_presets.c lzma/lzma_encoder_optimum_fast.c lzma/lzma_encoder_optimum_normal.c lzma/lzma2_encoder.c
lzma/fastpos_table.c rangecoder/price_table.c
common/stream_decoder.c common/block_decoder.c common/block_header_decoder.c common/filter_decoder.c
common/filter_flags_decoder.c common/index_hash.c common/stream_flags_decoder.c common/vli_decoder.c
check/crc64_fast.c check/sha256.c lz/lz_decoder.c lzma/lzma_decoder.c lzma/lzma2_decoder.c
delta/delta_common.c delta/delta_decoder.c simple/simple_coder.c simple/simple_decoder.c simple/x86.c
simple/powerpc.c simple/ia64.c simple/arm.c simple/armthumb.c simple/arm64.c simple/sparc.c simple/riscv.c"
	(cd "$work" && clang $CFLAGS $LDFLAGS -DHAVE_CONFIG_H -Ixzconfig -I$L/api -I$L/common -I$L/check -I$L/lz -I$L/rangecoder \
		-I$L/lzma -I$L/delta -I$L/simple -Ixz/src/common -o "$1" "$here/xz.c" $(for f in $files; do echo "$L/$f"; done))
	echo "source $src"
}

ccversion=$(clang --version | head -n1)
ldversion=$(wasm-ld --version | head -n1)
libc=$(dpkg-query -W -f '${Version}' wasi-libc 2>/dev/null || echo unknown)
for m in $mods; do
	tmp="$work/$m.wasm"
	srcline=$(build_$m "$tmp")
	mv -f "$tmp" "$out/$m.wasm"
	sum=$(sha256sum "$out/$m.wasm" | cut -d' ' -f1)
	size=$(wc -c <"$out/$m.wasm" | tr -d ' ')
	{
		echo "# written by wasm-src/build.sh; a rebuild with the same toolchain gives the same sha256"
		echo "module $m"
		echo "sha256 $sum"
		echo "size $size"
		echo "$srcline"
		echo "cc $ccversion"
		echo "ld $ldversion"
		echo "libc wasi-libc $libc"
	} >"$out/$m.wasm.buildinfo"
	echo "$m.wasm: $size bytes, sha256 $sum"
done
