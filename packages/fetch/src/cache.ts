import { createHash } from "node:crypto";
import { constants } from "node:fs";
import { chmod, copyFile, lstat, mkdir, open, readFile, readdir, rename, rm, stat, utimes, writeFile } from "node:fs/promises";
import { homedir } from "node:os";
import { join } from "node:path";
import { reapStaleTemps, tempName } from "@fledge/safe-fs";
import { hashFile, normalizeSha256 } from "./sha.js";
import { FetchError } from "./errors.js";

/** `$FLEDGE_CACHE_DIR`, else `$XDG_CACHE_HOME/fledge`, else `~/.cache/fledge`. */
export function defaultCacheDir(env: NodeJS.ProcessEnv = process.env): string {
  if (env.FLEDGE_CACHE_DIR) return env.FLEDGE_CACHE_DIR;
  if (env.XDG_CACHE_HOME) return join(env.XDG_CACHE_HOME, "fledge");
  return join(homedir(), ".cache", "fledge");
}

/** What the URL index remembers about a URL. */
export interface UrlRecord {
  url: string;
  sha256: string;
  /** When it was fetched (ISO 8601). */
  fetchedAt: string;
}

export interface CacheEntry {
  sha256: string;
  size: number;
  /** Last time a build used it (the file's mtime, refreshed on every hit). */
  lastUsed: Date;
  /** URLs known to have served this content. */
  urls: string[];
}

export interface PruneResult {
  removed: CacheEntry[];
  freedBytes: number;
  kept: number;
  /** Temp files of processes that are gone (downloads interrupted by kill -9, a crash…). */
  temps: { removed: number; freedBytes: number };
}

/** What a cache entry turned out to hold when it was checked. */
export type VerifyResult = { ok: true; size: number; data?: Buffer } | { ok: false; reason: "missing" | "not-a-file" | "mismatch"; actual?: string; size?: number };

const HEX64 = /^[0-9a-f]{64}$/;

/**
 * A content-addressed store:
 * - `sha256/<hex>`: verified content, only ever created by an atomic rename of a complete,
 *   read-only file;
 * - `urls/<sha256 of the URL>.json`: the URL index, for inputs with no pinned checksum;
 * - `tmp/`: downloads in progress (same filesystem, so the rename is atomic), named by
 *   `@fledge/safe-fs`'s `tempName()` so leftovers of dead processes can be told apart.
 *
 * Several processes may use it at once: each writes its own temp file, and renaming a file
 * over an identical one is harmless. The directory may be shared and writable by others, so
 * nothing read from it is trusted: `verify` re-hashes an entry before every use, and `prune`
 * only ever removes names fledge itself makes.
 */
export class ContentCache {
  constructor(readonly dir: string) {}

  pathFor(sha256: string): string {
    return join(this.dir, "sha256", sha256);
  }

  async has(sha256: string): Promise<boolean> {
    try {
      return (await stat(this.pathFor(sha256))).isFile();
    } catch {
      return false;
    }
  }

  /** Marks an entry as used now (for `prune --older-than`). Never fails. */
  async touch(sha256: string): Promise<void> {
    const now = new Date();
    await utimes(this.pathFor(sha256), now, now).catch(() => {});
  }

  /**
   * Hashes entry `sha256` (streamed, not following a symlink planted in its place) and says
   * whether it still holds that content. Nothing is removed here.
   */
  async verify(sha256: string, opts: { keepMax?: number } = {}): Promise<VerifyResult> {
    let fh;
    try {
      fh = await open(this.pathFor(sha256), constants.O_RDONLY | constants.O_NOFOLLOW | constants.O_NONBLOCK);
    } catch (err) {
      const code = (err as NodeJS.ErrnoException).code;
      return { ok: false, reason: code === "ENOENT" ? "missing" : "not-a-file" };
    }
    try {
      const st = await fh.stat();
      if (!st.isFile()) return { ok: false, reason: "not-a-file" };
      const hash = createHash("sha256");
      // the bytes hashed are the bytes handed out (when small enough), so nothing can be swapped in between
      const keep = st.size <= (opts.keepMax ?? -1);
      const chunks: Buffer[] = [];
      let size = 0;
      for (;;) {
        const buf = Buffer.allocUnsafe(keep ? Math.max(64 * 1024, st.size + 1 - size) : 1 << 20);
        const { bytesRead } = await fh.read(buf, 0, buf.length, size);
        if (bytesRead === 0) break;
        const chunk = bytesRead === buf.length ? buf : buf.subarray(0, bytesRead);
        hash.update(chunk);
        if (keep) chunks.push(chunk);
        size += bytesRead;
      }
      const actual = hash.digest("hex");
      if (actual !== sha256) return { ok: false, reason: "mismatch", actual, size };
      return keep && size <= (opts.keepMax ?? -1) ? { ok: true, size, data: chunks.length === 1 ? chunks[0]! : Buffer.concat(chunks, size) } : { ok: true, size };
    } finally {
      await fh.close();
    }
  }

  /** Removes one entry (a damaged one, after `verify`). Never follows a link. */
  async evict(sha256: string): Promise<void> {
    if (HEX64.test(sha256)) await rm(this.pathFor(sha256), { force: true }).catch(() => {});
  }

  /** The cache's temp directory (downloads in progress). */
  get tempDir(): string {
    return join(this.dir, "tmp");
  }

  #reaped = false;

  /**
   * A temp path in the cache directory, so the final rename is atomic. The first call also
   * removes temps left by processes that are gone (a build killed with -9, a crash).
   */
  async tempPath(label?: string): Promise<string> {
    await mkdir(this.tempDir, { recursive: true });
    if (!this.#reaped) {
      this.#reaped = true;
      await reapStaleTemps(this.tempDir);
    }
    return join(this.tempDir, tempName(label));
  }

