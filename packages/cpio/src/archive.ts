import { createHash } from "node:crypto";
import { reapStaleTemps, tempName } from "@fledge/safe-fs";
import { close as fsClose, open as fsOpen, read as fsRead } from "node:fs";
import { mkdir, open, rm, type FileHandle } from "node:fs/promises";
import { availableParallelism, tmpdir } from "node:os";
import { join } from "node:path";
import { Readable } from "node:stream";
import { SegmentCache, StatIndex, openCacheSecret, stampOf, verifySegmentFile, type FileDigest, type FileStamp } from "./cache.js";
import { builtinCompressors, type Compressor } from "./compress.js";
import type { CpioEntry } from "./entry.js";
import { CpioError } from "./errors.js";
import { SEGMENT_FILE_HEADER, runFileJob, type CodecRef, type FileJobResult, type JobCodec } from "./jobs.js";
import { HEADER_SIZE, encodeHeader, pad4, sum32, trailerHeader } from "./newc.js";
import { GARBAGE_LIMIT, collectGarbageAbove } from "./memory.js";
import { BufferPool, CodecPool } from "./pool.js";
import { prepareEntries, type PreparedEntry } from "./prepare.js";
import { ZERO_PAD, entryData, entryHeader, fileChunks, magicFor, type WriteOptions } from "./writer.js";

export interface ArchiveOptions extends Omit<WriteOptions, "trailer"> {
  /** A Compressor or a built-in name (`gzip`, `zstd`, `xz`, `lz4`, `none`); default gzip. */
  compressor?: Compressor | string;
  /** Compression level; default the compressor's. */
  level?: number;
  /** Worker threads at most; default the number of CPUs (at most 16), or none for an archive under 8 MiB. 0 compresses on this thread. Started when there is work for them, never more than there are segments (one segment: none). The bytes never depend on it. */
  workers?: number;
  /**
   * Directory of the segment cache and the stat cache; none when undefined. Not used with
   * `none` (storing uncompressed segments costs more than it saves).
   */
  cacheDir?: string;
  /** Read and hash every host file instead of trusting the stat cache (which is then rewritten). */
  verify?: boolean;
  /** Segment sizes in bytes of uncompressed newc (entries are never split). */
  segment?: { min?: number; max?: number };
  /** Called as entries are archived. */
  onProgress?: (entriesDone: number, entriesTotal: number) => void;
  /** @internal How host files are stamped for the stat cache (tests simulate racy timestamps with it). */
  stampFile?: (path: string) => Promise<FileStamp>;
}

export interface ArchiveStats {
  entries: number;
  segments: number;
  /** Segments taken from the cache. */
  cached: number;
  /** Segments compressed in this run. */
  compressed: number;
  /** Cache entries rejected (forged, swapped, damaged or truncated) and recomputed. */
  rejected: number;
  /** Why the cache directory was not used, when it was given but not used. */
  cacheSkipped?: string;
  /** Host files whose digest came from the stat cache (not read to find their segment). */
  statHits: number;
  /** Host files read and hashed to find their segment. */
  hashed: number;
  uncompressedSize: number;
  /** Compressed bytes produced. */
  size: number;
  workers: number;
}

/** Below this many bytes of newc, an archive is compressed on the calling thread unless `workers` says otherwise. */
const AUTO_WORKERS_MIN = 8 << 20;

/** Default segment bounds: big enough that compression loses nothing measurable, small enough to spread over cores and cache finely. */
export const SEGMENT_MIN = 512 << 10;
export const SEGMENT_MAX = 2 << 20;
/** Bumped whenever segmenting or keying changes, so old cache entries are never reused wrongly. */
const SEGMENT_VERSION = "fledge-seg-2";

/** Cut points depend on entry names only (plus the running size), so an edit leaves later cuts alone. */
function cutHere(name: Uint8Array): boolean {
  let h = 0x811c9dc5;
  for (let i = 0; i < name.length; i++) h = Math.imul(h ^ name[i]!, 0x01000193);
  return ((h >>> 0) & 7) === 0;
}

