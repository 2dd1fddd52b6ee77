import { createHash } from "node:crypto";
import { createReadStream, createWriteStream, rmSync } from "node:fs";
import { stat } from "node:fs/promises";
import { isAbsolute, resolve } from "node:path";
import { Transform } from "node:stream";
import { pipeline } from "node:stream/promises";
import { fileURLToPath } from "node:url";
import { ContentCache, defaultCacheDir } from "./cache.js";
import { FetchError } from "./errors.js";
import { HttpClient, httpOptionsFromEnv, type HttpOptions } from "./http.js";
import { applyMirrors, parseMirrors, type Mirror } from "./mirrors.js";
import { normalizeSha256 } from "./sha.js";

export { normalizeSha256 } from "./sha.js";

export interface FetchRequest {
  /** `http(s)://…`, `file://…` or a local path (relative paths resolve against `baseDir`). */
  url: string;
  /** Expected sha256 (`sha256:<hex>` or bare hex, any case). */
  sha256?: string;
  /** What this is, for messages ("busybox"). */
  label?: string;
  /** Ignore the URL index (re-download an input that has no pinned checksum). */
  refresh?: boolean;
  /** Directory relative local paths resolve against (default: the current directory). */
  baseDir?: string;
  /** Request headers (e.g. a registry's bearer token). Not part of any cache key; never sent across origins on redirects. */
  headers?: Record<string, string>;
}

export interface FetchResult {
  /** A path to the verified content (in the cache, or the local file itself). */
  path: string;
  sha256: string;
  size: number;
  /** The URL as requested (before mirrors). */
  url: string;
  /** What was really read: the mirrored URL, after redirects (or the local path). */
  fetchedFrom: string;
  fromCache: boolean;
  /** True for `file://` URLs and plain paths (never cached, never networked). */
  local: boolean;
  /**
   * The verified bytes themselves, for a download or cache hit of at most 64 MiB. Use them
   * rather than reading `path` again: the cache directory may be shared and writable by others,
   * and what is at `path` could have been swapped since it was verified.
   */
  data?: Buffer;
}

/** Downloads and cache hits up to this size are handed out in memory as well (`FetchResult.data`). */
export const KEEP_IN_MEMORY_MAX = 64 * 2 ** 20;

export interface ProgressEvent {
  label: string;
  url: string;
  bytes: number;
  total?: number;
  /** Bytes per second since the download started. */
  rate: number;
  done: boolean;
}

export type FetchLog = (level: "debug" | "info" | "warn", message: string) => void;

export interface FetcherOptions {
  /** Default: `defaultCacheDir(env)`. */
  cacheDir?: string;
  /** Never touch the network: serve from the cache or fail with `EOFFLINE`. */
  offline?: boolean;
  /** Prefix rewrites from configuration; `FLEDGE_MIRRORS` (from `env`) is tried first. */
  mirrors?: Mirror[];
  /**
   * Environment for `FLEDGE_MIRRORS`, `FLEDGE_CACHE_DIR`, `FLEDGE_GITHUB_API`, `GITHUB_TOKEN` and the
   * timeouts `FLEDGE_DOWNLOAD_TIMEOUT`, `FLEDGE_DOWNLOAD_IDLE_TIMEOUT`, `FLEDGE_CONNECT_TIMEOUT`
   * (default `process.env`). `http` wins over the environment.
   */
  env?: NodeJS.ProcessEnv;
  http?: HttpOptions;
  onProgress?: (e: ProgressEvent) => void;
  /** Diagnostics (mirror rewrites, retries, cache hits). */
  onLog?: FetchLog;
}

const isRemote = (url: string) => /^https?:\/\//i.test(url);

/** Downloads or reads inputs, verifies them and keeps them in a content-addressed cache. */
export class Fetcher {
  readonly cache: ContentCache;
  readonly offline: boolean;
  readonly env: NodeJS.ProcessEnv;
  readonly http: HttpClient;
  private readonly envMirrors: Mirror[];
  private readonly configMirrors: Mirror[];
  private readonly onProgress?: (e: ProgressEvent) => void;
  private readonly log: FetchLog;
  readonly #temps = new Set<string>();

  constructor(opts: FetcherOptions = {}) {
    this.env = opts.env ?? process.env;
    this.cache = new ContentCache(opts.cacheDir ?? defaultCacheDir(this.env));
    this.offline = opts.offline ?? false;
    this.envMirrors = parseMirrors(this.env.FLEDGE_MIRRORS);
    this.configMirrors = opts.mirrors ?? [];
    this.onProgress = opts.onProgress;
    this.log = opts.onLog ?? (() => {});
    this.http = new HttpClient({ ...httpOptionsFromEnv(this.env), ...opts.http }, this.log);
  }

