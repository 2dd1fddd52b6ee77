/**
 * Loads fledge's WebAssembly compressors (`wasm/*.wasm`, built by `wasm-src/build.sh` from pinned
 * sources). One loader for every way fledge runs:
 *
 * 1. a compiled module handed to this worker thread by the thread that started it
 *    (`workerData.fledgeWasm[name]`, see {@link wasmModulesForWorker});
 * 2. inside a single executable application (`node:sea`), the asset `@fledge/cpio/wasm/<name>`;
 * 3. otherwise the file `wasm/<name>` of this package, next to `dist/` (and to `src/` in tests).
 *
 * Modules are compiled once per thread and cached; the bytes they compute depend on the module
 * only (WebAssembly, SIMD included, is deterministic), never on the CPU or the Node version.
 */
import { readFileSync } from "node:fs";
import { Transform, type TransformCallback } from "node:stream";
import { workerData } from "node:worker_threads";
import { CpioError } from "./errors.js";

export type WasmName = "deflate.wasm" | "zstd.wasm" | "xz.wasm";

/** The asset key of a module in a single executable application's `sea-config.json`. */
export function seaAssetKey(name: WasmName): string {
  return `@fledge/cpio/wasm/${name}`;
}

const compiled = new Map<WasmName, WebAssembly.Module>();

interface SeaModule {
  isSea(): boolean;
  getAsset(key: string): ArrayBuffer;
}

function seaModule(): SeaModule | undefined {
  // process.getBuiltinModule exists from Node 20.16 (fledge needs 20.18.1); node:sea from 20.12.
  const get = (process as { getBuiltinModule?: (id: string) => unknown }).getBuiltinModule;
  try {
    const sea = get?.("node:sea") as SeaModule | undefined;
    return sea?.isSea() ? sea : undefined;
  } catch {
    return undefined;
  }
}

/** The bytes of a module: from the single executable's assets when running as one, else from disk. */
export function loadWasm(name: WasmName): Uint8Array {
  const sea = seaModule();
  if (sea) {
    try {
      return new Uint8Array(sea.getAsset(seaAssetKey(name)));
    } catch (err) {
      throw new CpioError("EWASM", `this single executable has no asset "${seaAssetKey(name)}" (${(err as Error).message}); add it to sea-config.json's "assets" (packages/cpio/wasm/${name})`);
    }
  }
  const url = new URL(`../wasm/${name}`, import.meta.url);
  try {
    return readFileSync(url);
  } catch (err) {
    throw new CpioError("EWASM", `cannot load the compressor module ${url.pathname}: ${(err as Error).message}; reinstall @fledge/cpio`);
  }
}

/** The compiled module (cached per thread). */
export function wasmModule(name: WasmName): WebAssembly.Module {
  let m = compiled.get(name);
  if (!m) {
    const given = (workerData as { fledgeWasm?: Partial<Record<WasmName, WebAssembly.Module>> } | null)?.fledgeWasm?.[name];
    m = given instanceof WebAssembly.Module ? given : new WebAssembly.Module(loadWasm(name));
    compiled.set(name, m);
  }
  return m;
}

/**
 * The modules this thread has compiled, for a worker it starts: pass as `workerData: { fledgeWasm:
 * wasmModulesForWorker() }` and the worker neither reads nor compiles them again (WebAssembly
 * modules are cloned to workers without copying their code). Inside a single executable this is
 * what lets a worker started from an embedded script find the modules at all.
 */
export function wasmModulesForWorker(names: WasmName[] = ["deflate.wasm", "zstd.wasm", "xz.wasm"]): Partial<Record<WasmName, WebAssembly.Module>> {
  const out: Partial<Record<WasmName, WebAssembly.Module>> = {};
  for (const n of names) out[n] = wasmModule(n);
  return out;
}

/** A fresh instance (its own memory) of a module that imports nothing. */
export function instantiate<T extends WebAssembly.Exports>(name: WasmName): T & { memory: WebAssembly.Memory } {
  return new WebAssembly.Instance(wasmModule(name), {}).exports as T & { memory: WebAssembly.Memory };
}

/** Buffers of one streaming coder inside a module's memory: input, output, and two positions. */
export interface StreamBuffers {
  in: number;
  inSize: number;
  out: number;
  outSize: number;
  /** Two `size_t`s: input position, output position (read and written by the C side). */
  pos: number;
}

export function allocBuffers(e: { alloc(n: number): number }, inSize: number, outSize: number, what: string): StreamBuffers {
  const b = { in: e.alloc(inSize), inSize, out: e.alloc(outSize), outSize, pos: e.alloc(8) };
  if (!b.in || !b.out || !b.pos) throw new CpioError("ECOMPRESS", `${what}: out of WebAssembly memory`);
  return b;
}

export function freeBuffers(e: { free(p: number): void }, b: StreamBuffers): void {
  e.free(b.in);
  e.free(b.out);
  e.free(b.pos);
}

/**
 * Drives one streaming library call (`call()`, over the first `inLen` bytes of `b.in`) until
 * the input is consumed and the output drained, or, when `finishing`, until `done(ret)` (which
 * throws on an error code): each time output is there, it is copied out to `sink` and the output position rewound.
 * The sequence of calls depends only on `inLen` and `finishing`, so the bytes do too.
 */