type Result =
  | { kind: "mem"; data: Uint8Array; pooled?: boolean }
  | { kind: "cached"; key: string; plan: MemPlan; stamps: (FileStamp | undefined)[] }
  /** `sha256`: the payload's, as verified or written; checked again as it is copied out (a cache entry can be swapped meanwhile). */
  | { kind: "file"; path: string; size: number; temp: boolean; sha256?: Buffer }
  | { kind: "direct"; entry: FilePlan["entry"] };

export function resolveCompressor(c: Compressor | string | undefined): Compressor {
  if (c === undefined) return builtinCompressors.gzip!;
  if (typeof c !== "string") return c;
  const found = builtinCompressors[c];
  if (!found) throw new CpioError("ECOMPRESSOR", `unknown compression "${c}"; built in: ${Object.keys(builtinCompressors).join(", ")}`);
  return found;
}

/** The level to use; throws a CpioError when the compressor cannot take it. */
export function checkLevel(c: Compressor, level: number | undefined): number {
  const l = level ?? c.defaultLevel ?? 0;
  if (level !== undefined && !c.levels && c.defaultLevel === undefined && level !== 0) throw new CpioError("ELEVEL", `${c.name} has no compression levels (got ${level})`);
  if (!Number.isInteger(l)) throw new CpioError("ELEVEL", `compression level must be an integer, got ${l}`);
  if (c.levels && (l < c.levels.min || l > c.levels.max)) throw new CpioError("ELEVEL", `${c.name} level ${l} is out of range ${c.levels.min}–${c.levels.max}`);
  return l;
}

/** A planned mem segment: whole entries, laid out before a byte is read. */
interface MemPlan {
  kind: "mem";
  items: { e: PreparedEntry; at: number; headerLength: number }[];
  size: number;
  trailer: boolean;
}
type FilePlan = { kind: "file"; entry: PreparedEntry & { source: { kind: "file"; path: string; offset?: number } } };

function headerLength(e: PreparedEntry): number {
  const n = HEADER_SIZE + e.name.length + 1;
  return n + pad4(n);
}

/**
 * Cuts the entries into segments from their names and sizes alone (no data is read), so every
 * segment's layout — and size — is known before it is filled.
 */
function* planSegments(prepared: PreparedEntry[], format: "newc" | "crc", min: number, max: number): Generator<MemPlan | FilePlan> {
  let cur: MemPlan = { kind: "mem", items: [], size: 0, trailer: false };
  for (const e of prepared) {
    const hl = headerLength(e);
    const total = hl + e.size + pad4(e.size);
    const big = e.source.kind === "file" && total > max;
    if (cur.size > 0 && (big || cur.size + total > max || (cur.size >= min && cutHere(e.name)))) {
      yield cur;
      cur = { kind: "mem", items: [], size: 0, trailer: false };
    }
    if (big) {
      yield { kind: "file", entry: e as FilePlan["entry"] };
      continue;
    }
    cur.items.push({ e, at: cur.size, headerLength: hl });
    cur.size += total;
  }
  cur.trailer = true;
  cur.size += trailerHeader(magicFor(format)).length;
  yield cur;
}

/** Scratch byte for end-of-file checks; only the count read matters, so concurrent reads may share it. */
const EOF_PROBE = Buffer.alloc(1);

