import { createHash } from "node:crypto";
import { reapStaleTemps, tempName } from "@fledge/safe-fs";
import { close as fsClose, open as fsOpen, read as fsRead } from "node:fs";
import { mkdir, open, rm } from "node:fs/promises";
import { availableParallelism, tmpdir } from "node:os";
import { join } from "node:path";
import { Readable } from "node:stream";
import { SegmentCache, verifySegmentFile } from "./cache.js";
import { builtinCompressors, type Compressor } from "./compress.js";
import type { CpioEntry } from "./entry.js";
import { CpioError } from "./errors.js";
import { SEGMENT_FILE_HEADER, runFileJob, type CodecRef, type JobCodec } from "./jobs.js";
import { HEADER_SIZE, encodeHeader, pad4, sum32, trailerHeader } from "./newc.js";
import { CodecPool } from "./pool.js";
import { prepareEntries, type PreparedEntry } from "./prepare.js";
import { ZERO_PAD, entryData, entryHeader, magicFor, type WriteOptions } from "./writer.js";

export interface ArchiveOptions extends Omit<WriteOptions, "trailer"> {
  /** A Compressor or a built-in name (`gzip`, `zstd`, `xz`, `lz4`, `none`); default gzip. */
  compressor?: Compressor | string;
  /** Compression level; default the compressor's. */
  level?: number;
  /** Worker threads at most; default the number of CPUs (at most 16). 0 compresses on this thread. Started when there is work for them, never more than there are segments (one segment: none). The bytes never depend on it. */
  workers?: number;
  /** Directory of the content-keyed segment cache; none when undefined. */
  cacheDir?: string;
  /** Segment sizes in bytes of uncompressed newc (entries are never split). */
  segment?: { min?: number; max?: number };
  /** Called as entries are archived. */
  onProgress?: (entriesDone: number, entriesTotal: number) => void;
}

export interface ArchiveStats {
  entries: number;
  segments: number;
  /** Segments taken from the cache. */
  cached: number;
  /** Segments compressed in this run. */
  compressed: number;
  uncompressedSize: number;
  /** Compressed bytes produced. */
  size: number;
  workers: number;
}

/** Default segment bounds: big enough that compression loses nothing measurable, small enough to spread over cores and cache finely. */
export const SEGMENT_MIN = 512 << 10;
export const SEGMENT_MAX = 2 << 20;
/** Bumped whenever segmenting changes, so old cache entries are never reused wrongly. */
const SEGMENT_VERSION = "fledge-seg-1";

/** Cut points depend on entry names only (plus the running size), so an edit leaves later cuts alone. */
function cutHere(name: Uint8Array): boolean {
  let h = 0x811c9dc5;
  for (let i = 0; i < name.length; i++) h = Math.imul(h ^ name[i]!, 0x01000193);
  return ((h >>> 0) & 7) === 0;
}

type Result = { kind: "mem"; data: Uint8Array } | { kind: "file"; path: string; size: number; temp: boolean };

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
  if (level !== undefined && !c.levels && c.defaultLevel === undefined && level !== 0)
    throw new CpioError("ELEVEL", `${c.name} has no compression levels (got ${level})`);
  if (!Number.isInteger(l)) throw new CpioError("ELEVEL", `compression level must be an integer, got ${l}`);
  if (c.levels && (l < c.levels.min || l > c.levels.max))
    throw new CpioError("ELEVEL", `${c.name} level ${l} is out of range ${c.levels.min}–${c.levels.max}`);
  return l;
}

/** A planned mem segment: whole entries, laid out before a byte is read. */
interface MemPlan {
  kind: "mem";
  items: { e: PreparedEntry; at: number; headerLength: number }[];
  size: number;
  trailer: boolean;
}
type FilePlan = { kind: "file"; entry: PreparedEntry & { source: { kind: "file"; path: string } } };

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
function readInto(path: string, buf: Buffer, at: number, size: number, entryPath: string): Promise<void> {
  return new Promise((resolve, reject) => {
    const fail = (err: Error, fd?: number) => (fd === undefined ? reject(err) : fsClose(fd, () => reject(err)));
    fsOpen(path, "r", (err, fd) => {
      if (err) return fail(new CpioError("ENOENT", `cannot read ${path} for ${entryPath}: ${err.message}`, entryPath));
      let got = 0;
      const step = (): void => {
        if (got === size) {
          // One byte past the end must be EOF: a file that grew would otherwise be cut silently.
          return fsRead(fd, EOF_PROBE, 0, 1, size, (err, n) => {
            if (err) return fail(new CpioError("ENOENT", `cannot read ${path} for ${entryPath}: ${err.message}`, entryPath), fd);
            if (n !== 0) return fail(new CpioError("ECHANGED", `${path} (for ${entryPath}) changed size while it was being archived (it grew past ${size} bytes)`, entryPath), fd);
            fsClose(fd, (err) => (err ? reject(err) : resolve()));
          });
        }
        fsRead(fd, buf, at + got, size - got, got, (err, n) => {
          if (err) return fail(new CpioError("ENOENT", `cannot read ${path} for ${entryPath}: ${err.message}`, entryPath), fd);
          if (n === 0) return fail(new CpioError("ECHANGED", `${path} (for ${entryPath}) changed size while it was being archived (${size} → ${got} bytes)`, entryPath), fd);
          got += n;
          step();
        });
      };
      step();
    });
  });
}