export function pump(mem: WebAssembly.Memory, b: StreamBuffers, inLen: number, finishing: boolean, call: () => number, done: (ret: number) => boolean, sink: (out: Uint8Array) => void, what: string): void {
  let pos = new Uint32Array(mem.buffer, b.pos, 2);
  pos[0] = 0;
  pos[1] = 0;
  for (;;) {
    const before: number = pos[0]!;
    const ret = call();
    pos = new Uint32Array(mem.buffer, b.pos, 2);
    const produced = pos[1]!;
    if (produced > 0) {
      sink(new Uint8Array(mem.buffer, b.out, produced).slice());
      pos[1] = 0;
    }
    const finished = done(ret); // throws on an error
    // Not finishing: done once the input is consumed and the output buffer was not filled (a
    // full one may mean more output is waiting).
    if (finishing ? finished : pos[0] === inLen && produced < b.outSize) return;
    if (pos[0] === before && produced === 0) {
      // All input consumed, the stream asked to finish, and nothing more comes out: the input
      // ended before the stream did (a decoder's view of a truncated member).
      if (finishing && pos[0] === inLen) throw new CpioError("ETRUNC", `${what}: unexpected end of input (the data is truncated)`);
      throw new CpioError("ECOMPRESS", `${what}: the coder made no progress`);
    }
  }
}

/** The parts, concatenated into one new array. */
export function concatBytes(parts: Uint8Array[]): Uint8Array {
  let n = 0;
  for (const p of parts) n += p.length;
  const out = new Uint8Array(n);
  n = 0;
  for (const p of parts) {
    out.set(p, n);
    n += p.length;
  }
  return out;
}

/** A streaming encoder over a module's memory: any pieces in, one member out. */
export interface StreamingEncoder {
  write(data: Uint8Array, sink: (out: Uint8Array) => void): void;
  /** Ends the member (the encoder can then start another one, see each codec). */
  end(sink: (out: Uint8Array) => void): void;
  /** Frees its memory in the module; the encoder is unusable afterwards. */
  free(): void;
}

/** One whole member of `data` from `enc`. */
export function encodeWhole(enc: StreamingEncoder, data: Uint8Array): Uint8Array {
  const parts: Uint8Array[] = [];
  enc.write(data, (c) => parts.push(c));
  enc.end((c) => parts.push(c));
  return concatBytes(parts);
}

/**
 * One whole member of `data` from an idle encoder of `pool` for `key` (a level or preset), made by
 * `make` when none is idle; `ready` readies a used encoder for its next member. An encoder that
 * failed is freed, never reused.
 */
export function encodePooled<E extends StreamingEncoder>(pool: Map<number, E[]>, key: number, make: () => E, data: Uint8Array, ready?: (enc: E) => void): Uint8Array {
  let list = pool.get(key);
  if (!list) {
    list = [];
    pool.set(key, list);
  }
  const enc = list.pop() ?? make();
  let out: Uint8Array;
  try {
    out = encodeWhole(enc, data);
    ready?.(enc);
  } catch (err) {
    enc.free();
    throw err;
  }
  list.push(enc);
  return out;
}

/** A Node stream around a StreamingEncoder: one member, the encoder freed at the end or on error. */
export class EncoderTransform extends Transform {
  readonly #enc: StreamingEncoder;
  #freed = false;
  constructor(enc: StreamingEncoder) {
    super();
    this.#enc = enc;
  }
  #free(): void {
    if (!this.#freed) this.#enc.free();
    this.#freed = true;
  }
  override _transform(chunk: Buffer, _e: BufferEncoding, cb: TransformCallback): void {
    try {
      this.#enc.write(chunk, (c) => this.push(c));
      cb();
    } catch (err) {
      this.#free();
      cb(err as Error);
    }
  }
  override _flush(cb: TransformCallback): void {
    try {
      this.#enc.end((c) => this.push(c));
      this.#free();
      cb();
    } catch (err) {
      this.#free();
      cb(err as Error);
    }
  }
  override _destroy(err: Error | null, cb: (error: Error | null) => void): void {
    this.#free();
    cb(err);
  }
}

/**
 * The input side shared by the zstd and xz encoders: input is copied into the module's buffer
 * and handed to the library in full `b.inSize` steps (the last one shorter), whatever pieces it
 * arrives in, so the library sees the same calls — and makes the same bytes — for the same input.
 */
export abstract class FeedingEncoder implements StreamingEncoder {
  #fill = 0;
  constructor(
    protected readonly memory: () => WebAssembly.Memory,
    protected readonly b: StreamBuffers,
  ) {}

  /** Hands the first `n` bytes of `b.in` to the library; `end` finishes the member. */
  protected abstract run(n: number, end: boolean, sink: (out: Uint8Array) => void): void;
  abstract free(): void;

  write(data: Uint8Array, sink: (out: Uint8Array) => void): void {
    let p = 0;
    while (p < data.length) {
      const n = Math.min(this.b.inSize - this.#fill, data.length - p);
      new Uint8Array(this.memory().buffer, this.b.in + this.#fill, n).set(data.subarray(p, p + n));
      this.#fill += n;
      p += n;
      if (this.#fill === this.b.inSize) {
        this.#fill = 0;
        this.run(this.b.inSize, false, sink);
      }
    }
  }

  end(sink: (out: Uint8Array) => void): void {
    const n = this.#fill;
    this.#fill = 0;
    this.run(n, true, sink);
  }

  /** Drops buffered input (after an error). */
  protected discard(): void {
    this.#fill = 0;
  }
}