/** Reads exactly `size` bytes of a host file into buf at `at`; fails if the file is now shorter or longer. */
function readInto(path: string, buf: Buffer, at: number, size: number, entryPath: string, offset?: number): Promise<void> {
  return new Promise((resolve, reject) => {
    const fail = (err: Error, fd?: number) => (fd === undefined ? reject(err) : fsClose(fd, () => reject(err)));
    fsOpen(path, "r", (err, fd) => {
      if (err) return fail(new CpioError("ENOENT", `cannot read ${path} for ${entryPath}: ${err.message}`, entryPath));
      let got = 0;
      const step = (): void => {
        if (got === size) {
          // A range is not checked past its end.
          if (offset !== undefined) {
            fsClose(fd, (err) => (err ? reject(err) : resolve()));
            return;
          }
          // One byte past the end must be EOF: a file that grew would otherwise be cut silently.
          fsRead(fd, EOF_PROBE, 0, 1, size, (err, n) => {
            if (err) return fail(new CpioError("ENOENT", `cannot read ${path} for ${entryPath}: ${err.message}`, entryPath), fd);
            if (n !== 0) return fail(new CpioError("ECHANGED", `${path} (for ${entryPath}) changed size while it was being archived (it grew past ${size} bytes)`, entryPath), fd);
            fsClose(fd, (err) => (err ? reject(err) : resolve()));
          });
          return;
        }
        fsRead(fd, buf, at + got, size - got, (offset ?? 0) + got, (err, n) => {
          if (err) return fail(new CpioError("ENOENT", `cannot read ${path} for ${entryPath}: ${err.message}`, entryPath), fd);
          if (n === 0)
            return fail(
              new CpioError(
                "ECHANGED",
                offset === undefined ? `${path} (for ${entryPath}) changed size while it was being archived (${size} → ${got} bytes)` : `${path} (for ${entryPath}) ends before its range ${offset}+${size}`,
                entryPath,
              ),
              fd,
            );
          got += n;
          step();
        });
      };
      step();
    });
  });
}

/** Host files read (or stamped) at once per segment; enough to keep the thread pool busy, few enough for any fd limit. */
const LANES = 16;

async function eachLimit<T>(items: T[], lanes: number, fn: (item: T, i: number) => Promise<void>): Promise<void> {
  let next = 0;
  const lane = async (): Promise<void> => {
    while (next < items.length) {
      const i = next++;
      await fn(items[i]!, i);
    }
  };
  await Promise.all(Array.from({ length: Math.min(lanes, items.length) }, lane));
}

type Item = MemPlan["items"][number];
const isHostFile = (e: PreparedEntry): e is PreparedEntry & { source: { kind: "file"; path: string; offset?: number } } => e.source.kind === "file" && e.size > 0;
/** The stat cache remembers a host file by path, or by path and range for a range of one. */
const statKey = (e: PreparedEntry & { source: { path: string; offset?: number } }): string => (e.source.offset === undefined ? e.source.path : `${e.source.path}\0${e.source.offset}\0${e.size}`);

/**
 * The bytes of a planned segment, in one pooled buffer the size of the segment: host files are
 * read straight into their place (no per-file buffers, no concatenation), several at a time.
 * Returns the 070702 sums too (zero for newc).
 */
async function fillSegment(plan: MemPlan, format: "newc" | "crc", buffers: BufferPool): Promise<{ buf: Buffer; sums: number[] }> {
  // Not zero-filled: every byte is written below — headers (with their padding), data of exactly
  // the planned size (readInto and entryData fail otherwise), the data's padding, the trailer.
  const buf = await buffers.acquire(plan.size);
  try {
    const files: Item[] = [];
    for (const item of plan.items) {
      const { e, at, headerLength: hl } = item;
      const s = e.source;
      buf.fill(0, at + hl + e.size, at + hl + e.size + pad4(e.size));
      if (s.kind === "file" && e.size > 0) files.push(item);
      else if (s.kind === "bytes") buf.set(s.data, at + hl);
      else if (s.kind === "stream") {
        let pos = at + hl;
        for await (const c of entryData(e)) {
          buf.set(c, pos);
          pos += c.length;
        }
      }
    }
    await eachLimit(files, LANES, ({ e, at, headerLength: hl }) => {
      const src = e.source as { path: string; offset?: number };
      return readInto(src.path, buf, at + hl, e.size, e.path, src.offset);
    });
    // Headers last: a 070702 header carries the sum of the data just read (its length does not depend on it).
    const sums = plan.items.map(({ e, at, headerLength: hl }) => {
      const check = format === "crc" && e.type === "file" && e.size > 0 ? sum32(buf.subarray(at + hl, at + hl + e.size)) : 0;
      encodeHeader(magicFor(format), { ...e, check }, e.name).copy(buf, at);
      return check;
    });
    if (plan.trailer) trailerHeader(magicFor(format)).copy(buf, plan.size - trailerHeader(magicFor(format)).length);
    return { buf, sums };
  } catch (err) {
    buffers.release(buf);
    throw err;
  }
}

