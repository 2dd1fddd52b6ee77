import { createHash, createHmac, randomBytes, timingSafeEqual } from "node:crypto";
import { constants as fsc, readFile as readFileCb, statSync, type BigIntStats } from "node:fs";
import { type FileHandle, link, lstat, mkdir, open, readdir, rename, rm, unlink, utimes } from "node:fs/promises";
import { reapStaleTemps, tempName } from "@fledge/safe-fs";
import { dirname, join } from "node:path";
import { promisify } from "node:util";
import { SEGMENT_FILE_HEADER } from "./jobs.js";

const readFile = promisify(readFileCb);

/*
 * Threat model. The cache directory may be shared with, and writable by, other users (a CI
 * runner's cache volume, a group-writable ~/.cache). Nothing found there may change an artifact:
 *
 * - Every segment entry starts with a header binding it to the key it was written for: magic,
 *   the key, the payload's length and sha256, and an HMAC-SHA256 of those under a secret that
 *   only the current user can read (`key-<euid>`, mode 0600, owned by the user, opened without
 *   following symlinks). The reader checks each field against the key it asked for, so a swapped
 *   entry (a valid entry copied under another key), a forged one (payload replaced, self-hash
 *   recomputed), a truncated or extended one are all rejected, counted, removed and recomputed.
 * - The stat cache (host file stat → content digest) is authenticated with the same secret as a
 *   whole. A forged or foreign index is ignored (every file is hashed again).
 * - If the secret cannot be trusted (owned by someone else, readable by others, a symlink, not
 *   32 bytes) the cache is not used at all for this build: it costs time, never correctness.
 *
 * Out of scope: someone who can act as the same user (or root) can change anything anyway.
 */

/** Header of a segment entry: magic, key, payload length, payload sha256, HMAC (see above). */
const MAGIC = Buffer.from("FLSEG\x002\n", "latin1"); // 8 bytes
const OFF_KEY = 8;
const OFF_LEN = 40;
const OFF_HASH = 48;
const OFF_MAC = 80;
if (SEGMENT_FILE_HEADER !== 112) throw new Error("segment header layout mismatch");

function euid(): number {
  return typeof process.geteuid === "function" ? process.geteuid() : 0;
}

/**
 * The per-user HMAC secret of a cache directory, created on first use. Returns the secret, or a
 * reason why the directory cannot be trusted (then the caller works without a cache).
 */
export async function openCacheSecret(dir: string): Promise<{ secret: Buffer } | { reason: string }> {
  const file = join(dir, `key-${euid()}`);
  for (let attempt = 0; attempt < 3; attempt++) {
    let fh;
    try {
      fh = await open(file, fsc.O_RDONLY | fsc.O_NOFOLLOW);
    } catch (err) {
      const code = (err as NodeJS.ErrnoException).code;
      if (code === "ELOOP") return { reason: `${file} is a symlink` };
      if (code !== "ENOENT") return { reason: `cannot open ${file}: ${(err as Error).message}` };
      // Create it privately under a temp name, then link it into place: a concurrent build that
      // wins the race keeps its secret (EEXIST) and we read that one.
      const tmpDir = join(dir, "tmp");
      await mkdir(tmpDir, { recursive: true });
      const tmp = join(tmpDir, tempName());
      try {
        const w = await open(tmp, fsc.O_WRONLY | fsc.O_CREAT | fsc.O_EXCL, 0o600);
        try {
          await w.writeFile(randomBytes(32));
        } finally {
          await w.close();
        }
        await link(tmp, file).catch((e: NodeJS.ErrnoException) => {
          if (e.code !== "EEXIST") throw e;
        });
      } catch (e) {
        return { reason: `cannot create ${file}: ${(e as Error).message}` };
      } finally {
        await unlink(tmp).catch(() => {});
      }
      continue;
    }
    try {
      const st = await fh.stat();
      if (!st.isFile()) return { reason: `${file} is not a regular file` };
      if (st.uid !== euid()) return { reason: `${file} belongs to uid ${st.uid}, not to you (uid ${euid()})` };
      if ((st.mode & 0o077) !== 0) return { reason: `${file} is accessible to other users (mode ${(st.mode & 0o777).toString(8)}); remove it and fledge makes a new one` };
      const secret = await fh.readFile();
      if (secret.length !== 32) return { reason: `${file} is not a fledge cache key (${secret.length} bytes); remove it` };
      return { secret };
    } finally {
      await fh.close();
    }
  }
  return { reason: `cannot create ${file}` };
}

