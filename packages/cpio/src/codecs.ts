/**
 * The built-in segment codecs. Each turns one segment of the newc stream into one complete,
 * independently decodable member, as a pure function of (bytes, level): the implementations are
 * WebAssembly modules built from pinned sources and committed (`wasm/`, `wasm-src/build.sh`), or
 * this package's own code, never the host's or Node's zlib, so the output does not depend on the
 * machine, the core count or the Node version.
 */
import { Transform, type TransformCallback } from "node:stream";
import { GzipStream, gzipMember } from "./deflate.js";
import { wasmModule } from "./wasm.js";
import { XzStream, xzStream } from "./xz.js";
import { ZstdStream, zstdFrame } from "./zstd.js";
import { lz4CompressBlock, lz4LegacyCompress, LZ4_LEGACY_BLOCK, LZ4_LEGACY_MAGIC } from "./lz4.js";

export interface SegmentCodec {
  /** Implementation and version; part of every segment cache key. */
  id: string;
  compress(data: Uint8Array, level: number): Uint8Array | Promise<Uint8Array>;
  /** Streaming form giving the same bytes as `compress`, for large entries (constant memory). */
  createStream?(level: number): Transform;
}

/** Legacy-frame lz4 as a stream: the same 8 MiB blocks as lz4LegacyCompress. */
class Lz4LegacyStream extends Transform {
  #buf: Uint8Array[] = [];
  #len = 0;
  constructor() {
    super();
    const m = Buffer.alloc(4);
    m.writeUInt32LE(LZ4_LEGACY_MAGIC);
    this.push(m);
  }
  #block(data: Uint8Array): void {
    const b = lz4CompressBlock(data);
    const h = Buffer.alloc(4);
    h.writeUInt32LE(b.length);
    this.push(h);
    this.push(b);
  }
  override _transform(chunk: Buffer, _e: BufferEncoding, cb: TransformCallback): void {
    this.#buf.push(chunk);
    this.#len += chunk.length;
    while (this.#len >= LZ4_LEGACY_BLOCK) {
      const all = Buffer.concat(this.#buf);
      this.#block(all.subarray(0, LZ4_LEGACY_BLOCK));
      const rest = all.subarray(LZ4_LEGACY_BLOCK);
      this.#buf = rest.length ? [rest] : [];
      this.#len = rest.length;
    }
    cb();
  }
  override _flush(cb: TransformCallback): void {
    if (this.#len) this.#block(Buffer.concat(this.#buf));
    cb();
  }
}

/** First 16 hex digits of each committed module's sha256 (wasm/*.wasm.buildinfo). */
export const WASM_SHA256 = { deflate: "6e23639684d4e3a1", zstd: "f9c74a3736b3514a", xz: "1221db999bf927e1" } as const;

export const codecs: Record<string, SegmentCodec> = {
  gzip: {
    // The module's sha256 prefix is part of the id (so of every cache key); a test keeps them in step.
    id: `gzip/libdeflate@1.23+chunks-4MiB/wasm-${WASM_SHA256.deflate}`,
    compress: (data, level) => gzipMember(data, level),
    createStream: (level) => new GzipStream(level),
  },
  zstd: {
    id: `zstd/zstd@1.5.7/wasm-${WASM_SHA256.zstd}`,
    compress: (data, level) => zstdFrame(data, level),
    createStream: (level) => new ZstdStream(level),
  },
  xz: {
    // The kernel's xz decoder verifies CRC32 (CRC64 is optional there), hence --check=crc32.
    id: `xz/liblzma@5.8.1/wasm-${WASM_SHA256.xz}`,
    compress: (data, level) => xzStream(data, level),
    createStream: (level) => new XzStream(level),
  },
  lz4: {
    id: "lz4-legacy/fledge@1",
    compress: (data) => lz4LegacyCompress(data),
    createStream: () => new Lz4LegacyStream(),
  },
  none: {
    id: "none",
    compress: (data) => data,
  },
};

/** Compiles a built-in codec's WebAssembly module early (a worker does it before its first job). */
export async function warmCodec(name: string): Promise<void> {
  const mod = ({ gzip: "deflate.wasm", zstd: "zstd.wasm", xz: "xz.wasm" } as const)[name as "gzip"];
  if (mod) wasmModule(mod);
}