  /** The URL really fetched for `url` after mirror rewrites (logged when it changes). */
  mirrored(url: string, label: string): string {
    const r = applyMirrors(url, this.envMirrors, this.configMirrors);
    if (r.mirror) this.log("debug", `${label}: ${url} → ${r.url} (mirror ${r.mirror.from}=${r.mirror.to})`);
    return r.url;
  }

  /**
   * Returns a verified local path for the input: from the cache when it holds the content
   * (by pinned sha256, else by the URL index), otherwise downloaded (mirrors applied),
   * verified and stored. A local file is verified in place and never copied.
   */
  async fetch(req: FetchRequest): Promise<FetchResult> {
    const label = req.label ?? req.url;
    let expected: string | undefined;
    try {
      expected = req.sha256 ? normalizeSha256(req.sha256) : undefined;
    } catch (err) {
      throw new FetchError("FLEDGE_INPUT", req.url, `${label}: ${(err as Error).message}`, { hint: (err as FetchError).hint });
    }
    if (!isRemote(req.url)) return this.readLocal(req, label, expected);

    if (expected && (await this.cache.has(expected))) {
      const got = await this.hit(req.url, expected, label);
      if (got) return got;
    }
    if (!expected && !req.refresh) {
      const rec = await this.cache.lookupUrl(req.url);
      if (rec) {
        const got = await this.hit(req.url, rec.sha256, label);
        if (got) return got;
      }
    }
    const from = this.mirrored(req.url, label);
    if (!isRemote(from)) {
      // A mirror on the local filesystem (`https://busybox.net/=file:///srv/mirror/`): no
      // network involved, so it serves --offline builds too.
      const got = await this.readLocal({ ...req, url: from }, label, expected);
      return { ...got, url: req.url };
    }
    if (this.offline) {
      throw new FetchError("FLEDGE_OFFLINE", req.url, `${label}: ${req.url}${expected ? ` (sha256:${expected})` : ""} is not in the cache and the network is off (--offline)`, {
        hint: `run once with the network, or seed the cache: fledge cache add <file>${expected ? "" : ` --url ${req.url}`}`,
      });
    }
    const temp = await this.cache.tempPath(label.replace(/[^A-Za-z0-9._-]/g, "_").slice(0, 40));
    this.#temps.add(temp);
    try {
      let digest = "";
      let size = 0;
      let data: Buffer | undefined;
      const info = await this.http.get(from, {
        label,
        ...(req.headers ? { headers: req.headers } : {}),
        sink: async (body, res) => {
          const h = this.hasher(label, req.url, res.total, KEEP_IN_MEMORY_MAX);
          await pipeline(body, h.stream, createWriteStream(temp));
          digest = h.digest();
          size = h.size();
          data = h.data();
        },
      });
      if (expected && digest !== expected) throw this.mismatch(label, req.url, info.finalUrl, expected, digest);
      const path = await this.cache.commit(temp, digest);
      await this.cache.recordUrl(req.url, digest);
      this.log("debug", `${label}: downloaded ${size} bytes from ${info.finalUrl} sha256:${digest}`);
      return { path, sha256: digest, size, url: req.url, fetchedFrom: info.finalUrl, fromCache: false, local: false, ...(data ? { data } : {}) };
    } catch (err) {
      await this.cache.discard(temp);
      throw err;
    } finally {
      this.#temps.delete(temp);
    }
  }

