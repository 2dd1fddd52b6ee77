/*
 * fledge's xz module: liblzma's single-threaded stream encoder (pinned, see build.sh) with
 * --check=crc32, as the kernel's xz decoder requires; and liblzma's stream decoder (LZMA1/2, the
 * BCJ and delta filters, CRC32/CRC64/SHA-256 checks) for fledge's reader. No imports.
 */
#include <stdint.h>
#include <stdlib.h>
#include "lzma.h"

#define EXPORT(name) __attribute__((export_name(#name)))

EXPORT(alloc) void *fl_alloc(size_t n) { return malloc(n); }
EXPORT(free) void fl_free(void *p) { free(p); }

/* An .xz stream encoder at a preset (0..9, | LZMA_PRESET_EXTREME), CRC32 check; 0 on error. */
EXPORT(xz_new) lzma_stream *fl_xz_new(uint32_t preset) {
  lzma_stream *s = malloc(sizeof *s);
  if (!s) return 0;
  *s = (lzma_stream)LZMA_STREAM_INIT;
  if (lzma_easy_encoder(s, preset, LZMA_CHECK_CRC32) != LZMA_OK) {
    free(s);
    return 0;
  }
  return s;
}
/* Starts a new stream on the same encoder (liblzma reuses its memory); 0 on success. */
EXPORT(xz_reset) int fl_xz_reset(lzma_stream *s, uint32_t preset) { return (int)lzma_easy_encoder(s, preset, LZMA_CHECK_CRC32); }
EXPORT(xz_free) void fl_xz_free(lzma_stream *s) {
  lzma_end(s);
  free(s);
}
/*
 * One lzma_code call. pos[0] is the input position and pos[1] the output position, both read and
 * written. finish = 1 ends the stream. Returns lzma_ret: 0 LZMA_OK, 1 LZMA_STREAM_END, else an error.
 */
EXPORT(xz_code) int fl_xz_code(lzma_stream *s, const uint8_t *in, size_t in_size, uint8_t *out, size_t out_size,
                               size_t *pos, int finish) {
  s->next_in = in + pos[0];
  s->avail_in = in_size - pos[0];
  s->next_out = out + pos[1];
  s->avail_out = out_size - pos[1];
  lzma_ret r = lzma_code(s, finish ? LZMA_FINISH : LZMA_RUN);
  pos[0] = in_size - s->avail_in;
  pos[1] = out_size - s->avail_out;
  return (int)r;
}
/* An .xz stream decoder using at most memlimit bytes (a larger dictionary is an error); 0 on error. */
EXPORT(xz_dnew) lzma_stream *fl_xz_dnew(uint32_t memlimit) {
  lzma_stream *s = malloc(sizeof *s);
  if (!s) return 0;
  *s = (lzma_stream)LZMA_STREAM_INIT;
  if (lzma_stream_decoder(s, memlimit, 0) != LZMA_OK) {
    free(s);
    return 0;
  }
  return s;
}
/* Decoding goes through xz_code as well (finish = 1 once all input is given); xz_free frees it. */
EXPORT(xz_version) uint32_t fl_xz_version(void) { return lzma_version_number(); }