/** Host files read at once per segment; enough to keep the thread pool busy, few enough for any fd limit. */
const READ_LANES = 16;

/**
 * The bytes of a planned segment, in one buffer the size of the segment: host files are read
 * straight into their place (no per-file buffers, no concatenation), several at a time.
 */
async function fillSegment(plan: MemPlan, format: "newc" | "crc"): Promise<Buffer> {
  // Not zero-filled: every byte is written below — headers (with their padding), data of exactly
  // the planned size (readInto and entryData fail otherwise), the data's padding, the trailer.
  const buf = Buffer.allocUnsafeSlow(plan.size);
  const files: MemPlan["items"] = [];
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
  let next = 0;
  const lane = async (): Promise<void> => {
    while (next < files.length) {
      const { e, at, headerLength: hl } = files[next++]!;
      await readInto((e.source as { path: string }).path, buf, at + hl, e.size, e.path);
    }
  };
  await Promise.all(Array.from({ length: Math.min(READ_LANES, files.length) }, lane));
  // Headers last: a 070702 header carries the sum of the data just read (its length does not depend on it).
  for (const { e, at, headerLength: hl } of plan.items) {
    const check = format === "crc" && e.type === "file" && e.size > 0 ? sum32(buf.subarray(at + hl, at + hl + e.size)) : 0;
    encodeHeader(magicFor(format), { ...e, check }, e.name).copy(buf, at);
  }
  if (plan.trailer) trailerHeader(magicFor(format)).copy(buf, plan.size - trailerHeader(magicFor(format)).length);
  return buf;
}

async function hashFileSegment(prefix: string, header: Buffer, entry: FilePlan["entry"]): Promise<{ key: string; content: string }> {
  const content = createHash("sha256");
  content.update(header);
  for await (const c of entryData(entry)) content.update(c);
  content.update(ZERO_PAD.subarray(0, pad4(entry.size)));
  const hex = content.digest("hex");
  return { key: createHash("sha256").update(prefix).update(hex).digest("hex"), content: hex };
}

/**
 * Writes entries as a compressed newc archive, yielding the compressed bytes in order.
 *
 * The newc stream is cut into segments at entry boundaries (never inside an entry: the kernel
 * needs each member to end between entries); each segment becomes one complete member of the
 * chosen format, compressed in worker threads and looked up in / stored to a content-keyed cache.
 * Only the last segment carries TRAILER!!!, so `gzip -dc | cpio -t` sees one archive. Segment
 * boundaries depend on the entries only, so the bytes are the same with any number of workers.
 */
