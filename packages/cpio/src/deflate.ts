/**
 * gzip with libdeflate, built as WebAssembly from a pinned source (`wasm-src/build.sh`).
 *
 * libdeflate compresses a whole buffer at a time, so a gzip member is made of **chunks**: the
 * member's uncompressed bytes are cut every {@link GZIP_CHUNK} bytes, each chunk is compressed
 * on its own (no dictionary from the one before, as in pigz -i), every chunk but the last ends in
 * a non-final, byte-aligned empty stored block, and the chunks' deflate data are simply
 * concatenated between one gzip header and one trailer (CRC-32 and length of the whole). The
 * cut points depend on the offset only, so `gzipMember`, the streaming form and any split of the
 * work between threads (see {@link deflateChunk} and {@link crc32Combine}) give the same bytes.
 */
import { Transform, type TransformCallback } from "node:stream";
import { CpioError } from "./errors.js";
import { concatBytes, instantiate } from "./wasm.js";

/** Uncompressed bytes per independently compressed chunk of a gzip member. */
export const GZIP_CHUNK = 4 << 20;

/**
 * The 10-byte gzip header fledge writes: deflate, no flags (the kernel accepts only FNAME among
 * them), mtime 0, no extra flags, OS 3 (Unix), as `gzip -n` writes on Linux.
 */
export const GZIP_HEADER: Readonly<Uint8Array> = Uint8Array.of(0x1f, 0x8b, 8, 0, 0, 0, 0, 0, 0, 3);

interface DeflateExports extends WebAssembly.Exports {
  memory: WebAssembly.Memory;
  alloc(n: number): number;
  free(p: number): void;
  deflate_new(level: number): number;
  deflate_bound(c: number, n: number): number;
  deflate_chunk(c: number, inp: number, n: number, out: number, avail: number, final: number): number;
  crc32(crc: number, p: number, n: number): number;
}

/** One instance per thread; every call is synchronous, so concurrent jobs can share it. */
let wasm: { e: DeflateExports; in: number; out: number; cap: number } | undefined;
const compressors = new Map<number, number>();

function instance(): NonNullable<typeof wasm> {
  if (!wasm) {
    const e = instantiate<DeflateExports>("deflate.wasm");
    const inp = e.alloc(GZIP_CHUNK);
    const probe = e.deflate_new(1);
    const cap = e.deflate_bound(probe, GZIP_CHUNK);
    compressors.set(1, probe);
    const out = e.alloc(cap);
    if (!inp || !out) throw new CpioError("ECOMPRESS", "gzip: out of WebAssembly memory");
    wasm = { e, in: inp, out, cap };
  }
  return wasm;
}

function compressorFor(level: number): number {
  if (!Number.isInteger(level) || level < 1 || level > 12) throw new CpioError("ELEVEL", `gzip level ${level} is out of range 1–12`);
  const w = instance();
  let c = compressors.get(level);
  if (!c) {
    c = w.e.deflate_new(level);
    if (!c) throw new CpioError("ECOMPRESS", "gzip: out of WebAssembly memory");
    compressors.set(level, c);
  }
  return c;
}

/**
 * Compresses one chunk (at most {@link GZIP_CHUNK} bytes) into raw deflate blocks; unless
 * `final`, they end byte-aligned with no final block, ready for the next chunk's. Also returns the
 * chunk's CRC-32.
 */
export function deflateChunk(data: Uint8Array, level: number, final: boolean): { deflated: Uint8Array; crc: number } {
  if (data.length > GZIP_CHUNK) throw new RangeError(`deflateChunk: ${data.length} bytes is more than one chunk (${GZIP_CHUNK})`);
  const c = compressorFor(level);
  const w = instance();
  new Uint8Array(w.e.memory.buffer, w.in, data.length).set(data);
  const crc = w.e.crc32(0, w.in, data.length) >>> 0;
  const n = w.e.deflate_chunk(c, w.in, data.length, w.out, w.cap, final ? 1 : 0) >>> 0;
  if (n === 0) throw new CpioError("ECOMPRESS", "gzip: libdeflate's output did not fit its bound");
  return { deflated: new Uint8Array(w.e.memory.buffer, w.out, n).slice(), crc };
}