export type SegmentCheck = { ok: true; size: number; payloadSha256: Buffer } | { ok: false; reason: string };

/**
 * Compressed segments keyed by sha256(segment format, codec id, level, segment contents). Writes
 * go to a pid-named temp file renamed into place (atomic on one file system).
 */
export class SegmentCache {
  /** Entries rejected by the header check (forged, swapped, damaged, truncated). */
  rejected = 0;
  readonly rejections: string[] = [];

  constructor(
    readonly dir: string,
    private readonly secret: Buffer,
  ) {}

  path(key: string): string {
    return join(this.dir, key.slice(0, 2), `${key}.seg`);
  }

  tempPath(key?: string): string {
    return join(this.dir, "tmp", tempName(key));
  }

  /** The header for `payload` (length and sha256 given) stored under `key`. */
  header(key: string, length: number, payloadSha256: Buffer): Buffer {
    const h = Buffer.alloc(SEGMENT_FILE_HEADER);
    MAGIC.copy(h, 0);
    Buffer.from(key, "hex").copy(h, OFF_KEY);
    h.writeBigUInt64LE(BigInt(length), OFF_LEN);
    payloadSha256.copy(h, OFF_HASH);
    createHmac("sha256", this.secret).update(h.subarray(0, OFF_MAC)).digest().copy(h, OFF_MAC);
    return h;
  }

