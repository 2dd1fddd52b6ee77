/**
 * zstd, built as WebAssembly from a pinned source (`wasm-src/build.sh`) without multithreading:
 * one frame per member, content checksum on (as the zstd CLI writes), window as the level sets
 * it (at most 8 MiB up to level 19; the kernel accepts up to 128 MiB).
 *
 * The encoder is fed in fixed {@link ZSTD_FEED}-byte steps whatever pieces the input arrives in,
 * so the in-memory and the streaming forms make the same bytes, with memory bounded by the
 * level's window and one feed buffer.
 */
import { Transform, type TransformCallback } from "node:stream";
import { CpioError } from "./errors.js";
import { EncoderTransform, FeedingEncoder, allocBuffers, concatBytes, encodePooled, freeBuffers, instantiate, pump, type StreamBuffers } from "./wasm.js";

/** Input handed to the encoder per call. */
export const ZSTD_FEED = 1 << 20;
const OUT = 1 << 18;

interface ZstdExports extends WebAssembly.Exports {
  memory: WebAssembly.Memory;
  alloc(n: number): number;
  free(p: number): void;
  zstd_new(level: number): number;
  zstd_free(c: number): void;
  zstd_reset(c: number): number;
  zstd_stream(c: number, inp: number, n: number, out: number, outSize: number, pos: number, end: number): number;
  zstd_is_error(r: number): number;
  zstd_error_name(r: number): number;
  zstd_version(): number;
  zstd_dnew(): number;
  zstd_dfree(d: number): void;
  zstd_dreset(d: number): number;
  zstd_dstream(d: number, inp: number, n: number, out: number, outSize: number, pos: number): number;
}

let wasm: ZstdExports | undefined;
const e = (): ZstdExports => (wasm ??= instantiate<ZstdExports>("zstd.wasm"));

function errorName(r: number): string {
  const x = e();
  const p = x.zstd_error_name(r);
  const bytes = new Uint8Array(x.memory.buffer, p);
  return Buffer.from(bytes.subarray(0, bytes.indexOf(0))).toString();
}

/** zstd's version, e.g. "1.5.7". */
export function zstdVersion(): string {
  const v = e().zstd_version();
  return `${Math.floor(v / 10000)}.${Math.floor(v / 100) % 100}.${v % 100}`;
}

/** Idle encoders per level (compress() reuses them; a frame end leaves one ready for the next). */
const idle = new Map<number, ZstdEncoder[]>();

/** One frame at a time; write() any pieces, end() once; then it is ready for the next frame. */
export class ZstdEncoder extends FeedingEncoder {
  readonly #cctx: number;

  constructor(readonly level: number) {
    if (!Number.isInteger(level) || level < 1 || level > 22) throw new CpioError("ELEVEL", `zstd level ${level} is out of range 1–22`);
    const x = e();
    const cctx = x.zstd_new(level);
    if (!cctx) throw new CpioError("ECOMPRESS", "zstd: cannot create a compression context (out of WebAssembly memory?)");
    super(() => x.memory, allocBuffers(x, ZSTD_FEED, OUT, "zstd"));
    this.#cctx = cctx;
  }