export async function* writeArchive(entries: Iterable<CpioEntry> | AsyncIterable<CpioEntry>, opts: ArchiveOptions, stats?: ArchiveStats): AsyncGenerator<Uint8Array> {
  const compressor = resolveCompressor(opts.compressor);
  const level = checkLevel(compressor, opts.level);
  const format = opts.format ?? "newc";
  const prepared = await prepareEntries(entries, opts);
  const st: ArchiveStats = stats ?? ({} as ArchiveStats);
  Object.assign(st, { entries: prepared.length, segments: 0, cached: 0, compressed: 0, uncompressedSize: 0, size: 0, workers: 0 });

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
  const ref: CodecRef = { name: compressor.name, builtin: isBuiltin, module: compressor.workerModule };
  const useWorkers = isBuiltin || compressor.workerModule !== undefined;
  const min = opts.segment?.min ?? SEGMENT_MIN;
  const max = Math.max(opts.segment?.max ?? SEGMENT_MAX, min);
  const plan = [...planSegments(prepared, format, min, max)];
  // More workers than segments would only cost start-up; one segment is compressed on this thread.
  const requested = useWorkers ? Math.max(0, Math.min(opts.workers ?? availableParallelism(), 16)) : 0;
  const workers = plan.length > 1 ? Math.min(requested, plan.length) : 0;
  st.workers = workers;
  const pool = workers > 0 ? new CodecPool(workers) : undefined;
  let cache = opts.cacheDir ? new SegmentCache(opts.cacheDir) : undefined;
  let tmpBase = join(tmpdir(), "fledge-segments");
  if (cache) {
    try {
      await mkdir(join(opts.cacheDir!, "tmp"), { recursive: true });
      tmpBase = join(opts.cacheDir!, "tmp");
    } catch {
      // An unwritable cache costs speed, never the build.
      cache = undefined;
    }
  }
  await mkdir(tmpBase, { recursive: true });
  await reapStaleTemps(tmpBase); // leftovers of builds killed with -9 (hardening: issue 11)
  const prefix = `${SEGMENT_VERSION}\0${compressor.id ?? compressor.name}\0${level}\0`;
  const local: JobCodec = { compress: (d, l) => compressor.compress!(d, l), createStream: compressor.createStream?.bind(compressor) };
  const puts: Promise<void>[] = [];
  const temps = new Set<string>();

  const compressSegment = async (s: MemPlan | FilePlan): Promise<Result> => {
    if (s.kind === "mem") {
      const data = await fillSegment(s, format);
      st.uncompressedSize += data.length;
      // The key is only needed to use the cache: without one, the bytes are not hashed at all.
      const key = cache ? createHash("sha256").update(prefix).update(data).digest("hex") : "";
      const hit = await cache?.get(key);
      if (hit) {
        st.cached++;
        return { kind: "mem", data: hit };
      }
      let out: Uint8Array;
      if (pool) {
        // fillSegment's buffer owns its memory, so it is moved to the worker, not copied.
        out = (await pool.run<{ data: Uint8Array }>({ op: "compress", codec: ref, level, data }, [data.buffer as ArrayBuffer])).data;
      } else out = await compressor.compress!(data, level);
      st.compressed++;
      if (cache) puts.push(cache.put(key, out).catch(() => {}));
      return { kind: "mem", data: out };
    }
    const header = await entryHeader(s.entry, format);
    st.uncompressedSize += header.length + s.entry.size + pad4(s.entry.size);
    const { key, content } = await hashFileSegment(prefix, header, s.entry);
    if (cache) {
      const size = await cache.verify(key);
      if (size !== undefined) {
        st.cached++;
        return { kind: "file", path: cache.path(key), size, temp: false };
      }
    }
    const out = cache ? cache.tempPath(key) : join(tmpBase, tempName(key));
    temps.add(out);
    const job = { op: "file" as const, codec: ref, level, header, entryPath: s.entry.path, file: s.entry.source.path, size: s.entry.size, out, expect: content };
    const r = pool ? await pool.run<{ size: number }>(job) : await runFileJob(local, { ...job, id: 0 });
    st.compressed++;
    if (cache) {
      await cache.adopt(key, out);
      temps.delete(out);
      return { kind: "file", path: cache.path(key), size: r.size, temp: false };
    }
    return { kind: "file", path: out, size: r.size, temp: true };
  };

  const depth = Math.max(2, workers * 2 + 1);
  const queue: { p: Promise<Result>; entries: number }[] = [];
  let done = 0;
  try {
    const emit = async function* (item: { p: Promise<Result>; entries: number }): AsyncGenerator<Uint8Array> {
      const r = await item.p;
      st.segments++;
      if (r.kind === "mem") {
        st.size += r.data.length;
        yield r.data;
      } else {
        const fh = await open(r.path, "r");
        try {
          const buf = Buffer.allocUnsafe(1 << 20);
          let pos = 0;
          while (pos < r.size) {
            const { bytesRead } = await fh.read(buf, 0, Math.min(buf.length, r.size - pos), SEGMENT_FILE_HEADER + pos);
            if (bytesRead === 0) throw new CpioError("ECACHE", `segment file ${r.path} is shorter than expected`);
            pos += bytesRead;
            st.size += bytesRead;
            yield Buffer.from(buf.subarray(0, bytesRead));
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
      opts.onProgress?.(Math.min(done, prepared.length), prepared.length);
    };
    for (const s of plan) {
      const p = compressSegment(s);
      p.catch(() => {});
      queue.push({ p, entries: s.kind === "mem" ? s.items.length : 1 });
      while (queue.length >= depth) yield* emit(queue.shift()!);
    }
    while (queue.length) yield* emit(queue.shift()!);
    await Promise.all(puts);
  } finally {
    await Promise.allSettled(queue.map((q) => q.p));
    await pool?.close();
    for (const t of temps) await rm(t, { force: true }).catch(() => {});
  }
}

/** Convenience: the whole compressed archive in memory (tests, small archives). */
export async function archiveToBuffer(entries: Iterable<CpioEntry> | AsyncIterable<CpioEntry>, opts: ArchiveOptions, stats?: ArchiveStats): Promise<Buffer> {
  const parts: Uint8Array[] = [];
  for await (const c of writeArchive(entries, opts, stats)) parts.push(c);
  return Buffer.concat(parts);
}

/** Verifies a segment file (exported for tests of cache damage). */
export { verifySegmentFile };