  /** Checks a header against the key asked for and the entry's size; the payload hash is checked by the caller. */
  #checkHeader(key: string, h: Buffer, fileSize: number): string | undefined {
    if (fileSize < SEGMENT_FILE_HEADER) return "shorter than its header";
    if (!h.subarray(0, 8).equals(MAGIC)) return "not a fledge segment (bad magic)";
    const mac = createHmac("sha256", this.secret).update(h.subarray(0, OFF_MAC)).digest();
    if (!timingSafeEqual(mac, h.subarray(OFF_MAC, SEGMENT_FILE_HEADER))) return "HMAC does not verify (not written by you, or altered)";
    if (!h.subarray(OFF_KEY, OFF_KEY + 32).equals(Buffer.from(key, "hex"))) return "written for another key";
    if (h.readBigUInt64LE(OFF_LEN) !== BigInt(fileSize - SEGMENT_FILE_HEADER)) return "length does not match its header (truncated or extended)";
    return undefined;
  }

  async #reject(key: string, reason: string): Promise<void> {
    this.rejected++;
    if (this.rejections.length < 20) this.rejections.push(`${this.path(key)}: ${reason}`);
    await rm(this.path(key), { force: true }).catch(() => {});
  }

  /**
   * The payload, or undefined when absent or rejected (a rejected entry is removed and counted).
   * With `into`, the entry is read into the buffer it gives for the file's size (a pooled one, so
   * a warm build reuses a few buffers instead of making garbage); `release` gives it back when
   * the entry is rejected.
   */
  async get(key: string, into?: (size: number) => Promise<Buffer>, release?: (buf: Buffer) => void): Promise<Uint8Array | undefined> {
    let buf: Buffer;
    let pooled = false;
    try {
      if (!into) buf = await readFile(this.path(key));
      else {
        const fh = await open(this.path(key), fsc.O_RDONLY);
        try {
          const st = await fh.stat();
          if (!st.isFile()) return undefined;
          buf = await into(st.size);
          pooled = true;
          let got = 0;
          while (got < buf.length) {
            const { bytesRead } = await fh.read(buf, got, buf.length - got, got);
            if (bytesRead === 0) break;
            got += bytesRead;
          }
          // Shorter than it was a moment ago: the header check below sees the shorter length.
          if (got < buf.length) {
            const short = Buffer.from(buf.subarray(0, got));
            release?.(buf);
            pooled = false;
            buf = short;
          }
        } catch (err) {
          if (pooled) release?.(buf!);
          throw err;
        } finally {
          await fh.close();
        }
      }
    } catch {
      return undefined;
    }
    const bad =
      this.#checkHeader(key, buf.subarray(0, SEGMENT_FILE_HEADER), buf.length) ??
      (createHash("sha256")
        .update(buf.subarray(SEGMENT_FILE_HEADER))
        .digest()
        .equals(buf.subarray(OFF_HASH, OFF_HASH + 32))
        ? undefined
        : "payload does not match its sha256");
    if (bad) {
      if (pooled) release?.(buf);
      await this.#reject(key, bad);
      return undefined;
    }
    await this.touch(key);
    return buf.subarray(SEGMENT_FILE_HEADER);
  }

  /**
   * Whether an entry for `key` is there with a good header (HMAC, key, length); a bad one is
   * rejected (removed and counted). The payload is not read: `get` checks it when it is used.
   */
  async has(key: string): Promise<boolean> {
    let fh;
    try {
      fh = await open(this.path(key), fsc.O_RDONLY);
    } catch {
      return false;
    }
    let bad: string | undefined;
    try {
      const st = await fh.stat();
      if (!st.isFile()) return false;
      const head = Buffer.alloc(SEGMENT_FILE_HEADER);
      const { bytesRead } = await fh.read(head, 0, SEGMENT_FILE_HEADER, 0);
      bad = this.#checkHeader(key, head, bytesRead < SEGMENT_FILE_HEADER ? bytesRead : st.size);
    } catch {
      return false;
    } finally {
      await fh.close();
    }
    if (bad) await this.#reject(key, bad);
    return !bad;
  }

  /** Checks a (large) entry streaming; returns its payload size, or undefined when absent or rejected. */
  async verify(key: string): Promise<number | undefined> {
    return (await this.verifyEntry(key))?.size;
  }

  /**
   * Checks a (large) entry streaming; returns its payload's size and sha256 (what a reader of the
   * file later must see again: the file can be replaced or rewritten after this check), or
   * undefined when absent or rejected.
   */
  async verifyEntry(key: string): Promise<{ size: number; payloadSha256: Buffer } | undefined> {
    const r = await this.check(key);
    if (!r) return undefined;
    if (!r.ok) {
      await this.#reject(key, r.reason);
      return undefined;
    }
    await this.touch(key);
    return { size: r.size, payloadSha256: r.payloadSha256 };
  }

  /** Reads and checks an entry without changing anything; undefined when absent. */
  async check(key: string): Promise<SegmentCheck | undefined> {
    let fh;
    try {
      fh = await open(this.path(key), fsc.O_RDONLY | fsc.O_NOFOLLOW);
    } catch {
      return undefined;
    }
    try {
      const st = await fh.stat();
      if (!st.isFile()) return { ok: false, reason: "not a regular file" };
      const head = Buffer.alloc(SEGMENT_FILE_HEADER);
      const { bytesRead } = await fh.read(head, 0, SEGMENT_FILE_HEADER, 0);
      const bad = this.#checkHeader(key, head, bytesRead < SEGMENT_FILE_HEADER ? bytesRead : st.size);
      if (bad) return { ok: false, reason: bad };
      const { size, sha256 } = await hashPayload(fh);
      if (size !== st.size - SEGMENT_FILE_HEADER) return { ok: false, reason: "changed while it was read" };
      if (!sha256.equals(head.subarray(OFF_HASH, OFF_HASH + 32))) return { ok: false, reason: "payload does not match its sha256" };
      return { ok: true, size, payloadSha256: Buffer.from(head.subarray(OFF_HASH, OFF_HASH + 32)) };
    } finally {
      await fh.close();
    }
  }

  /** Marks an entry as used now, so `prune --older-than` keeps what builds still use. */
  async touch(key: string): Promise<void> {
    const now = new Date();
    await utimes(this.path(key), now, now).catch(() => {});
  }

  async put(key: string, payload: Uint8Array): Promise<void> {
    const tmp = this.tempPath();
    await this.#mkdir(dirname(tmp));
    const header = this.header(key, payload.length, createHash("sha256").update(payload).digest());
    try {
      const fh = await open(tmp, fsc.O_WRONLY | fsc.O_CREAT | fsc.O_EXCL, 0o644);
      try {
        await fh.writev([header, payload]);
      } finally {
        await fh.close();
      }
      await this.#install(key, tmp);
    } catch (err) {
      await rm(tmp, { force: true }).catch(() => {});
      throw err;
    }
  }

  /** Moves a finished temp file (payload at SEGMENT_FILE_HEADER) into place, writing its header first. */
  async adopt(key: string, tmp: string, size: number, payloadSha256: Buffer): Promise<void> {
    const fh = await open(tmp, "r+");
    try {
      await fh.write(this.header(key, size, payloadSha256), 0, SEGMENT_FILE_HEADER, 0);
    } finally {
      await fh.close();
    }
    await this.#install(key, tmp);
  }

  async #install(key: string, tmp: string): Promise<void> {
    const final = this.path(key);
    await this.#mkdir(dirname(final));
    await rename(tmp, final);
  }

  async #mkdir(dir: string): Promise<void> {
    if (this.#made.has(dir)) return;
    await mkdir(dir, { recursive: true });
    this.#made.add(dir);
  }

  readonly #made = new Set<string>();
}