  /**
   * Moves a verified temp file into place, read-only (so another user sharing the cache cannot
   * rewrite it in place). Concurrent writers of the same content are fine.
   */
  async commit(temp: string, sha256: string): Promise<string> {
    const dest = this.pathFor(sha256);
    await mkdir(join(this.dir, "sha256"), { recursive: true });
    await chmod(temp, 0o444);
    await rename(temp, dest);
    return dest;
  }

  async discard(temp: string): Promise<void> {
    await rm(temp, { force: true });
  }

  private indexPath(url: string): string {
    return join(this.dir, "urls", createHash("sha256").update(url).digest("hex") + ".json");
  }

  /** The content last fetched from `url`, if the cache still holds it. */
  async lookupUrl(url: string): Promise<UrlRecord | undefined> {
    let rec: UrlRecord;
    try {
      rec = JSON.parse(await readFile(this.indexPath(url), "utf8")) as UrlRecord;
    } catch {
      return undefined;
    }
    if (rec?.url !== url || typeof rec.sha256 !== "string" || !/^[0-9a-f]{64}$/.test(rec.sha256)) return undefined;
    return (await this.has(rec.sha256)) ? rec : undefined;
  }

  /** Records that `url` served `sha256` (atomic: temp file + rename). */
  async recordUrl(url: string, sha256: string): Promise<void> {
    const path = this.indexPath(url);
    await mkdir(join(this.dir, "urls"), { recursive: true });
    const temp = await this.tempPath("url.json");
    const rec: UrlRecord = { url, sha256, fetchedAt: new Date().toISOString() };
    await writeFile(temp, JSON.stringify(rec) + "\n");
    await rename(temp, path);
  }

  private async urlRecords(): Promise<{ file: string; rec?: UrlRecord }[]> {
    const dir = join(this.dir, "urls");
    // only names fledge writes: <64 hex>.json
    const names = (await readdir(dir).catch(() => [] as string[])).filter((n) => /^[0-9a-f]{64}\.json$/.test(n));
    return Promise.all(
      names.map(async (n) => {
        const file = join(dir, n);
        try {
          return { file, rec: JSON.parse(await readFile(file, "utf8")) as UrlRecord };
        } catch {
          return { file };
        }
      }),
    );
  }

  /** Every entry, sorted by sha256. */
  async list(): Promise<CacheEntry[]> {
    const dir = join(this.dir, "sha256");
    const names = (await readdir(dir).catch(() => [] as string[])).filter((n) => /^[0-9a-f]{64}$/.test(n)).sort();
    const urls = new Map<string, string[]>();
    for (const { rec } of await this.urlRecords()) {
      if (!rec?.sha256) continue;
      urls.set(rec.sha256, [...(urls.get(rec.sha256) ?? []), rec.url].sort());
    }
    const out: CacheEntry[] = [];
    for (const sha256 of names) {
      const st = await lstat(join(dir, sha256)).catch(() => undefined);
      if (!st?.isFile()) continue;
      out.push({ sha256, size: st.size, lastUsed: st.mtime, urls: urls.get(sha256) ?? [] });
    }
    return out;
  }

  /**
   * Removes entries not used for `olderThanMs` (all entries when undefined), URL records that
   * point at removed content, and temp files of processes that are gone. Only names fledge
   * makes are ever removed (`sha256/<64 hex>`, `urls/<64 hex>.json`, `tmp/.fledge-tmp-<pid>-…`):
   * anything else a user put in the directory stays.
   */
  async prune(olderThanMs?: number, now = Date.now()): Promise<PruneResult> {
    const entries = await this.list();
    const removed: CacheEntry[] = [];
    for (const e of entries) {
      if (olderThanMs !== undefined && now - e.lastUsed.getTime() < olderThanMs) continue;
      await rm(this.pathFor(e.sha256), { force: true });
      removed.push(e);
    }
    for (const { file, rec } of await this.urlRecords()) {
      if (!rec?.sha256 || !(await this.has(rec.sha256))) await rm(file, { force: true });
    }
    const temps = await reapStaleTemps(this.tempDir, { now });
    return { removed, freedBytes: removed.reduce((a, e) => a + e.size, 0), kept: entries.length - removed.length, temps: { removed: temps.removed.length, freedBytes: temps.freedBytes } };
  }

  /**
   * Seeds the cache with a local file (for air-gapped machines). With `url`, also records
   * that the URL serves it, so an input without a pinned checksum resolves offline.
   * With `expectedSha256`, refuses a file with other content.
   */
  async add(file: string, opts: { url?: string; expectedSha256?: string } = {}): Promise<{ sha256: string; size: number; path: string; existed: boolean }> {
    const st = await stat(file);
    if (!st.isFile()) throw new FetchError("ENOTFILE", file, `${file} is not a regular file`);
    const temp = await this.tempPath("add");
    try {
      await copyFile(file, temp);
      const { sha256, size } = await hashFile(temp);
      if (opts.expectedSha256) {
        const expected = normalizeSha256(opts.expectedSha256);
        if (expected !== sha256) throw new FetchError("ECHECKSUM", file, `sha256 mismatch for ${file}\n  expected ${expected}\n  actual   ${sha256}`);
      }
      const existed = await this.has(sha256);
      const path = await this.commit(temp, sha256);
      if (opts.url) await this.recordUrl(opts.url, sha256);
      return { sha256, size, path, existed };
    } catch (err) {
      await this.discard(temp);
      throw err;
    }
  }
}
