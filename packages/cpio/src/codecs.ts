/**
 * The built-in segment codecs. Each turns one segment of the newc stream into one complete,
 * independently decodable member, as a pure function of (bytes, level): the implementations are
 * pinned packages (or this package's own code), never the host's or Node's zlib, so the output does
 * not depend on the machine or the Node version.
 */
import { Transform, type TransformCallback } from "node:stream";
import { createRequire } from "node:module";
import { GzipStream, gzipMember } from "./deflate.js";
import { lz4CompressBlock, lz4LegacyCompress, LZ4_LEGACY_BLOCK, LZ4_LEGACY_MAGIC } from "./lz4.js";

export interface SegmentCodec {
  /** Implementation and version; part of every segment cache key. */
  id: string;
  compress(data: Uint8Array, level: number): Uint8Array | Promise<Uint8Array>;
  /** Streaming form giving the same bytes as `compress`, for large entries (constant memory). */
  createStream?(level: number): Transform;
}

const require = createRequire(import.meta.url);
function versionOf(pkg: string): string {
  try {
    return (require(`${pkg}/package.json`) as { version: string }).version;
  } catch {
    return "unknown";
  }
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
export const WASM_SHA256 = { deflate: "6e23639684d4e3a1" } as const;

let zstdMod: typeof import("@toondepauw/node-zstd") | undefined;
let lzmaMod: typeof import("node-liblzma") | undefined;

async function zstd() {
  return (zstdMod ??= await import("@toondepauw/node-zstd"));
}
async function lzma() {
  return (lzmaMod ??= await import("node-liblzma"));
}

export const codecs: Record<string, SegmentCodec> = {
  gzip: {
    // The module's sha256 prefix is part of the id (so of every cache key); a test keeps them in step.
    id: `gzip/libdeflate@1.23+chunks-4MiB/wasm-${WASM_SHA256.deflate}`,
    compress: (data, level) => gzipMember(data, level),
    createStream: (level) => new GzipStream(level),
  },
  zstd: {
    id: `zstd/node-zstd@${versionOf("@toondepauw/node-zstd")}`,
    compress: async (data, level) => {
      const { Encoder } = await zstd();
      return new Encoder(level).encodeSync(Buffer.from(data.buffer, data.byteOffset, data.byteLength));
    },
  },
  xz: {
    id: `xz/node-liblzma@${versionOf("node-liblzma")}`,
    // The kernel's xz decoder verifies CRC32 (CRC64 is optional there), hence --check=crc32.
    compress: async (data, level) => {
      const l = await lzma();
      return l.xzSync(Buffer.from(data.buffer, data.byteOffset, data.byteLength), { preset: level, check: l.check.CRC32, threads: 1 } as never);
    },
    // Needs warmCodec("xz") first (the worker does that before its first job).
    createStream: (level) => {
      if (!lzmaMod) throw new Error("xz codec used before warmCodec('xz')");
      return lzmaMod.createXz({ preset: level, check: lzmaMod.check.CRC32, threads: 1 } as never) as unknown as Transform;
    },
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

/** Loads the optional native/WASM modules early (in a worker, before the first job). */
export async function warmCodec(name: string): Promise<void> {
  if (name === "zstd") await zstd();
  if (name === "xz") await lzma();
}
