import { STATUS_CODES } from "node:http";
import type { Readable } from "node:stream";
import { setTimeout as sleep } from "node:timers/promises";
import type { Agent, Dispatcher } from "undici";

// undici takes ~80 ms to load: only a build that really downloads pays for it.
let undiciModule: Promise<typeof import("undici")> | undefined;
const undici = () => (undiciModule ??= import("undici"));
import { FetchError, isFetchError } from "./errors.js";

/** Network behaviour. Every limit is bounded; tests shorten them. */
export interface HttpOptions {
  /** TCP/TLS connect timeout (default 15 s). */
  connectTimeoutMs?: number;
  /** No response headers, or no body data, for this long fails the attempt (default 30 s). */
  idleTimeoutMs?: number;
  /** Retries after the first attempt on network errors, timeouts, 429 and 5xx (default 4). */
  retries?: number;
  /** First backoff delay; doubled each retry, with jitter (default 500 ms). */
  retryBaseMs?: number;
  /** Largest backoff delay (default 10 s). */
  retryMaxMs?: number;
  /** A `Retry-After` longer than this fails instead of waiting (default 60 s). */
  maxRetryAfterMs?: number;
  /** Redirects followed per request (default 10). */
  maxRedirects?: number;
  /** Largest body accepted (default 2 GiB). */
  maxBytes?: number;
  /** User-Agent header. */
  userAgent?: string;
}

export const HTTP_DEFAULTS: Required<HttpOptions> = {
  connectTimeoutMs: 15_000,
  idleTimeoutMs: 30_000,
  retries: 4,
  retryBaseMs: 500,
  retryMaxMs: 10_000,
  maxRetryAfterMs: 60_000,
  maxRedirects: 10,
  maxBytes: 2 * 1024 * 1024 * 1024,
  userAgent: "fledge (+https://github.com/fledge/fledge)",
};

export interface ResponseInfo {
  /** The URL that answered 200, after redirects. */
  finalUrl: string;
  headers: Record<string, string | string[] | undefined>;
  /** Content-Length, when the server sent one. */
  total?: number;
}

export interface GetOptions {
  headers?: Record<string, string>;
  /** What this is, for messages ("busybox"). */
  label: string;
  /** Consumes the body of a 200 answer. Called again (from scratch) for each retry. */
  sink: (body: Readable, info: ResponseInfo) => Promise<void>;
  /** Largest body for this request (overrides `maxBytes`). */
  maxBytes?: number;
}

export type HttpLog = (level: "debug" | "info" | "warn", message: string) => void;

/** Node and undici error codes that mean "the network failed; trying again may help". */
const RETRIABLE_CODES = new Set([
  "ECONNRESET",
  "ECONNREFUSED",
  "ECONNABORTED",
  "EPIPE",
  "ETIMEDOUT",
  "EAI_AGAIN",
  "ENETUNREACH",
  "ENETDOWN",
  "EHOSTUNREACH",
  "UND_ERR_CONNECT_TIMEOUT",
  "UND_ERR_HEADERS_TIMEOUT",
  "UND_ERR_BODY_TIMEOUT",
  "UND_ERR_SOCKET",
  "UND_ERR_CLOSED",
]);

/** Thrown inside an attempt when another attempt may succeed. */
class Retriable extends Error {
  constructor(
    message: string,
    readonly retryAfterMs?: number,
    readonly code = "ENETWORK",
    readonly status?: number,
    options?: { cause?: unknown },
  ) {
    super(message, options);
  }
}

function errCode(err: unknown): string | undefined {
  let cur: unknown = err;
  for (let i = 0; i < 4 && cur; i++) {
    const code = (cur as { code?: unknown }).code;
    if (typeof code === "string") return code;
    cur = (cur as { cause?: unknown }).cause;
  }
  return undefined;
}

function describeNetworkError(err: unknown, o: Required<HttpOptions>): string {
  const code = errCode(err);
  switch (code) {
    case "UND_ERR_CONNECT_TIMEOUT":
      return `could not connect within ${o.connectTimeoutMs} ms`;
    case "UND_ERR_HEADERS_TIMEOUT":
      return `no response within ${o.idleTimeoutMs} ms`;
    case "UND_ERR_BODY_TIMEOUT":
      return `download stalled: no data for ${o.idleTimeoutMs} ms`;
    case "ECONNREFUSED":
      return "connection refused";
    case "ENOTFOUND":
      return "host not found";
    default:
      return `${(err as Error)?.message ?? String(err)}${code ? ` (${code})` : ""}`;
  }
}