  protected run(n: number, end: boolean, sink: (c: Uint8Array) => void): void {
    const x = e();
    const b = this.b;
    pump(
      x.memory,
      b,
      n,
      end,
      () => x.zstd_stream(this.#cctx, b.in, n, b.out, b.outSize, b.pos, end ? 1 : 0),
      (r) => {
        if (x.zstd_is_error(r)) {
          const msg = errorName(r);
          x.zstd_reset(this.#cctx);
          this.discard();
          throw new CpioError("ECOMPRESS", `zstd: ${msg}`);
        }
        return r === 0;
      },
      sink,
      "zstd",
    );
  }

  free(): void {
    const x = e();
    x.zstd_free(this.#cctx);
    freeBuffers(x, this.b);
  }
}

/** One zstd frame of `data`. */
export function zstdFrame(data: Uint8Array, level: number): Uint8Array {
  return encodePooled(idle, level, () => new ZstdEncoder(level), data);
}

/** The same frame as {@link zstdFrame}, as a stream with bounded memory. */
export class ZstdStream extends EncoderTransform {
  constructor(level: number) {
    super(new ZstdEncoder(level));
  }
}

let dctx: { d: number; b: StreamBuffers } | undefined;

/**
 * Decodes one zstd frame (exactly `frame`, as delimited by the caller), refusing more than
 * `maxOutput` bytes. Throws a plain Error with zstd's message when the frame is corrupt.
 */
export function zstdDecodeFrame(frame: Uint8Array, maxOutput: number): Uint8Array {
  const x = e();
  if (!dctx) {
    const d = x.zstd_dnew();
    if (!d) throw new CpioError("ECOMPRESS", "zstd: cannot create a decompression context");
    dctx = { d, b: allocBuffers(x, ZSTD_FEED, 1 << 20, "zstd") };
  }
  const { d, b } = dctx;
  x.zstd_dreset(d);
  const parts: Uint8Array[] = [];
  let total = 0;
  let complete = false;
  const sink = (c: Uint8Array) => {
    total += c.length;
    if (total > maxOutput) throw new CpioError("E2BIG", `the member decompresses to more than the ${maxOutput} bytes left under the archive's output limit`);
    parts.push(c);
  };
  for (let p = 0; p < frame.length && !complete; p += ZSTD_FEED) {
    const piece = frame.subarray(p, p + ZSTD_FEED);
    new Uint8Array(x.memory.buffer, b.in, piece.length).set(piece);
    const last = p + ZSTD_FEED >= frame.length;
    try {
      pump(
        x.memory,
        b,
        piece.length,
        last,
        () => x.zstd_dstream(d, b.in, piece.length, b.out, b.outSize, b.pos),
        (r) => {
          if (x.zstd_is_error(r)) throw new Error(errorName(r));
          if (r === 0) complete = true;
          return r === 0;
        },
        sink,
        "zstd",
      );
    } catch (err) {
      if ((err as CpioError).code === "ECOMPRESS") throw new Error("truncated frame");
      throw err;
    }
  }
  if (!complete) throw new Error("truncated frame");
  return concatBytes(parts);
}

/**
 * Decompresses a stream of zstd frames (concatenated frames and skippable frames, as `zstd -dc`
 * reads), with memory bounded by the frames' window (at most 128 MiB): for `tar+zstd` layers and
 * the like. Errors are CpioErrors with code ECORRUPT (bad data) or ETRUNC (input ended inside a frame).
 */
export class ZstdDecompressStream extends Transform {
  readonly #d: number;
  readonly #b: StreamBuffers;
  #freed = false;
  /** 0 between frames; otherwise zstd's hint of input still needed for the current frame. */
  #inFrame = 0;
  #total = 0;

  constructor() {
    super();
    const x = e();
    this.#d = x.zstd_dnew();
    if (!this.#d) throw new CpioError("ECOMPRESS", "zstd: cannot create a decompression context");
    this.#b = allocBuffers(x, ZSTD_FEED, 1 << 20, "zstd");
  }

  #free(): void {
    if (this.#freed) return;
    this.#freed = true;
    const x = e();
    x.zstd_dfree(this.#d);
    freeBuffers(x, this.#b);
  }

  override _transform(chunk: Buffer, _e: BufferEncoding, cb: TransformCallback): void {
    const x = e();
    try {
      for (let p = 0; p < chunk.length; p += ZSTD_FEED) {
        const piece = chunk.subarray(p, p + ZSTD_FEED);
        new Uint8Array(x.memory.buffer, this.#b.in, piece.length).set(piece);
        pump(
          x.memory,
          this.#b,
          piece.length,
          false,
          () => x.zstd_dstream(this.#d, this.#b.in, piece.length, this.#b.out, this.#b.outSize, this.#b.pos),
          (r) => {
            if (x.zstd_is_error(r)) throw new CpioError("ECORRUPT", `zstd data at byte ${this.#total} is corrupt: ${errorName(r)}`);
            this.#inFrame = r;
            return false;
          },
          (c) => this.push(c),
          "zstd",
        );
        this.#total += piece.length;
      }
      cb();
    } catch (err) {
      this.#free();
      cb(err as Error);
    }
  }

  override _flush(cb: TransformCallback): void {
    try {
      const x = e();
      // Output still held back when the last call filled the output buffer.
      pump(
        x.memory,
        this.#b,
        0,
        false,
        () => x.zstd_dstream(this.#d, this.#b.in, 0, this.#b.out, this.#b.outSize, this.#b.pos),
        () => false,
        (c) => this.push(c),
        "zstd",
      );
    } catch (err) {
      this.#free();
      cb(err as Error);
      return;
    }
    this.#free();
    cb(this.#inFrame !== 0 ? new CpioError("ETRUNC", `zstd data ends inside a frame (after ${this.#total} bytes)`) : null);
  }

  override _destroy(err: Error | null, cb: (error: Error | null) => void): void {
    this.#free();
    cb(err);
  }
}