/**
 * What a stat cache entry remembers of a host file. Like git's index, (device, inode, size,
 * mtime, ctime) standing still is taken to mean the content stood still; ctime cannot be set by
 * a user (only the kernel's clock sets it), so `touch -d` or a same-size rewrite both change it.
 */
export interface FileStamp {
  dev: bigint;
  ino: bigint;
  size: bigint;
  mtimeNs: bigint;
  ctimeNs: bigint;
}

export interface FileDigest {
  /** sha256 of the content. */
  digest: Buffer;
  /** The 070702 checksum (sum of the bytes mod 2^32), when it was computed. */
  sum?: number;
}

type IndexRow = [dev: string, ino: string, size: string, mtimeNs: string, ctimeNs: string, digest: string, sum: number | null, used: number];

/**
 * Margin of the racy rule: a file whose mtime or ctime is less than this before the build
 * started is not remembered (it is hashed again next time). It covers file systems that keep
 * timestamps in whole seconds (or 2 s, FAT) and the kernel's coarse clock, which stamps files up
 * to a tick behind the real time.
 */
const RACY_MARGIN_NS = 2_000_000_000n;
const INDEX_MAGIC = "fledge-stat-1\n";
const INDEX_MAX_ROWS = 1_000_000;

/**
 * The stat cache ("racy-git" rule): host path → (stamp, digest). Consulted only to compute
 * segment keys without reading a file; see the threat model above, and the README.
 */
export class StatIndex {
  /** Files whose digest came from the index (not read). */
  hits = 0;
  /** The index on disk could not be authenticated and was ignored. */
  ignored?: string;
  readonly #rows = new Map<string, IndexRow>();
  readonly #fresh = new Set<string>();
  #dirty = false;

  private constructor(
    readonly file: string,
    private readonly secret: Buffer,
    /** Nanoseconds since the epoch by the kernel's file clock, taken before any file is read. */
    readonly startNs: bigint,
  ) {}

  static async open(dir: string, secret: Buffer): Promise<StatIndex> {
    // The build's start as the file system's clock sees it (not Date.now(): file times come from
    // the kernel's coarse clock, which runs up to a tick behind).
    await mkdir(join(dir, "tmp"), { recursive: true });
    const probe = join(dir, "tmp", tempName());
    const fh = await open(probe, fsc.O_WRONLY | fsc.O_CREAT | fsc.O_EXCL, 0o600);
    let startNs: bigint;
    try {
      startNs = (await fh.stat({ bigint: true })).mtimeNs;
    } finally {
      await fh.close();
      await unlink(probe).catch(() => {});
    }
    const index = new StatIndex(join(dir, `stat-${euid()}.idx`), secret, startNs);
    await index.#load();
    return index;
  }

