/**
 * xz, built as WebAssembly from a pinned liblzma (`wasm-src/build.sh`): the single-threaded
 * stream encoder with `--check=crc32` (the kernel's xz decoder verifies CRC32), one .xz stream
 * per member.
 *
 * The encoder is fed in fixed {@link XZ_FEED}-byte steps whatever pieces the input arrives in,
 * so the in-memory and the streaming forms make the same bytes, with memory bounded by the
 * preset's dictionary and one feed buffer.
 */
import { Transform, type TransformCallback } from "node:stream";
import { CpioError } from "./errors.js";
import { EncoderTransform, FeedingEncoder, allocBuffers, concatBytes, encodePooled, freeBuffers, instantiate, pump, type StreamBuffers } from "./wasm.js";

/** Input handed to the encoder per call. */
export const XZ_FEED = 1 << 20;
const OUT = 1 << 18;
/** Memory the reader's decoder may use (an .xz stream made with `xz -9` needs 65 MiB). */
const DECODER_MEMLIMIT = 512 << 20;

interface XzExports extends WebAssembly.Exports {
  memory: WebAssembly.Memory;
  alloc(n: number): number;
  free(p: number): void;
  xz_new(preset: number): number;
  xz_reset(s: number, preset: number): number;
  xz_free(s: number): void;
  xz_code(s: number, inp: number, n: number, out: number, outSize: number, pos: number, finish: number): number;
  xz_version(): number;
  xz_dnew(memlimit: number): number;
}

let wasm: XzExports | undefined;
const e = (): XzExports => (wasm ??= instantiate<XzExports>("xz.wasm"));

const LZMA_STREAM_END = 1;
const ERRORS: Record<number, string> = {
  2: "no integrity check",
  3: "unsupported integrity check",
  5: "out of memory",
  6: "memory limit reached",
  7: "file format not recognized",
  8: "unsupported options",
  9: "compressed data is corrupt",
  10: "unexpected end of input",
  11: "programming error",
};

/** liblzma's version, e.g. "5.8.1". */
export function xzVersion(): string {
  const v = e().xz_version();
  return `${Math.floor(v / 10000000)}.${Math.floor(v / 10000) % 1000}.${Math.floor(v / 10) % 1000}`;
}

/** Idle encoders per preset (compress() reuses them: liblzma keeps its memory between streams). */
const idle = new Map<number, XzEncoder[]>();

/** One .xz stream at a time; write() any pieces, end() once, reset() for the next one. */
export class XzEncoder extends FeedingEncoder {
  readonly #s: number;

  constructor(readonly preset: number) {
    if (!Number.isInteger(preset) || preset < 0 || preset > 9) throw new CpioError("ELEVEL", `xz level ${preset} is out of range 0–9`);
    const x = e();
    const s = x.xz_new(preset);
    if (!s) throw new CpioError("ECOMPRESS", `xz: cannot create an encoder for preset ${preset} (out of WebAssembly memory?)`);
    super(() => x.memory, allocBuffers(x, XZ_FEED, OUT, "xz"));
    this.#s = s;
  }

