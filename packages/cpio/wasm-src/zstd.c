/*
 * fledge's zstd module: zstd's streaming compressor (pinned, see build.sh), built without
 * ZSTD_MULTITHREAD: one frame per call sequence, single-threaded, so the bytes never depend on
 * the number of cores. Checksummed frames, like the zstd CLI. Also the decoder, for fledge's reader.
 * No imports.
 */
#include <stdint.h>
#include <stdlib.h>
#define ZSTD_STATIC_LINKING_ONLY
#include "zstd.h"

#define EXPORT(name) __attribute__((export_name(#name)))

EXPORT(alloc) void *fl_alloc(size_t n) { return malloc(n); }
EXPORT(free) void fl_free(void *p) { free(p); }

/* A compression context at a level, with content checksums; 0 on error. */
EXPORT(zstd_new) ZSTD_CCtx *fl_zstd_new(int level) {
  ZSTD_CCtx *c = ZSTD_createCCtx();
  if (!c) return 0;
  if (ZSTD_isError(ZSTD_CCtx_setParameter(c, ZSTD_c_compressionLevel, level)) ||
      ZSTD_isError(ZSTD_CCtx_setParameter(c, ZSTD_c_checksumFlag, 1))) {
    ZSTD_freeCCtx(c);
    return 0;
  }
  return c;
}
EXPORT(zstd_free) void fl_zstd_free(ZSTD_CCtx *c) { ZSTD_freeCCtx(c); }
/* Starts a new frame with the same parameters (after an error, too). */
EXPORT(zstd_reset) size_t fl_zstd_reset(ZSTD_CCtx *c) { return ZSTD_CCtx_reset(c, ZSTD_reset_session_only); }
/* The recommended output buffer size. */
EXPORT(zstd_out_size) size_t fl_zstd_out_size(void) { return ZSTD_CStreamOutSize(); }
/*
 * One ZSTD_compressStream2 call. pos[0] is the input position and pos[1] the output position,
 * both read and written. end = 1 ends the frame. Returns zstd's value: an error (zstd_is_error),
 * or with end = 1 the number of bytes still to flush (0: the frame is complete).
 */
EXPORT(zstd_stream) size_t fl_zstd_stream(ZSTD_CCtx *c, const void *in, size_t in_size, void *out, size_t out_size,
                                          size_t *pos, int end) {
  ZSTD_inBuffer i = {in, in_size, pos[0]};
  ZSTD_outBuffer o = {out, out_size, pos[1]};
  size_t r = ZSTD_compressStream2(c, &o, &i, end ? ZSTD_e_end : ZSTD_e_continue);
  pos[0] = i.pos;
  pos[1] = o.pos;
  return r;
}
EXPORT(zstd_is_error) int fl_zstd_is_error(size_t r) { return ZSTD_isError(r); }
EXPORT(zstd_error_name) const char *fl_zstd_error_name(size_t r) { return ZSTD_getErrorName(r); }
EXPORT(zstd_version) unsigned fl_zstd_version(void) { return ZSTD_versionNumber(); }

/* A decompression context (window up to 2^27 = 128 MiB, the kernel's limit too). */
EXPORT(zstd_dnew) ZSTD_DCtx *fl_zstd_dnew(void) { return ZSTD_createDCtx(); }
EXPORT(zstd_dfree) void fl_zstd_dfree(ZSTD_DCtx *d) { ZSTD_freeDCtx(d); }
EXPORT(zstd_dreset) size_t fl_zstd_dreset(ZSTD_DCtx *d) { return ZSTD_DCtx_reset(d, ZSTD_reset_session_only); }
/* One ZSTD_decompressStream call (positions as in zstd_stream). Returns 0 once a frame is complete. */
EXPORT(zstd_dstream) size_t fl_zstd_dstream(ZSTD_DCtx *d, const void *in, size_t in_size, void *out, size_t out_size,
                                            size_t *pos) {
  ZSTD_inBuffer i = {in, in_size, pos[0]};
  ZSTD_outBuffer o = {out, out_size, pos[1]};
  size_t r = ZSTD_decompressStream(d, &o, &i);
  pos[0] = i.pos;
  pos[1] = o.pos;
  return r;
}