  async #load(): Promise<void> {
    let text: string;
    try {
      const fh = await open(this.file, fsc.O_RDONLY | fsc.O_NOFOLLOW);
      try {
        text = await fh.readFile("utf8");
      } finally {
        await fh.close();
      }
    } catch {
      return;
    }
    const nl = text.indexOf("\n", INDEX_MAGIC.length);
    if (!text.startsWith(INDEX_MAGIC) || nl < 0) {
      this.ignored = "not a fledge stat index";
      return;
    }
    const mac = text.slice(INDEX_MAGIC.length, nl);
    const body = text.slice(nl + 1);
    const want = createHmac("sha256", this.secret).update(body).digest("hex");
    if (mac.length !== want.length || !timingSafeEqual(Buffer.from(mac), Buffer.from(want))) {
      this.ignored = "HMAC does not verify";
      return;
    }
    try {
      const rows = JSON.parse(body) as Record<string, IndexRow>;
      for (const [k, v] of Object.entries(rows)) this.#rows.set(k, v);
    } catch {
      this.ignored = "unreadable";
    }
  }

  /** The remembered digest when the file's stamp is exactly the remembered one. */
  lookup(path: string, st: FileStamp, needSum: boolean): FileDigest | undefined {
    const r = this.#rows.get(path);
    if (!r) return undefined;
    if (r[0] !== String(st.dev) || r[1] !== String(st.ino) || r[2] !== String(st.size) || r[3] !== String(st.mtimeNs) || r[4] !== String(st.ctimeNs)) return undefined;
    if (needSum && r[6] === null) return undefined;
    this.hits++;
    if (!this.#fresh.has(path)) {
      r[7] = Number(this.startNs / 1_000_000_000n);
      this.#dirty = true;
    }
    return { digest: Buffer.from(r[5], "hex"), sum: r[6] ?? undefined };
  }

  /**
   * Remembers a digest computed from content read after `st` was taken. A racily clean file —
   * changed less than RACY_MARGIN before this build started, or during it — is not remembered:
   * a later change within the same timestamp tick would leave its stamp as it is.
   */
  record(path: string, st: FileStamp, d: FileDigest): void {
    // biome-ignore lint/complexity/useMathMinMax: bigints, which Math.max does not take
    const changed = st.mtimeNs > st.ctimeNs ? st.mtimeNs : st.ctimeNs;
    if (changed >= this.startNs - RACY_MARGIN_NS) {
      if (this.#rows.delete(path)) this.#dirty = true;
      return;
    }
    this.#rows.set(path, [String(st.dev), String(st.ino), String(st.size), String(st.mtimeNs), String(st.ctimeNs), d.digest.toString("hex"), d.sum ?? null, Number(this.startNs / 1_000_000_000n)]);
    this.#fresh.add(path);
    this.#dirty = true;
  }

  /** Forgets a path (its remembered digest turned out wrong). */
  forget(path: string): void {
    if (this.#rows.delete(path)) this.#dirty = true;
  }

  /** Writes the index (temp file + rename); entries not used for longest go first past a million. */
  async save(): Promise<void> {
    if (!this.#dirty) return;
    let rows = [...this.#rows.entries()];
    if (rows.length > INDEX_MAX_ROWS) rows = rows.sort((a, b) => b[1][7] - a[1][7]).slice(0, INDEX_MAX_ROWS);
    const body = JSON.stringify(Object.fromEntries(rows));
    const mac = createHmac("sha256", this.secret).update(body).digest("hex");
    const tmp = join(dirname(this.file), "tmp", tempName());
    try {
      const fh = await open(tmp, fsc.O_WRONLY | fsc.O_CREAT | fsc.O_EXCL, 0o600);
      try {
        await fh.writeFile(INDEX_MAGIC + mac + "\n" + body);
      } finally {
        await fh.close();
      }
      await rename(tmp, this.file);
      this.#dirty = false;
    } catch (err) {
      await rm(tmp, { force: true }).catch(() => {});
      throw err;
    }
  }
}

/**
 * Stamps a host file (following symlinks, as reading it does). Synchronous underneath: a stat of
 * a file whose inode is cached takes microseconds, far less than a trip through libuv's thread
 * pool and back (a warm build stamps every file).
 */
export async function stampOf(path: string): Promise<FileStamp> {
  const st: BigIntStats = statSync(path, { bigint: true });
  return { dev: st.dev, ino: st.ino, size: st.size, mtimeNs: st.mtimeNs, ctimeNs: st.ctimeNs };
}

/** The size and sha256 of a segment file's payload (everything after its header), read in 1 MiB pieces. */
async function hashPayload(fh: FileHandle): Promise<{ size: number; sha256: Buffer }> {
  const h = createHash("sha256");
  const buf = Buffer.allocUnsafe(1 << 20);
  let size = 0;
  for (;;) {
    const r = await fh.read(buf, 0, buf.length, SEGMENT_FILE_HEADER + size);
    if (r.bytesRead === 0) break;
    h.update(buf.subarray(0, r.bytesRead));
    size += r.bytesRead;
  }
  return { size, sha256: h.digest() };
}

/** Streams a segment file, checking sha256(payload) against its header (no key check); returns the payload size. */
export async function verifySegmentFile(path: string): Promise<number | undefined> {
  let fh;
  try {
    fh = await open(path, "r");
  } catch {
    return undefined;
  }
  try {
    const head = Buffer.alloc(SEGMENT_FILE_HEADER);
    const { bytesRead } = await fh.read(head, 0, SEGMENT_FILE_HEADER, 0);
    if (bytesRead !== SEGMENT_FILE_HEADER || !head.subarray(0, 8).equals(MAGIC)) return undefined;
    const { size, sha256 } = await hashPayload(fh);
    return sha256.equals(head.subarray(OFF_HASH, OFF_HASH + 32)) && BigInt(size) === head.readBigUInt64LE(OFF_LEN) ? size : undefined;
  } finally {
    await fh.close();
  }
}

export interface SegmentPruneResult {
  removed: number;
  freedBytes: number;
  kept: number;
}

/**
 * Removes cached segments not used for `olderThanMs` (all of them when undefined), and temp
 * files of builds that are gone (`@fledge/safe-fs`'s `reapStaleTemps`). Only names this cache
 * makes are touched (`<2 hex>/<64 hex>.seg`, temps named by `tempName()`); anything else a user
 * put in the directory stays.
 */
export async function pruneSegments(dir: string, olderThanMs?: number, now = Date.now()): Promise<SegmentPruneResult> {
  const result: SegmentPruneResult = { removed: 0, freedBytes: 0, kept: 0 };
  for (const sub of await readdir(dir).catch(() => [] as string[])) {
    if (sub === "tmp") {
      const r = await reapStaleTemps(join(dir, sub), { now });
      result.removed += r.removed.length;
      result.freedBytes += r.freedBytes;
      continue;
    }
    if (!/^[0-9a-f]{2}$/.test(sub)) continue;
    const subdir = join(dir, sub);
    for (const name of await readdir(subdir).catch(() => [] as string[])) {
      if (!/^[0-9a-f]{64}\.seg$/.test(name) || name.slice(0, 2) !== sub) continue;
      const file = join(subdir, name);
      const st = await lstat(file).catch(() => undefined);
      if (!st?.isFile()) continue;
      const age = now - st.mtimeMs;
      if (olderThanMs === undefined || age >= olderThanMs) {
        await rm(file, { force: true });
        result.removed++;
        result.freedBytes += st.size;
      } else result.kept++;
    }
  }
  return result;
}