/** CRC-32 (gzip's) of `data`, continuing from `crc`. */
export function crc32(data: Uint8Array, crc = 0): number {
  const w = instance();
  for (let i = 0; i < data.length; i += GZIP_CHUNK) {
    const part = data.subarray(i, i + GZIP_CHUNK);
    new Uint8Array(w.e.memory.buffer, w.in, part.length).set(part);
    crc = w.e.crc32(crc, w.in, part.length);
  }
  return crc >>> 0;
}

// CRC-32 combination (as zlib's crc32_combine): crc(A‖B) from crc(A), crc(B) and B's length.
const POLY = 0xedb88320;
function multModP(a: number, b: number): number {
  let m = 0x80000000;
  let p = 0;
  for (;;) {
    if (a & m) {
      p ^= b;
      if ((a & (m - 1)) === 0) break;
    }
    m >>>= 1;
    b = b & 1 ? (b >>> 1) ^ POLY : b >>> 1;
  }
  return p >>> 0;
}
const X2N: number[] = [];
for (let p = 0x40000000, n = 0; n < 32; n++, p = multModP(p, p)) X2N.push(p);
function x2nModP(n: number, k: number): number {
  let p = 0x80000000;
  while (n > 0) {
    if (n % 2) p = multModP(X2N[k & 31]!, p);
    n = Math.floor(n / 2);
    k++;
  }
  return p;
}
/** The CRC-32 of A followed by B, from A's CRC, B's CRC and B's length in bytes. */
export function crc32Combine(crcA: number, crcB: number, lengthB: number): number {
  return (multModP(x2nModP(lengthB, 3), crcA >>> 0) ^ (crcB >>> 0)) >>> 0;
}

/** The 8-byte gzip trailer: CRC-32 and length modulo 2^32, little-endian. */
export function gzipTrailer(crc: number, length: number): Uint8Array {
  const t = new Uint8Array(8);
  const v = new DataView(t.buffer);
  v.setUint32(0, crc >>> 0, true);
  v.setUint32(4, length % 2 ** 32, true);
  return t;
}

/** One complete gzip member of `data`, chunk by chunk. */
export function gzipMember(data: Uint8Array, level: number): Uint8Array {
  const parts: Uint8Array[] = [GZIP_HEADER];
  let crc = 0;
  for (let i = 0; ; i += GZIP_CHUNK) {
    const chunk = data.subarray(i, i + GZIP_CHUNK);
    const final = i + GZIP_CHUNK >= data.length;
    const r = deflateChunk(chunk, level, final);
    crc = crc32Combine(crc, r.crc, chunk.length);
    parts.push(r.deflated);
    if (final) break;
  }
  parts.push(gzipTrailer(crc, data.length));
  return concatBytes(parts);
}

/**
 * The same member as {@link gzipMember}, as a stream: holds one chunk of input at a time, so
 * memory stays flat whatever the size.
 */
export class GzipStream extends Transform {
  readonly #level: number;
  readonly #pending = Buffer.allocUnsafe(GZIP_CHUNK);
  #fill = 0;
  #crc = 0;
  #length = 0;
  #started = false;

  constructor(level: number) {
    super();
    compressorFor(level); // a bad level fails here, not at the first chunk
    this.#level = level;
  }

  #emit(final: boolean): void {
    if (!this.#started) {
      this.push(Buffer.from(GZIP_HEADER));
      this.#started = true;
    }
    const r = deflateChunk(this.#pending.subarray(0, this.#fill), this.#level, final);
    this.#crc = crc32Combine(this.#crc, r.crc, this.#fill);
    this.#fill = 0;
    this.push(r.deflated);
  }

  override _transform(chunk: Buffer, _e: BufferEncoding, cb: TransformCallback): void {
    try {
      let p = 0;
      while (p < chunk.length) {
        // A full chunk is compressed only once more input shows it is not the last one.
        if (this.#fill === GZIP_CHUNK) this.#emit(false);
        const n = Math.min(GZIP_CHUNK - this.#fill, chunk.length - p);
        chunk.copy(this.#pending, this.#fill, p, p + n);
        this.#fill += n;
        p += n;
      }
      this.#length += chunk.length;
      cb();
    } catch (err) {
      cb(err as Error);
    }
  }

  override _flush(cb: TransformCallback): void {
    try {
      this.#emit(true);
      this.push(gzipTrailer(this.#crc, this.#length));
      cb();
    } catch (err) {
      cb(err as Error);
    }
  }
}
