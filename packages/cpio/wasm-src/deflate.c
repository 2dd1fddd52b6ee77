/*
 * fledge's deflate module: libdeflate (pinned, see build.sh) with one patch that lets a chunk end
 * in a non-final, byte-aligned block (libdeflate-1.23-nonfinal-chunks.patch), so a gzip member can
 * be made of independently compressed chunks, as pigz does. No imports: memory and functions only.
 */
#include <stdint.h>
#include <stdlib.h>
#include "libdeflate.h"

size_t fledge_deflate_compress_chunk(struct libdeflate_compressor *c, const void *in, size_t in_nbytes, void *out,
                                     size_t out_nbytes_avail, int final);

#define EXPORT(name) __attribute__((export_name(#name)))

EXPORT(alloc) void *fl_alloc(size_t n) { return malloc(n); }
EXPORT(free) void fl_free(void *p) { free(p); }
/* A compressor for levels 1..12; 0 when out of memory. */
EXPORT(deflate_new) struct libdeflate_compressor *fl_deflate_new(int level) { return libdeflate_alloc_compressor(level); }
EXPORT(deflate_free) void fl_deflate_free(struct libdeflate_compressor *c) { libdeflate_free_compressor(c); }
/* Room for the output of one chunk of n bytes, final or not. */
EXPORT(deflate_bound) size_t fl_deflate_bound(struct libdeflate_compressor *c, size_t n) {
  return libdeflate_deflate_compress_bound(c, n) + 6;
}
/* Raw deflate blocks for one chunk; the last chunk of a stream has final = 1. 0 if out is too small. */
EXPORT(deflate_chunk) size_t fl_deflate_chunk(struct libdeflate_compressor *c, const void *in, size_t n, void *out,
                                              size_t avail, int final) {
  return fledge_deflate_compress_chunk(c, in, n, out, avail, final);
}
EXPORT(crc32) uint32_t fl_crc32(uint32_t crc, const void *p, size_t n) { return libdeflate_crc32(crc, p, n); }