const sha256 = (data: Uint8Array): Buffer => createHash("sha256").update(data).digest();

/**
 * A segment's cache key from its headers and the sha256 of each entry's data — never from the data
 * itself, so a segment whose files' digests are known (stat cache) is found without reading them.
 * Headers are self-delimiting and carry each size, so the encoding is unambiguous.
 */
function segmentKey(prefix: string, format: "newc" | "crc", items: { e: PreparedEntry; digest?: Buffer; sum: number }[], trailer: boolean): string {
  const h = createHash("sha256").update(prefix);
  for (const { e, digest, sum } of items) {
    h.update(encodeHeader(magicFor(format), { ...e, check: sum }, e.name));
    if (e.size > 0) h.update(digest!);
  }
  if (trailer) h.update(trailerHeader(magicFor(format)));
  return h.digest("hex");
}

/** sha256 (and the 070702 sum) of a host file, read in large sequential chunks. */
async function hashHostFile(e: PreparedEntry, crc: boolean): Promise<FileDigest> {
  const h = createHash("sha256");
  let sum = 0;
  for await (const c of entryData(e)) {
    h.update(c);
    if (crc) sum = sum32(c, sum);
  }
  return { digest: h.digest(), sum: crc ? sum : undefined };
}

interface OpenCache {
  seg: SegmentCache;
  index: StatIndex;
}

async function openCache(dir: string): Promise<OpenCache | { reason: string }> {
  try {
    await mkdir(join(dir, "tmp"), { recursive: true });
    const s = await openCacheSecret(dir);
    if ("reason" in s) return s;
    return { seg: new SegmentCache(dir, s.secret), index: await StatIndex.open(dir, s.secret) };
  } catch (err) {
    return { reason: (err as Error).message };
  }
}

/**
 * Writes entries as a compressed newc archive, yielding the compressed bytes in order.
 *
 * The newc stream is cut into segments at entry boundaries (never inside an entry: the kernel
 * needs each member to end between entries); each segment becomes one complete member of the
 * chosen format, compressed in worker threads and looked up in / stored to a cache keyed by the
 * segment's headers and its files' content digests (a stat cache gives the digests of unchanged
 * files without reading them). Only the last segment carries TRAILER!!!, so `gzip -dc | cpio -t`
 * sees one archive. Segment boundaries depend on the entries only, so the bytes are the same with
 * any number of workers, with or without a cache.
 */
export function writeArchive(entries: Iterable<CpioEntry> | AsyncIterable<CpioEntry>, opts: ArchiveOptions, stats?: ArchiveStats): AsyncGenerator<Uint8Array> {
  return archiveChunks(entries, opts, stats, false);
}

/**
 * Writes the archive to the file at `path` (created, or truncated; with `flags` "wx" it must not exist) and returns its size and
 * sha256. Unlike `writeArchive`, every chunk is written before the next is made, so buffers are
 * reused instead of handed on: memory stays flat and the bytes are hashed while they are written.
 */
export async function writeArchiveFile(
  entries: Iterable<CpioEntry> | AsyncIterable<CpioEntry>,
  opts: ArchiveOptions,
  path: string,
  stats?: ArchiveStats,
  flags: "w" | "wx" = "w",
): Promise<{ size: number; sha256: string }> {
  // "wx": fail if the file exists (a staged output that must be new).
  const fh = await open(path, flags);
  const hash = createHash("sha256");
  let size = 0;
  try {
    for await (const c of archiveChunks(entries, opts, stats, true)) {
      const written = writeAll(fh, c, size);
      hash.update(c);
      await written;
      size += c.length;
    }
  } finally {
    await fh.close();
  }
  return { size, sha256: hash.digest("hex") };
}