  protected run(n: number, finish: boolean, sink: (c: Uint8Array) => void): void {
    const x = e();
    const b = this.b;
    pump(
      x.memory,
      b,
      n,
      finish,
      () => x.xz_code(this.#s, b.in, n, b.out, b.outSize, b.pos, finish ? 1 : 0),
      (r) => {
        if (r > LZMA_STREAM_END) throw new CpioError("ECOMPRESS", `xz: ${ERRORS[r] ?? `liblzma error ${r}`}`);
        return r === LZMA_STREAM_END;
      },
      sink,
      "xz",
    );
  }

  /** Ready for a new stream with the same preset (after end(), or after an error). */
  reset(): void {
    this.discard();
    if (e().xz_reset(this.#s, this.preset) !== 0) throw new CpioError("ECOMPRESS", "xz: cannot restart the encoder");
  }

  free(): void {
    const x = e();
    x.xz_free(this.#s);
    freeBuffers(x, this.b);
  }
}

/** One .xz stream of `data` (CRC32 check). */
export function xzStream(data: Uint8Array, preset: number): Uint8Array {
  return encodePooled(
    idle,
    preset,
    () => new XzEncoder(preset),
    data,
    (enc) => enc.reset(),
  );
}

/** The same stream as {@link xzStream}, as a Node stream with bounded memory. */
export class XzStream extends EncoderTransform {
  constructor(preset: number) {
    super(new XzEncoder(preset));
  }
}

/**
 * Decodes one .xz stream (exactly `stream`, as delimited by the caller), refusing more than
 * `maxOutput` bytes. Throws a plain Error with liblzma's reason when it is corrupt.
 */
export function xzDecodeStream(stream: Uint8Array, maxOutput: number): Uint8Array {
  const x = e();
  const s = x.xz_dnew(DECODER_MEMLIMIT);
  if (!s) throw new CpioError("ECOMPRESS", "xz: cannot create a decoder");
  const b = allocBuffers(x, XZ_FEED, 1 << 20, "xz");
  const parts: Uint8Array[] = [];
  let total = 0;
  try {
    for (let p = 0; p < stream.length || p === 0; p += XZ_FEED) {
      const piece = stream.subarray(p, p + XZ_FEED);
      new Uint8Array(x.memory.buffer, b.in, piece.length).set(piece);
      const last = p + XZ_FEED >= stream.length;
      pump(
        x.memory,
        b,
        piece.length,
        last,
        () => x.xz_code(s, b.in, piece.length, b.out, b.outSize, b.pos, last ? 1 : 0),
        (r) => {
          if (r > LZMA_STREAM_END) throw new Error(ERRORS[r] ?? `liblzma error ${r}`);
          return r === LZMA_STREAM_END;
        },
        (c) => {
          total += c.length;
          if (total > maxOutput) throw new CpioError("E2BIG", `the member decompresses to more than the ${maxOutput} bytes left under the archive's output limit`);
          parts.push(c);
        },
        "xz",
      );
      if (last) break;
    }
  } catch (err) {
    if ((err as CpioError).code === "ECOMPRESS") throw new Error("unexpected end of input");
    throw err;
  } finally {
    x.xz_free(s);
    freeBuffers(x, b);
  }
  return concatBytes(parts);
}

/**
 * Decodes one or more concatenated .xz streams as a Node stream, in bounded memory (the
 * dictionary, at most {@link DECODER_MEMLIMIT}). Corrupt data fails with liblzma's reason.
 */
export class XzDecompressStream extends Transform {
  readonly #s: number;
  readonly #b: StreamBuffers;
  #freed = false;

  constructor() {
    super();
    const x = e();
    this.#s = x.xz_dnew(DECODER_MEMLIMIT);
    if (!this.#s) throw new CpioError("ECOMPRESS", "xz: cannot create a decoder");
    this.#b = allocBuffers(x, XZ_FEED, 1 << 20, "xz");
  }

  #free(): void {
    if (this.#freed) return;
    this.#freed = true;
    const x = e();
    x.xz_free(this.#s);
    freeBuffers(x, this.#b);
  }

  #code(piece: Uint8Array, finish: boolean): void {
    const x = e();
    new Uint8Array(x.memory.buffer, this.#b.in, piece.length).set(piece);
    pump(
      x.memory,
      this.#b,
      piece.length,
      finish,
      () => x.xz_code(this.#s, this.#b.in, piece.length, this.#b.out, this.#b.outSize, this.#b.pos, finish ? 1 : 0),
      (r) => {
        if (r > LZMA_STREAM_END) throw new Error(ERRORS[r] ?? `liblzma error ${r}`);
        return r === LZMA_STREAM_END;
      },
      (c) => this.push(c),
      "xz",
    );
  }

  override _transform(chunk: Buffer, _e: BufferEncoding, cb: TransformCallback): void {
    try {
      for (let p = 0; p < chunk.length; p += XZ_FEED) this.#code(chunk.subarray(p, p + XZ_FEED), false);
      cb();
    } catch (err) {
      this.#free();
      cb(err as Error);
    }
  }

  override _flush(cb: TransformCallback): void {
    try {
      this.#code(new Uint8Array(0), true);
      this.#free();
      cb();
    } catch (err) {
      this.#free();
      cb((err as CpioError).code === "ECOMPRESS" ? new Error("unexpected end of input") : (err as Error));
    }
  }

  override _destroy(err: Error | null, cb: (error: Error | null) => void): void {
    this.#free();
    cb(err);
  }
}