/** `Retry-After` as milliseconds: delta-seconds or an HTTP date. */
export function parseRetryAfter(value: string | string[] | undefined, now = Date.now()): number | undefined {
  const v = Array.isArray(value) ? value[0] : value;
  if (!v) return undefined;
  if (/^\s*\d+\s*$/.test(v)) return Number(v) * 1000;
  const t = Date.parse(v);
  return Number.isNaN(t) ? undefined : Math.max(0, t - now);
}

function header(h: ResponseInfo["headers"], name: string): string | undefined {
  const v = h[name];
  return Array.isArray(v) ? v[0] : v;
}

const REDIRECTS = new Set([301, 302, 303, 307, 308]);

/**
 * GET over undici with bounded timeouts, retries (exponential backoff with jitter, honouring
 * `Retry-After`), redirects followed by hand (so a loop is named as one) and a size limit.
 */
export class HttpClient {
  readonly options: Required<HttpOptions>;
  #agent?: Agent;

  constructor(
    options: HttpOptions = {},
    private readonly log: HttpLog = () => {},
  ) {
    this.options = { ...HTTP_DEFAULTS, ...Object.fromEntries(Object.entries(options).filter(([, v]) => v !== undefined)) };
  }

  private async dispatcher(): Promise<Dispatcher> {
    const { Agent } = await undici();
    this.#agent ??= new Agent({
      connectTimeout: this.options.connectTimeoutMs,
      headersTimeout: this.options.idleTimeoutMs,
      bodyTimeout: this.options.idleTimeoutMs,
    });
    return this.#agent;
  }

  async close(): Promise<void> {
    const a = this.#agent;
    this.#agent = undefined;
    await a?.close();
  }

  /** Backoff before retry `n` (1-based): base·2^(n-1), capped, with "equal jitter". */
  backoff(n: number): number {
    const o = this.options;
    const ceiling = Math.min(o.retryMaxMs, o.retryBaseMs * 2 ** (n - 1));
    return Math.round(ceiling / 2 + Math.random() * (ceiling / 2));
  }

  async get(url: string, opts: GetOptions): Promise<ResponseInfo> {
    const o = this.options;
    const attempts = o.retries + 1;
    let last: Retriable | undefined;
    for (let attempt = 1; attempt <= attempts; attempt++) {
      try {
        return await this.attempt(url, opts);
      } catch (err) {
        let r: Retriable;
        if (err instanceof Retriable) r = err;
        else if (isFetchError(err)) throw err;
        else {
          const code = errCode(err);
          if (!code || !RETRIABLE_CODES.has(code)) {
            throw new FetchError("ENETWORK", url, `${opts.label}: cannot download ${url}: ${describeNetworkError(err, o)}`, {
              cause: err,
            });
          }
          const timeout = code.includes("TIMEOUT");
          r = new Retriable(describeNetworkError(err, o), undefined, timeout ? "ETIMEOUT" : "ENETWORK", undefined, { cause: err });
        }
        last = r;
        if (attempt === attempts) break;
        let wait = this.backoff(attempt);
        if (r.retryAfterMs !== undefined) {
          if (r.retryAfterMs > o.maxRetryAfterMs)
            throw new FetchError(r.code, url, `${opts.label}: ${url}: ${r.message}; the server asks to retry after ${Math.ceil(r.retryAfterMs / 1000)} s, longer than fledge waits (${o.maxRetryAfterMs / 1000} s)`, {
              status: r.status,
              hint: "try again later, or use a mirrors entry ([fetch] mirrors or FLEDGE_MIRRORS)",
            });
          wait = Math.max(wait, r.retryAfterMs);
        }
        this.log("info", `${opts.label}: ${r.message}; retry ${attempt}/${o.retries} in ${(wait / 1000).toFixed(1)} s`);
        await sleep(wait);
      }
    }
    throw new FetchError(last!.code, url, `${opts.label}: cannot download ${url}: ${last!.message} (gave up after ${attempts} attempts)`, {
      cause: last!.cause ?? last,
      status: last!.status,
      hint: last!.code === "ETIMEOUT" ? "check the network or use a closer mirror ([fetch] mirrors or FLEDGE_MIRRORS)" : undefined,
    });
  }

  /** One attempt: follow redirects, then hand a 200 body to the sink. */
  private async attempt(url: string, opts: GetOptions): Promise<ResponseInfo> {
    const o = this.options;
    const chain: string[] = [url];
    let current = url;
    let headers: Record<string, string> = { "user-agent": o.userAgent, ...opts.headers };
    for (;;) {
      const { request } = await undici();
      const res = await request(current, { method: "GET", headers, dispatcher: await this.dispatcher() });
      const via = chain.length > 1 ? ` (redirected from ${chain[0]})` : "";
      if (REDIRECTS.has(res.statusCode)) {
        await res.body.dump();
        const loc = header(res.headers, "location");
        if (!loc) throw new FetchError("EREDIRECT", url, `${opts.label}: ${current} answered HTTP ${res.statusCode} without a Location header${via}`);
        const next = new URL(loc, current);
        if (next.protocol !== "http:" && next.protocol !== "https:")
          throw new FetchError("EREDIRECT", url, `${opts.label}: ${current} redirects to ${next.href}, which is not http(s)`);
        if (chain.includes(next.href))
          throw new FetchError("EREDIRECT", url, `${opts.label}: redirect loop: ${[...chain, next.href].join(" → ")}`, {
            hint: "the server (or a mirror) is misconfigured; fix the URL or the mirror",
          });
        if (chain.length > o.maxRedirects)
          throw new FetchError("EREDIRECT", url, `${opts.label}: more than ${o.maxRedirects} redirects starting at ${url} (last ${next.href})`);
        // Credentials go only to the origin they were meant for.
        if (new URL(current).origin !== next.origin) {
          const { authorization: _a, ...rest } = headers;
          headers = rest;
        }
        chain.push(next.href);
        current = next.href;
        continue;
      }
      const status = res.statusCode;
      if (status === 200) {
        const len = header(res.headers, "content-length");
        const total = len !== undefined && /^\d+$/.test(len) ? Number(len) : undefined;
        const max = opts.maxBytes ?? o.maxBytes;
        if (total !== undefined && total > max) {
          res.body.destroy();
          throw new FetchError("ETOOBIG", url, `${opts.label}: ${current} is ${total} bytes, more than the limit of ${max}`);
        }
        const info: ResponseInfo = { finalUrl: current, headers: res.headers, total };
        await opts.sink(res.body, info);
        return info;
      }
      const text = await res.body.text().catch(() => "");
      const reason = `HTTP ${status} ${STATUS_CODES[status] ?? ""}`.trim();
      if ((status === 403 || status === 429) && header(res.headers, "x-ratelimit-remaining") === "0") {
        const reset = Number(header(res.headers, "x-ratelimit-reset"));
        const when = Number.isFinite(reset) && reset > 0 ? ` until ${new Date(reset * 1000).toISOString()}` : "";
        throw new FetchError("ERATELIMIT", url, `${opts.label}: rate limit reached at ${current} (${reason}); no more requests allowed${when}`, {
          status,
          hint: opts.headers?.authorization
            ? "the token in GITHUB_TOKEN has used up its quota too: wait, or pin the agent with fledge.lock / a local or http source"
            : "set GITHUB_TOKEN to a GitHub token to raise the limit (unauthenticated clients get 60 requests an hour)",
        });
      }
      // 403 with Retry-After is GitHub's "secondary rate limit": waiting helps.
      if (status === 429 || (status >= 500 && status !== 501) || (status === 403 && res.headers["retry-after"] !== undefined)) {
        throw new Retriable(`${current} answered ${reason}${via}`, parseRetryAfter(res.headers["retry-after"]), "EHTTP", status);
      }
      const detail = text && text.length < 200 && !/<html/i.test(text) ? `: ${text.trim()}` : "";
      throw new FetchError("EHTTP", url, `${opts.label}: ${current} answered ${reason}${via}${detail}`, {
        status,
        hint: status === 404 ? "check the URL (and any mirror that rewrote it)" : undefined,
      });
    }
  }
}