async function writeAll(fh: FileHandle, c: Uint8Array, at: number): Promise<void> {
  let done = 0;
  while (done < c.length) done += (await fh.write(c, done, c.length - done, at + done)).bytesWritten;
}

/** `reuse`: the consumer is done with a chunk when it asks for the next one (so its buffer may be reused). */
async function* archiveChunks(entries: Iterable<CpioEntry> | AsyncIterable<CpioEntry>, opts: ArchiveOptions, stats: ArchiveStats | undefined, reuse: boolean): AsyncGenerator<Uint8Array> {
  const compressor = resolveCompressor(opts.compressor);
  const level = checkLevel(compressor, opts.level);
  const format = opts.format ?? "newc";
  const crc = format === "crc";
  const prepared = await prepareEntries(entries, opts);
  const st: ArchiveStats = stats ?? ({} as ArchiveStats);
  Object.assign(st, { entries: prepared.length, segments: 0, cached: 0, compressed: 0, rejected: 0, statHits: 0, hashed: 0, uncompressedSize: 0, size: 0, workers: 0 });

  if (!compressor.compress) {
    if (!compressor.createStream) throw new CpioError("ECOMPRESSOR", `compressor ${compressor.name} has neither compress() nor createStream()`);
    // A stream-only plugin compressor: one member, on this thread.
    const { writePrepared } = await import("./writer.js");
    const counted = async function* () {
      for await (const c of writePrepared(prepared, format)) {
        st.uncompressedSize += c.length;
        yield c;
      }
    };
    for await (const c of Readable.from(counted()).pipe(compressor.createStream(level))) {
      st.size += (c as Buffer).length;
      yield c as Buffer;
    }
    st.segments = 1;
    st.compressed = 1;
    opts.onProgress?.(prepared.length, prepared.length);
    return;
  }

  const isBuiltin = builtinCompressors[compressor.name] === compressor;
  // `none` copies: no workers, no cache, no hashing, large files streamed straight to the output.
  const identity = isBuiltin && compressor.name === "none";
  const ref: CodecRef = { name: compressor.name, builtin: isBuiltin, module: compressor.workerModule };
  const useWorkers = !identity && (isBuiltin || compressor.workerModule !== undefined);
  const min = opts.segment?.min ?? SEGMENT_MIN;
  const max = Math.max(opts.segment?.max ?? SEGMENT_MAX, min);
  const plan = [...planSegments(prepared, format, min, max)];
  // More workers than segments would only cost start-up; one segment is compressed on this thread,
  // and so is a small archive unless workers were asked for (starting one costs more than it saves).
  const planned = plan.reduce((n, s) => n + (s.kind === "mem" ? s.size : s.entry.size), 0);
  const auto = opts.workers === undefined ? (planned >= AUTO_WORKERS_MIN ? availableParallelism() : 0) : opts.workers;
  const requested = useWorkers ? Math.max(0, Math.min(auto, 16)) : 0;
  const workers = plan.length > 1 ? Math.min(requested, plan.length) : 0;
  st.workers = workers;
  const depth = Math.max(2, workers * 2 + 1);
  const buffers = new BufferPool(max + HEADER_SIZE + 4096, depth);
  // Segments in flight, in order. More than there are segment buffers: while one worker
  // compresses a large file, the others go on with the segments after it (each waiting
  // segment holds only its compressed bytes; the buffers above bound what is being read).
  const lookahead = workers > 0 ? Math.max(depth, workers * 8 + 1) : depth;
  const pool = workers > 0 ? new CodecPool(workers) : undefined;
  let cache: OpenCache | undefined;
  if (opts.cacheDir && !identity) {
    const c = await openCache(opts.cacheDir);
    // An unusable or untrusted cache costs speed, never the build.
    if ("reason" in c) st.cacheSkipped = c.reason;
    else cache = c;
  }
  const tmpBase = cache ? join(opts.cacheDir!, "tmp") : join(tmpdir(), "fledge-segments");
  if (!cache && !identity) await mkdir(tmpBase, { recursive: true });
  // Leftovers of builds killed with -9 (hardening: issue 11): only dead processes' temps.
  if (cache || !identity) await reapStaleTemps(tmpBase);
  const stamp = opts.stampFile ?? stampOf;
  const prefix = `${SEGMENT_VERSION}\0${compressor.id ?? compressor.name}\0${level}\0`;
  const local: JobCodec = { compress: (d, l) => compressor.compress!(d, l), createStream: compressor.createStream?.bind(compressor) };
  const temps = new Set<string>();

  const stampOrFail = (e: PreparedEntry & { source: { path: string } }): Promise<FileStamp> =>
    stamp(e.source.path).catch((err: Error) => {
      throw new CpioError("ENOENT", `cannot read ${e.source.path} for ${e.path}: ${err.message}`, e.path);
    });

  const memSegment = async (s: MemPlan): Promise<Result> => {
    st.uncompressedSize += s.size;
    const n = s.items.length;
    let stamps: (FileStamp | undefined)[] = [];
    if (cache) {
      // Stamp host files first (before any read: the racy rule needs the stamp to predate the content).
      stamps = new Array(n);
      await eachLimit(s.items, LANES, async ({ e }, i) => {
        if (isHostFile(e)) stamps[i] = await stampOrFail(e);
      });
      if (!opts.verify) {
        const known: { e: PreparedEntry; digest?: Buffer; sum: number }[] = [];
        let all = true;
        for (let i = 0; i < n && all; i++) {
          const { e } = s.items[i]!;
          const src = e.source;
          if (isHostFile(e)) {
            const d = cache.index.lookup(statKey(e), stamps[i]!, crc);
            if (d) known.push({ e, digest: d.digest, sum: d.sum ?? 0 });
            else all = false;
          } else if (e.size === 0) known.push({ e, sum: 0 });
          else if (src.kind === "bytes") known.push({ e, digest: sha256(src.data), sum: crc && e.type === "file" ? sum32(src.data) : 0 });
          else all = false;
        }
        if (all) {
          const key = segmentKey(prefix, format, known, s.trailer);
          st.statHits += known.filter((k) => isHostFile(k.e)).length;
          // Its header checked now (so a missing or foreign entry is recomputed in parallel, like
          // any other segment); its payload read and checked when it is written out, into the one
          // reused buffer: a warm build holds no cached segment in memory and makes no garbage.
          if (await cache.seg.has(key)) {
            st.cached++;
            return { kind: "cached", key, plan: s, stamps };
          }
        }
      }
    }
    return computeSegment(s, stamps);
  };

  /** Reads, hashes (with a cache) and compresses a planned segment. */
  const computeSegment = async (s: MemPlan, stamps: (FileStamp | undefined)[]): Promise<Result & { kind: "mem" }> => {
    const { buf: data, sums } = await fillSegment(s, format, buffers);
    let key = "";
    if (cache) {
      const items = s.items.map(({ e, at, headerLength: hl }, i) => {
        const digest = e.size > 0 ? sha256(data.subarray(at + hl, at + hl + e.size)) : undefined;
        if (isHostFile(e)) {
          st.hashed++;
          cache!.index.record(statKey(e), stamps[i]!, { digest: digest!, sum: crc ? sums[i] : undefined });
        }
        return { e, digest, sum: sums[i]! };
      });
      key = segmentKey(prefix, format, items, s.trailer);
      const hit = await cache.seg.get(key);
      if (hit) {
        buffers.release(data);
        st.cached++;
        return { kind: "mem", data: hit };
      }
    }
    if (identity) return { kind: "mem", data, pooled: true };
    let out: Uint8Array;
    if (pool) {
      // The segment buffer is moved to the worker, not copied, and comes back for reuse.
      const r = await pool.run<{ data: Uint8Array; input?: Uint8Array }>({ op: "compress", codec: ref, level, data }, [data.buffer as ArrayBuffer]);
      out = r.data;
      if (r.input) buffers.release(r.input);
      else buffers.discard();
    } else {
      out = await compressor.compress!(data, level);
      if (out.buffer === data.buffer) buffers.discard();
      else buffers.release(data);
    }
    st.compressed++;
    if (cache) await cache.seg.put(key, out).catch(() => {});
    return { kind: "mem", data: out };
  };

  const fileSegment = async (s: FilePlan): Promise<Result> => {
    const e = s.entry;
    st.uncompressedSize += headerLength(e) + e.size + pad4(e.size);
    if (identity) return { kind: "direct", entry: e };
    let key = "";
    let known: FileDigest | undefined;
    if (cache) {
      const fs = await stampOrFail(e);
      known = opts.verify ? undefined : cache.index.lookup(statKey(e), fs, crc);
      if (known) {
        st.statHits++;
        key = segmentKey(prefix, format, [{ e, digest: known.digest, sum: known.sum ?? 0 }], false);
        const hit = await cache.seg.verifyEntry(key);
        if (hit) {
          st.cached++;
          return { kind: "file", path: cache.seg.path(key), size: hit.size, temp: false, sha256: hit.payloadSha256 };
        }
      } else {
        known = await hashHostFile(e, crc);
        st.hashed++;
        cache.index.record(statKey(e), fs, known);
        key = segmentKey(prefix, format, [{ e, digest: known.digest, sum: known.sum ?? 0 }], false);
        const hit = await cache.seg.verifyEntry(key);
        if (hit) {
          st.cached++;
          return { kind: "file", path: cache.seg.path(key), size: hit.size, temp: false, sha256: hit.payloadSha256 };
        }
      }
    }
    const header = known ? encodeHeader(magicFor(format), { ...e, check: known.sum ?? 0 }, e.name) : await entryHeader(e, format);
    const out = cache ? cache.seg.tempPath(key) : join(tmpBase, tempName());
    temps.add(out);
    // With a cache the worker checks that the file still has the content its key was made from.
    const job = { op: "file" as const, codec: ref, level, header, entryPath: e.path, file: e.source.path, offset: e.source.offset, size: e.size, out, expect: known?.digest.toString("hex") };
    const r = pool ? await pool.run<FileJobResult>(job) : await runFileJob(local, { ...job, id: 0 });
    st.compressed++;
    if (cache) {
      const sha256 = Buffer.from(r.payloadSha256, "hex");
      await cache.seg.adopt(key, out, r.size, sha256);
      temps.delete(out);
      return { kind: "file", path: cache.seg.path(key), size: r.size, temp: false, sha256 };
    }
    return { kind: "file", path: out, size: r.size, temp: true };
  };

  const queue: { p: Promise<Result>; entries: number }[] = [];
  let done = 0;
  /** The one read buffer of large files and segment files going to the output, when the consumer lets it be reused. */
  let scratch: Buffer | undefined;
  const scratchBuffer = (): Buffer => {
    scratch ??= Buffer.allocUnsafeSlow(DIRECT_CHUNK);
    return scratch;
  };
  /** Bytes of finished segments waiting in the queue to be written out. */
  let held = 0;
  try {
    /** A cached segment read and verified (HMAC, key, length, payload sha256) right before it is written out. */
    const materialize = async (r: Result): Promise<Exclude<Result, { kind: "cached" }>> => {
      if (r.kind !== "cached") return r;
      const into = (size: number): Promise<Buffer> => Promise.resolve(reuse && size <= DIRECT_CHUNK ? scratchBuffer().subarray(0, size) : Buffer.allocUnsafe(size));
      const hit = await cache!.seg.get(r.key, into);
      if (hit) return { kind: "mem", data: hit };
      // Removed, damaged or swapped since its header was checked: made again, here.
      st.cached--;
      return computeSegment(r.plan, r.stamps);
    };
    const emit = async function* (item: { p: Promise<Result>; entries: number }): AsyncGenerator<Uint8Array> {
      const r0 = await item.p;
      if (r0.kind === "mem") held -= r0.data.length;
      const r = await materialize(r0);
      st.segments++;
      if (r.kind === "mem") {
        st.size += r.data.length;
        if (r.pooled && reuse) {
          yield r.data;
          buffers.release(r.data);
        } else {
          // A pooled buffer handed to the consumer is theirs now: the pool makes a new one.
          if (r.pooled) buffers.discard();
          yield r.data;
        }
      } else if (r.kind === "direct") {
        const header = await entryHeader(r.entry, format);
        st.size += header.length;
        yield header;
        for await (const c of fileChunks(r.entry.source.path, r.entry.size, r.entry.path, DIRECT_CHUNK, reuse ? scratchBuffer() : undefined, r.entry.source.offset)) {
          st.size += c.length;
          yield c;
        }
        const p = pad4(r.entry.size);
        if (p) {
          st.size += p;
          yield ZERO_PAD.subarray(0, p);
        }
      } else {
        const fh = await open(r.path, "r");
        // A cache entry is shared: between its check and this copy it may have been replaced or
        // rewritten. Its bytes are hashed on the way out and must be the ones checked; otherwise
        // the build fails (its output is never moved into place).
        const hash = r.sha256 ? createHash("sha256") : undefined;
        try {
          let pos = 0;
          while (pos < r.size) {
            const buf = reuse ? scratchBuffer().subarray(0, Math.min(DIRECT_CHUNK, r.size - pos)) : Buffer.allocUnsafe(Math.min(DIRECT_CHUNK, r.size - pos));
            const { bytesRead } = await fh.read(buf, 0, buf.length, SEGMENT_FILE_HEADER + pos);
            if (bytesRead === 0) throw new CpioError("ECACHE", `segment file ${r.path} is shorter than expected`);
            pos += bytesRead;
            st.size += bytesRead;
            const chunk = bytesRead === buf.length ? buf : buf.subarray(0, bytesRead);
            hash?.update(chunk);
            if (hash && pos >= r.size && !hash.digest().equals(r.sha256!)) {
              throw new CpioError("ECACHE", `segment cache entry ${r.path} changed while it was copied into the artifact (another process wrote to the cache directory); nothing was written: build again`);
            }
            yield chunk;
          }
        } finally {
          await fh.close();
          if (r.temp) {
            await rm(r.path, { force: true });
            temps.delete(r.path);
          }
        }
      }
      done += item.entries;
      collectGarbageAbove(GARBAGE_LIMIT);
      opts.onProgress?.(Math.min(done, prepared.length), prepared.length);
    };
    for (const s of plan) {
      const p = s.kind === "mem" ? memSegment(s) : fileSegment(s);
      p.then(
        (r) => {
          if (r.kind === "mem") held += r.data.length;
        },
        () => {},
      );
      queue.push({ p, entries: s.kind === "mem" ? s.items.length : 1 });
      while (queue.length >= depth && (queue.length >= lookahead || held >= HELD_MAX)) yield* emit(queue.shift()!);
    }
    while (queue.length) yield* emit(queue.shift()!);
    if (cache) {
      st.rejected = cache.seg.rejected;
      await cache.index.save().catch(() => {});
    }
  } finally {
    await Promise.allSettled(queue.map((q) => q.p));
    await pool?.close();
    for (const t of temps) await rm(t, { force: true }).catch(() => {});
  }
}

/** Finished segments waiting behind a slower one are held in memory up to this many bytes (beyond the 2 × workers + 1 always allowed). */
const HELD_MAX = 8 << 20;

/** Reads of a large file or segment going straight to the output. */
const DIRECT_CHUNK = 4 << 20;

/** Convenience: the whole compressed archive in memory (tests, small archives). */
export async function archiveToBuffer(entries: Iterable<CpioEntry> | AsyncIterable<CpioEntry>, opts: ArchiveOptions, stats?: ArchiveStats): Promise<Buffer> {
  const parts: Uint8Array[] = [];
  for await (const c of writeArchive(entries, opts, stats)) parts.push(c);
  return Buffer.concat(parts);
}

/** Verifies a segment file (exported for tests of cache damage). */
export { verifySegmentFile };
