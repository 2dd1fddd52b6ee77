import { createHash, randomBytes } from "node:crypto";
import { copyFile, mkdir, readFile, readdir, rename, rm, stat, utimes, writeFile } from "node:fs/promises";
import { homedir } from "node:os";
import { join } from "node:path";
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
}

/** Temp files older than this are leftovers of a killed process. */
const STALE_TEMP_MS = 24 * 3600 * 1000;

/**
 * A content-addressed store:
 * - `sha256/<hex>`: verified content, only ever created by an atomic rename of a complete file;
 * - `urls/<sha256 of the URL>.json`: the URL index, for inputs with no pinned checksum;
 * - `tmp/`: downloads in progress (same filesystem, so the rename is atomic).
 *
 * Several processes may use it at once: each writes its own temp file, and renaming a file
 * over an identical one is harmless.
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

  /** A temp path in the cache directory, so the final rename is atomic. */
  async tempPath(): Promise<string> {
    const dir = join(this.dir, "tmp");
    await mkdir(dir, { recursive: true });
    return join(dir, `${process.pid}-${randomBytes(6).toString("hex")}`);
  }

  /** Moves a verified temp file into place. Concurrent writers of the same content are fine. */
  async commit(temp: string, sha256: string): Promise<string> {
    const dest = this.pathFor(sha256);
    await mkdir(join(this.dir, "sha256"), { recursive: true });
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
    const temp = await this.tempPath();
    const rec: UrlRecord = { url, sha256, fetchedAt: new Date().toISOString() };
    await writeFile(temp, JSON.stringify(rec) + "\n");
    await rename(temp, path);
  }

  private async urlRecords(): Promise<{ file: string; rec?: UrlRecord }[]> {
    const dir = join(this.dir, "urls");
    const names = await readdir(dir).catch(() => [] as string[]);
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
      const st = await stat(join(dir, sha256)).catch(() => undefined);
      if (!st?.isFile()) continue;
      out.push({ sha256, size: st.size, lastUsed: st.mtime, urls: urls.get(sha256) ?? [] });
    }
    return out;
  }

  /**
   * Removes entries not used for `olderThanMs` (all entries when undefined), URL records that
   * point at removed content, and temp files left by killed processes.
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
    const tmp = join(this.dir, "tmp");
    for (const n of await readdir(tmp).catch(() => [] as string[])) {
      const st = await stat(join(tmp, n)).catch(() => undefined);
      if (st && (olderThanMs === undefined ? now - st.mtimeMs > 60_000 : now - st.mtimeMs > STALE_TEMP_MS)) await rm(join(tmp, n), { force: true });
    }
    return { removed, freedBytes: removed.reduce((a, e) => a + e.size, 0), kept: entries.length - removed.length };
  }

  /**
   * Seeds the cache with a local file (for air-gapped machines). With `url`, also records
   * that the URL serves it, so an input without a pinned checksum resolves offline.
   * With `expectedSha256`, refuses a file with other content.
   */
  async add(file: string, opts: { url?: string; expectedSha256?: string } = {}): Promise<{ sha256: string; size: number; path: string; existed: boolean }> {
    const st = await stat(file);
    if (!st.isFile()) throw new FetchError("ENOTFILE", file, `${file} is not a regular file`);
    const temp = await this.tempPath();
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
