import type { Transform } from "node:stream";
import { codecs } from "./codecs.js";

/**
 * A named compressor that turns the newc stream into something the kernel unpacks. fledge cuts the
 * stream into segments at entry boundaries and calls `compress` once per segment, in worker
 * threads and with a content-keyed cache; the members are concatenated, which the kernel's
 * initramfs unpacker reads member after member.
 *
 * Plugins register their own under `hooks.compressor.for(name)`. A compressor with only
 * `createStream` still works, without parallelism or caching.
 */
export interface Compressor {
  name: string;
  /** File name suffix, e.g. ".gz". */
  extension: string;
  defaultLevel?: number;
  /** Accepted levels (inclusive); a level outside is refused before anything is written. */
  levels?: { min: number; max: number };
  /** Implementation and version (e.g. `gzip/libdeflate@1.23…`); part of the segment cache key. */
  id?: string;
  /**
   * Compresses one segment into one complete member the kernel decodes on its own. Must be a pure
   * function of (data, level): that is what makes the artifact reproducible.
   */
  compress?(data: Uint8Array, level: number): Uint8Array | Promise<Uint8Array>;
  /** Streaming compressor (whole archive, or one large segment: same bytes as `compress`). */
  createStream?(level?: number): Transform;
  /**
   * ES module (file URL or absolute path) that exports this compressor, either as
   * `compressors[name]` or as `default`, for use inside worker threads. Without it a plugin
   * compressor runs on the main thread.
   */
  workerModule?: string;
  /** Set on fledge's own compressors (the worker threads have them built in). */
  readonly builtin?: boolean;
}

function builtin(name: string, extension: string, defaultLevel: number | undefined, levels: { min: number; max: number } | undefined): Compressor {
  const c = codecs[name]!;
  return {
    name,
    extension,
    defaultLevel,
    levels,
    id: c.id,
    builtin: true,
    compress: (data, level) => c.compress(data, level ?? defaultLevel ?? 0),
    createStream: c.createStream ? (level) => c.createStream!(level ?? defaultLevel ?? 0) : undefined,
  };
}

/**
 * gzip level 6 by default: libdeflate −6 is within 1% of `gzip -9` on the benchmark's trees at
 * about 3x its speed (see the README).
 */
export const gzip: Compressor = builtin("gzip", ".gz", 6, { min: 1, max: 9 });
/** zstd level 3 (the zstd CLI's default); the kernel's decoder accepts up to 19 comfortably. */
export const zstd: Compressor = builtin("zstd", ".zst", 3, { min: 1, max: 19 });
/** xz with --check=crc32, as the kernel requires. */
export const xz: Compressor = builtin("xz", ".xz", 6, { min: 0, max: 9 });
/** LZ4 legacy frame (`lz4 -l`): the kernel rejects the modern frame. One speed, no levels. */
export const lz4: Compressor = builtin("lz4", ".lz4", undefined, undefined);
export const none: Compressor = builtin("none", "", undefined, undefined);

export const builtinCompressors: Record<string, Compressor> = { gzip, zstd, xz, lz4, none };
