import { createHash } from "node:crypto";
import { createReadStream, createWriteStream } from "node:fs";
import { stat } from "node:fs/promises";
import { fileURLToPath } from "node:url";
import { pipeline } from "node:stream/promises";
import { Transform } from "node:stream";
import { Agent, interceptors, request, type Dispatcher } from "undici";
import { ContentCache, defaultCacheDir } from "./cache.js";
import { FetchError } from "./errors.js";

export interface FetchRequest {
  url: string;
  /** Expected sha256 (`sha256:<hex>` or bare hex, any case). */
  sha256?: string;
  /** What this is, for messages ("busybox"). */
  label?: string;
}

export interface FetchResult {
  /** A path to the verified content (in the cache, or the local file itself). */
  path: string;
  sha256: string;
  size: number;
  /** The URL actually fetched. */
  url: string;
  fromCache: boolean;
}

export interface ProgressEvent {
  label: string;
  url: string;
  bytes: number;
  total?: number;
}

export interface FetcherOptions {
  cacheDir?: string;
  onProgress?: (e: ProgressEvent) => void;
}

/** Normalises `sha256:<hex>` / bare hex to lowercase hex; throws on anything else. */
export function normalizeSha256(s: string): string {
  const hex = s.trim().replace(/^sha256:/i, "").toLowerCase();
  if (!/^[0-9a-f]{64}$/.test(hex)) throw new Error(`not a sha256: ${s}`);
  return hex;
}

function hashingStream(onChunk: (n: number) => void) {
  const hash = createHash("sha256");
  let size = 0;
  const t = new Transform({
    transform(chunk: Buffer, _enc, cb) {
      hash.update(chunk);
      size += chunk.length;
      onChunk(size);
      cb(null, chunk);
    },
  });
  return { stream: t, digest: () => hash.digest("hex"), size: () => size };
}

/** Downloads or reads inputs, verifies them and keeps them in a content-addressed cache. */
export class Fetcher {
  readonly cache: ContentCache;
  private readonly onProgress?: (e: ProgressEvent) => void;

  constructor(opts: FetcherOptions = {}) {
    this.cache = new ContentCache(opts.cacheDir ?? defaultCacheDir());
    this.onProgress = opts.onProgress;
  }

  async fetch(req: FetchRequest): Promise<FetchResult> {
    const label = req.label ?? req.url;
    const expected = req.sha256 ? normalizeSha256(req.sha256) : undefined;
    if (expected && (await this.cache.has(expected))) {
      const path = this.cache.pathFor(expected);
      return { path, sha256: expected, size: (await stat(path)).size, url: req.url, fromCache: true };
    }
    const temp = await this.cache.tempPath();
    const h = hashingStream((bytes) => this.onProgress?.({ label, url: req.url, bytes }));
    try {
      if (/^https?:\/\//i.test(req.url)) {
        await this.download(req.url, temp, h.stream, label);
      } else {
        const local = req.url.startsWith("file://") ? fileURLToPath(req.url) : req.url;
        let st;
        try {
          st = await stat(local);
        } catch {
          throw new FetchError("ENOENT", req.url, `${label}: ${local} does not exist`);
        }
        if (!st.isFile()) throw new FetchError("ENOTFILE", req.url, `${label}: ${local} is not a regular file`);
        await pipeline(createReadStream(local), h.stream, createWriteStream(temp));
      }
      const actual = h.digest();
      if (expected && actual !== expected) {
        throw new FetchError("ECHECKSUM", req.url, `${label}: sha256 mismatch for ${req.url}\n  expected ${expected}\n  actual   ${actual}`);
      }
      const path = await this.cache.commit(temp, actual);
      return { path, sha256: actual, size: h.size(), url: req.url, fromCache: false };
    } catch (err) {
      await this.cache.discard(temp);
      throw err;
    }
  }

  private agent?: Dispatcher;
  private dispatcher(): Dispatcher {
    this.agent ??= new Agent({ connectTimeout: 30_000, headersTimeout: 30_000, bodyTimeout: 30_000 }).compose(
      interceptors.redirect({ maxRedirections: 5 }),
    );
    return this.agent;
  }

  /** Closes idle connections so the process can exit promptly. */
  async close(): Promise<void> {
    await this.agent?.close();
    this.agent = undefined;
  }

  private async download(url: string, dest: string, hasher: Transform, label: string): Promise<void> {
    let res;
    try {
      res = await request(url, { dispatcher: this.dispatcher() });
    } catch (err) {
      throw new FetchError("ENETWORK", url, `${label}: cannot download ${url}: ${(err as Error).message}`, { cause: err });
    }
    if (res.statusCode !== 200) {
      await res.body.dump();
      throw new FetchError(`HTTP${res.statusCode}`, url, `${label}: ${url} answered HTTP ${res.statusCode}`);
    }
    await pipeline(res.body, hasher, createWriteStream(dest));
  }
}
