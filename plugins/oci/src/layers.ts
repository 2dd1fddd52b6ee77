import { constants, createReadStream, existsSync } from "node:fs";
import { open, rm, type FileHandle } from "node:fs/promises";
import { createHash } from "node:crypto";
import { Readable } from "node:stream";
import type { ContentCache } from "@fledge/fetch";
import { decompressor, sniffCompression } from "./decompress.js";
import { OciError } from "./errors.js";
import { TarIndexer, type TarEntry } from "./tar.js";

/** A cached layer tar's mtime (its last use) is refreshed when it is at least this old. */
export const TOUCH_AFTER_MS = 60 * 60 * 1000;

/** A layer as the image describes it. */
export interface LayerSpec {
  /**
   * Digest of the blob as stored (`sha256:<hex>`); equal to the diffID for an uncompressed layer.
   * Undefined when the source does not say (a classic `docker save` layer): then only the diffID is checked.
   */
  digest?: string;
  /** Size of the blob from its descriptor, when known. */
  size?: number;
  /** Digest of the uncompressed tar (`sha256:<hex>`), from the image config's rootfs.diff_ids. */
  diffID: string;
  mediaType?: string;
  /** Where a docker-archive keeps it (the member name). */
  member?: string;
}

/** An uncompressed layer tar, verified against its diffID, open for reading. */
export interface OpenLayer {
  diffID: string;
  /** Bytes of the uncompressed tar. */
  size: number;
  entries: TarEntry[];
  /**
   * A path that reads the very bytes that were verified: `/proc/self/fd/<n>` (`/dev/fd/<n>` off
   * Linux) of the open handle, so swapping the cache file afterwards changes nothing.
   */
  readPath: string;
  handle: FileHandle;
  /** True when it came from the cache without decompressing anything. */
  cached: boolean;
  /** Set once the cache closed the handle (after the build). */
  closed?: boolean;
  /** Opens the cached layer again, verified in full against its diffID (reads after the build). */
  reopen?: () => Promise<FileHandle>;
}

/** The cap on what an image unpacks to, shared by its layers. */
export interface UnpackBudget {
  /** Bytes of uncompressed layer tars allowed in total. */
  cap: number;
  used: number;
  /** The image, for messages. */
  image: string;
  /** How to raise the cap, for the message. */
  raise: string;
  /** Members allowed in total (all layers), and how many were read so far. */
  maxEntries?: number;
  entries?: number;
}

function countEntry(b: UnpackBudget, label: string): void {
  b.entries = (b.entries ?? 0) + 1;
  if (b.maxEntries !== undefined && b.entries > b.maxEntries)
    throw new OciError("FLEDGE_OCI_TOO_BIG", `${b.image} has more than ${b.maxEntries} members (the cap was passed in ${label}); nothing was kept`, {
      hint: `if the image is genuine (not a decompression bomb), raise the cap: ${b.raise.replace(/max_unpacked_size = "16GiB"/g, "max_entries = 5000000")}`,
    });
}

const hexOf = (digest: string) => digest.replace(/^sha256:/, "");
const CHUNK = 1 << 20;

function fdPath(fd: number): string {
  return existsSync("/proc/self/fd") ? `/proc/self/fd/${fd}` : `/dev/fd/${fd}`;
}

function overBudget(b: UnpackBudget, layer: string): OciError {
  return new OciError("FLEDGE_OCI_TOO_BIG", `${b.image} unpacks to more than ${b.cap} bytes (the cap was passed in ${layer}); nothing was kept`, {
    hint: `if the image is genuine (not a decompression bomb), raise the cap: ${b.raise}`,
  });
}

/** Owned by this user and writable by nobody else: bytes verified through it cannot change under us. */
function trusted(st: { uid: number; mode: number }): boolean {
  const euid = process.geteuid?.();
  return (euid === undefined || st.uid === euid || euid === 0) && (st.mode & 0o022) === 0;
}

