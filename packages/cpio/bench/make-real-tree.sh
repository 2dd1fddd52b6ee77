#!/usr/bin/env bash
# Makes the benchmark's "real" tree: a copy of four directories of a Debian system (~300 MB,
# ~6,000 files: Python's standard library, GCC's support files, package docs, qemu's firmware).
# Usage: make-real-tree.sh <dest>. The directories come with Debian's python3.11, gcc and
# qemu-system-x86 packages; on a machine without them the bench runs on the generated tree only.
set -euo pipefail
dest=${1:?usage: make-real-tree.sh <dest>}
srcs=(/usr/lib/python3.11 /usr/lib/gcc /usr/share/doc /usr/share/qemu)
for s in "${srcs[@]}"; do
  [ -d "$s" ] || { echo "make-real-tree: $s is missing (apt-get install python3.11 gcc qemu-system-x86)" >&2; exit 3; }
done
rm -rf "$dest"
for s in "${srcs[@]}"; do
  mkdir -p "$dest$(dirname "$s")"
  cp -a "$s" "$dest$s"
done
echo "make-real-tree: $(find "$dest" -type f | wc -l) files, $(du -sb "$dest" | cut -f1) bytes in $dest" >&2