  /** Removes the temp files of downloads in progress (for a signal handler: synchronous). */
  cleanupSync(): void {
    for (const t of this.#temps) rmSync(t, { force: true });
    this.#temps.clear();
  }

  /** Downloads a small text document (API answers, checksums.txt) without caching it. */
  async getText(url: string, opts: { label: string; headers?: Record<string, string>; maxBytes?: number }): Promise<{ text: string; finalUrl: string }> {
    if (this.offline)
      throw new FetchError("FLEDGE_OFFLINE", url, `${opts.label}: ${url} cannot be fetched: the network is off (--offline)`, {
        hint: "run once with the network so fledge.lock records what it resolves to",
      });
    const from = this.mirrored(url, opts.label);
    const chunks: Buffer[] = [];
    const max = opts.maxBytes ?? 16 * 1024 * 1024;
    const info = await this.http.get(from, {
      label: opts.label,
      headers: opts.headers,
      maxBytes: max,
      sink: async (body) => {
        chunks.length = 0;
        let n = 0;
        for await (const c of body) {
          n += (c as Buffer).length;
          if (n > max) {
            body.destroy();
            throw new FetchError("FLEDGE_TOOBIG", url, `${opts.label}: ${from} is larger than ${max} bytes`);
          }
          chunks.push(c as Buffer);
        }
      },
    });
    return { text: Buffer.concat(chunks).toString("utf8"), finalUrl: info.finalUrl };
  }

  /** Closes idle connections so the process can exit promptly. */
  async close(): Promise<void> {
    await this.http.close();
  }

  /**
   * Serves `sha256` from the cache after hashing the entry again: the cache directory may be
   * shared and writable by others, so an entry is trusted only when its bytes still hash to its
   * name. A damaged entry is removed and the fetch goes on as a miss (a download), or, offline,
   * fails naming the entry and both digests. Undefined means "treat as a miss".
   */
  private async hit(url: string, sha256: string, label: string): Promise<FetchResult | undefined> {
    const path = this.cache.pathFor(sha256);
    const v = await this.cache.verify(sha256, { keepMax: KEEP_IN_MEMORY_MAX });
    if (!v.ok) {
      const what = v.reason === "mismatch" ? `holds content with sha256 ${v.actual} (${v.size} bytes)` : v.reason === "missing" ? "vanished" : "is not a regular file";
      if (v.reason !== "missing") await this.cache.evict(sha256);
      if (this.offline && v.reason !== "missing")
        throw new FetchError(
          "ECACHE",
          url,
          `${label}: cache entry ${path} is damaged: it ${what}\n  expected ${sha256}\n  actual   ${v.actual ?? "(not a file)"}\nthe entry was removed; the network is off (--offline), so it cannot be fetched again`,
          {
            hint: `run once with the network, or seed the cache with the right file: fledge cache add <file>`,
          },
        );
      this.log("warn", `${label}: cache entry ${path} ${what}, expected sha256 ${sha256}; removed it and fetching again`);
      return undefined;
    }
    await this.cache.touch(sha256);
    this.log("debug", `${label}: sha256:${sha256} from the cache, verified (${url})`);
    return { path, sha256, size: v.size, url, fetchedFrom: path, fromCache: true, local: false, ...(v.data ? { data: v.data } : {}) };
  }

  private mismatch(label: string, url: string, from: string, expected: string, actual: string): FetchError {
    return new FetchError("FLEDGE_CHECKSUM", url, `${label}: sha256 mismatch for ${from}${from !== url ? ` (for ${url})` : ""}\n  expected ${expected}\n  actual   ${actual}`, {
      hint: "the file changed or the checksum is wrong; nothing was kept. Fix the checksum only if you trust the new file",
    });
  }

  private async readLocal(req: FetchRequest, label: string, expected: string | undefined): Promise<FetchResult> {
    let local: string;
    try {
      local = /^file:/i.test(req.url) ? fileURLToPath(req.url) : isAbsolute(req.url) ? req.url : resolve(req.baseDir ?? ".", req.url);
    } catch (err) {
      throw new FetchError("FLEDGE_INPUT", req.url, `${label}: ${req.url} is not a usable file URL: ${(err as Error).message}`);
    }
    let st;
    try {
      st = await stat(local);
    } catch {
      throw new FetchError("FLEDGE_NOENT", req.url, `${label}: ${local} does not exist`);
    }
    if (!st.isFile()) throw new FetchError("FLEDGE_NOTFILE", req.url, `${label}: ${local} is ${st.isDirectory() ? "a directory" : "not a regular file"}, expected a file`);
    const h = this.hasher(label, req.url, st.size);
    await pipeline(createReadStream(local), h.stream, async (src: AsyncIterable<unknown>) => {
      for await (const _ of src);
    });
    const actual = h.digest();
    if (expected && actual !== expected) throw this.mismatch(label, req.url, local, expected, actual);
    return { path: local, sha256: actual, size: h.size(), url: req.url, fetchedFrom: local, fromCache: false, local: true };
  }

  private hasher(label: string, url: string, total: number | undefined, keepMax = -1) {
    const hash = createHash("sha256");
    let size = 0;
    let kept: Buffer[] | undefined = keepMax >= 0 ? [] : undefined;
    const started = performance.now();
    const max = this.http.options.maxBytes;
    const emit = (done: boolean) => {
      const secs = (performance.now() - started) / 1000;
      this.onProgress?.({ label, url, bytes: size, total, rate: secs > 0 ? size / secs : 0, done });
    };
    const stream = new Transform({
      transform(chunk: Buffer, _enc, cb) {
        size += chunk.length;
        if (size > max) {
          cb(new FetchError("FLEDGE_TOOBIG", url, `${label}: ${url} is larger than the limit of ${max} bytes`));
          return;
        }
        hash.update(chunk);
        if (kept && size <= keepMax) kept.push(chunk);
        else kept = undefined;
        emit(false);
        cb(null, chunk);
      },
      flush(cb) {
        emit(true);
        cb();
      },
    });
    return { stream, digest: () => hash.digest("hex"), size: () => size, data: () => (kept ? Buffer.concat(kept, size) : undefined) };
  }
}