/**
 * Unpacked layers in fledge's content-addressed download cache, keyed by diffID: the file
 * `sha256/<diffID hex>` *is* the uncompressed layer tar, so `fledge cache ls | prune` see it like
 * any download, and verifying a hit is one sha256 pass (no decompression). A hit is used only
 * after that pass matches the key; a mismatch is a miss (the entry is replaced). Reads go
 * through the handle that was verified.
 */
export class LayerCache {
  readonly #open = new Set<OpenLayer>();

  constructor(readonly cache: ContentCache) {}

  /** The verified, indexed layer from the cache, or undefined (missing or not matching its key). */
  async get(diffID: string, budget: UnpackBudget, label: string): Promise<OpenLayer | undefined> {
    const hex = hexOf(diffID);
    const path = this.cache.pathFor(hex);
    let fh: FileHandle;
    try {
      fh = await open(path, constants.O_RDONLY | (constants.O_NOFOLLOW ?? 0));
    } catch {
      return undefined;
    }
    try {
      const st = await fh.stat();
      if (!st.isFile()) {
        await fh.close();
        return undefined;
      }
      if (budget.used + st.size > budget.cap) throw overBudget(budget, label);
      if (!trusted(st)) {
        // Someone else can write this file: copy it privately while verifying, and read the copy.
        const copy = await this.#privateCopy(fh, diffID, budget, label);
        await fh.close();
        return copy;
      }
      const entries: TarEntry[] = [];
      const before = budget.entries ?? 0;
      const indexer = new TarIndexer((e) => {
        countEntry(budget, label);
        entries.push(e);
      });
      const hash = createHash("sha256");
      let size = 0;
      budget.used += st.size; // reserved now: layers verified at once share the cap
      try {
        for await (const c of createReadStream("", { fd: fh, start: 0, autoClose: false, highWaterMark: CHUNK })) {
          hash.update(c as Buffer);
          size += (c as Buffer).length;
          await indexer.write(c as Buffer);
        }
        await indexer.end();
      } catch (err) {
        indexer.destroy();
        budget.entries = before;
        budget.used -= st.size;
        if ((err as OciError).code === "FLEDGE_OCI_TOO_BIG") throw err;
        // Unreadable or not a tar: not what the key promises, so a miss.
        await fh.close();
        await rm(path, { force: true });
        return undefined;
      }
      if (hash.digest("hex") !== hex || size !== st.size) {
        budget.entries = before;
        budget.used -= st.size;
        await fh.close();
        await rm(path, { force: true }); // a tampered or damaged entry never serves again
        return undefined;
      }
      // The last use, for `fledge cache prune --older-than`, to the hour: touching on every hit would
      // change the tar's mtime and ctime each build, and the archive's stat cache (stamp: mtime and
      // ctime) would then read and hash every file of the image again on every warm rebuild.
      if (Date.now() - st.mtimeMs >= TOUCH_AFTER_MS) await this.cache.touch(hex);
      return this.#track({ diffID, size, entries, readPath: fdPath(fh.fd), handle: fh, cached: true });
    } catch (err) {
      await fh.close().catch(() => {});
      throw err;
    }
  }

  /** Copies an entry another user could change into a private, already-unlinked temp, verifying it. */
  async #privateCopy(src: FileHandle, diffID: string, budget: UnpackBudget, label: string): Promise<OpenLayer | undefined> {
    const temp = await this.cache.tempPath();
    const fh = await open(temp, "wx+", 0o600);
    await rm(temp, { force: true }); // the handle keeps it alive; nothing is left if we die
    try {
      const r = await this.#ingest(createReadStream("", { fd: src, start: 0, autoClose: false, highWaterMark: CHUNK }), fh, budget, label);
      if (r.hex !== hexOf(diffID)) {
        budget.used -= r.size;
        await fh.close();
        return undefined;
      }
      return this.#track({ diffID, size: r.size, entries: r.entries, readPath: fdPath(fh.fd), handle: fh, cached: true });
    } catch (err) {
      await fh.close();
      if ((err as OciError).code === "FLEDGE_OCI_TOO_BIG") throw err;
      return undefined;
    }
  }

  /**
   * Streams the tar into `fh` while hashing and indexing it. Returns what it read and the tar's
   * sha256; the caller compares it with the diffID. Throws on a read, tar or size-cap error.
   */
  async #ingest(tar: AsyncIterable<Uint8Array>, fh: FileHandle, budget: UnpackBudget, label: string): Promise<{ size: number; entries: TarEntry[]; hex: string }> {
    const entries: TarEntry[] = [];
    const entriesBefore = budget.entries ?? 0;
    const indexer = new TarIndexer((e) => {
      countEntry(budget, label);
      entries.push(e);
    });
    const hash = createHash("sha256");
    let size = 0;
    try {
      for await (const c of tar) {
        size += c.length;
        // Counted as it arrives, so layers unpacked at once share the cap.
        budget.used += c.length;
        if (budget.used > budget.cap) throw overBudget(budget, label);
        hash.update(c);
        await fh.write(c, 0, c.length, size - c.length);
        await indexer.write(c);
      }
      await indexer.end();
    } catch (err) {
      indexer.destroy();
      budget.used -= size;
      budget.entries = entriesBefore;
      throw err;
    }
    return { size, entries, hex: hash.digest("hex") };
  }

  #diffMismatch(diffID: string, hex: string, label: string): OciError {
    return new OciError("FLEDGE_OCI_DIGEST", `${label}: the uncompressed layer does not match the diffID in the image config\n  expected ${diffID}\n  actual   sha256:${hex}`, {
      hint: "the image is corrupt (its config and layers do not belong together); nothing was kept",
    });
  }

  /**
   * Unpacks a layer blob into the cache: decompresses `blob` (gzip, zstd or none, from its first
   * bytes) while checking the blob's digest and size, the tar's diffID and the size cap, indexes
   * the tar, and only then moves it into place. With `keepBlob`, the compressed blob is kept under
   * its own digest too. Call again from scratch for a retry.
   */
  async unpack(
    spec: LayerSpec,
    blob: AsyncIterable<Uint8Array>,
    opts: {
      budget: UnpackBudget;
      label: string;
      keepBlob?: boolean;
      onBytes?: (n: number) => void /** What `fledge cache ls` shows for the entries: the blob's URL, the unpacked tar's name. */;
      names?: { blob?: string; tar?: string };
    },
  ): Promise<OpenLayer> {
    const { budget, label } = opts;
    const tarTemp = await this.cache.tempPath();
    const blobTemp = opts.keepBlob && spec.digest && spec.digest !== spec.diffID ? await this.cache.tempPath() : undefined;
    const fh = await open(tarTemp, "wx+", 0o644);
    const bh = blobTemp ? await open(blobTemp, "wx", 0o644) : undefined;
    let committed = false;
    try {
      await fh.chmod(0o644); // whatever the umask: the trust check on hits wants no group/other write bit
      await bh?.chmod(0o644);
      const blobHash = createHash("sha256");
      let blobSize = 0;
      let blobDone = false;
      const max = spec.size;
      const teed = async function* (): AsyncGenerator<Uint8Array> {
        for await (const c of blob) {
          blobSize += c.length;
          if (max !== undefined && blobSize > max)
            throw new OciError("FLEDGE_OCI_DIGEST", `${label}: the blob is larger than the ${max} bytes its descriptor says`, {
              hint: "the registry, a mirror or the file served other content than the image refers to; nothing was kept",
            });
          blobHash.update(c);
          if (bh) await bh.write(c, 0, c.length, blobSize - c.length);
          opts.onBytes?.(c.length);
          yield c;
        }
        blobDone = true;
      };
      const it = teed();
      const first = await it.next();
      const head = first.done ? new Uint8Array(0) : first.value;
      const rest = async function* (): AsyncGenerator<Uint8Array> {
        if (!first.done) yield first.value;
        yield* it;
      };
      const dec = decompressor(sniffCompression(head, label));
      const src = Readable.from(rest(), { objectMode: false });
      const tar: AsyncIterable<Uint8Array> = dec ? src.pipe(dec) : src;
      let r: { size: number; entries: TarEntry[]; hex: string };
      try {
        r = await this.#ingest(tar, fh, budget, label);
      } catch (err) {
        dec?.destroy();
        src.destroy(); // stops the download too
        const code = (err as OciError).code;
        if (code === "FLEDGE_OCI_TOO_BIG" || code === "FLEDGE_OCI_DIGEST") throw err;
        // A short or wrong blob makes the decompressor or the tar reader fail: say which it was.
        if (blobDone) throw this.#blobProblem(spec, label, blobHash.digest("hex"), blobSize) ?? this.#wrap(err, label);
        throw this.#wrap(err, label);
      }
      // The blob first (the more precise message), then what it unpacked to.
      const problem = this.#blobProblem(spec, label, blobHash.digest("hex"), blobSize);
      const mismatch = problem ?? (r.hex !== hexOf(spec.diffID) ? this.#diffMismatch(spec.diffID, r.hex, label) : undefined);
      if (mismatch) {
        budget.used -= r.size;
        budget.entries = (budget.entries ?? 0) - r.entries.length;
        throw mismatch;
      }
      await this.cache.commit(tarTemp, hexOf(spec.diffID));
      committed = true;
      if (bh && blobTemp) {
        await bh.close();
        await this.cache.commit(blobTemp, hexOf(spec.digest!));
        if (opts.names?.blob) await this.cache.recordUrl(opts.names.blob, hexOf(spec.digest!)).catch(() => {});
      }
      if (opts.names?.tar) await this.cache.recordUrl(opts.names.tar, hexOf(spec.diffID)).catch(() => {});
      return this.#track({ diffID: spec.diffID, size: r.size, entries: r.entries, readPath: fdPath(fh.fd), handle: fh, cached: false });
    } catch (err) {
      await fh.close().catch(() => {});
      await bh?.close().catch(() => {});
      if (!committed) await rm(tarTemp, { force: true });
      if (blobTemp) await rm(blobTemp, { force: true });
      throw err;
    }
  }

  #wrap(err: unknown, label: string): Error {
    const e = err as Error & { code?: string; hint?: string };
    if (e?.name === "FetchError") return e;
    if (e?.name === "OciError") return e.message.startsWith(label) ? e : new OciError(e.code!, `${label}: ${e.message}`, { cause: e.cause, hint: e.hint });
    return new OciError("FLEDGE_OCI_FORMAT", `${label}: ${e?.message ?? String(err)}`, {
      cause: err,
      hint: "the layer is corrupt or is not a tar, tar+gzip or tar+zstd stream; nothing was kept",
    });
  }

  #blobProblem(spec: LayerSpec, label: string, hex: string, size: number): OciError | undefined {
    if (spec.digest === undefined ? spec.size === undefined || size >= spec.size : `sha256:${hex}` === spec.digest) return undefined;
    if (spec.size !== undefined && size < spec.size)
      return new OciError("FLEDGE_OCI_TRUNCATED", `${label}: the blob ended after ${size} of ${spec.size} bytes`, {
        hint: "the download was cut short or the file is incomplete; nothing was kept. Try again (a retry starts over)",
      });
    return new OciError("FLEDGE_OCI_DIGEST", `${label}: the blob does not match its digest\n  expected ${spec.digest}\n  actual   sha256:${hex}`, {
      hint: "the registry, a mirror or the file served other content than the image refers to; nothing was kept",
    });
  }

  #track(l: OpenLayer): OpenLayer {
    l.reopen = async () => {
      const again = await this.get(l.diffID, { cap: Number.MAX_SAFE_INTEGER, used: 0, image: l.diffID, raise: "" }, `layer ${l.diffID}`);
      if (!again) throw new OciError("FLEDGE_OCI_DIGEST", `layer ${l.diffID} is no longer in the cache, or no longer matches its diffID`);
      this.#open.delete(again);
      return again.handle;
    };
    this.#open.add(l);
    return l;
  }

  /** Closes every layer handle (after the artifact is written). Reads after that reopen and verify. */
  async close(): Promise<void> {
    const all = [...this.#open];
    this.#open.clear();
    await Promise.all(
      all.map((l) => {
        l.closed = true;
        return l.handle.close().catch(() => {});
      }),
    );
  }
}
