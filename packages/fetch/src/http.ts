import { Agent as HttpAgent, request as httpRequest, STATUS_CODES, type ClientRequest, type IncomingMessage } from "node:http";
import { Agent as HttpsAgent, request as httpsRequest } from "node:https";
import { Readable } from "node:stream";
import { setTimeout as sleep } from "node:timers/promises";
import { FetchError, isFetchError } from "./errors.js";

/** Network behaviour. Every limit is bounded; tests shorten them. */
export interface HttpOptions {
  /** TCP/TLS connect timeout (default 15 s). */
  connectTimeoutMs?: number;
  /** No response headers, or no body data while fledge is ready to read, for this long fails the attempt (default 30 s). */
  idleTimeoutMs?: number;
  /**
   * The whole download — every attempt, redirect and backoff — must finish within this
   * (default 15 min). A server that trickles a byte now and then never trips the idle
   * timeout; this stops it. Not retried.
   */
  deadlineMs?: number;
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
  deadlineMs: 15 * 60_000,
  retries: 4,
  retryBaseMs: 500,
  retryMaxMs: 10_000,
  maxRetryAfterMs: 60_000,
  maxRedirects: 10,
  maxBytes: 2 * 1024 * 1024 * 1024,
  userAgent: "fledge (+https://github.com/fledge/fledge)",
};

/** Environment variables that set the timeouts (durations such as `90s`, `15m`, `500ms`; a bare number is seconds). */
export const HTTP_ENV = {
  deadlineMs: "FLEDGE_DOWNLOAD_TIMEOUT",
  idleTimeoutMs: "FLEDGE_DOWNLOAD_IDLE_TIMEOUT",
  connectTimeoutMs: "FLEDGE_CONNECT_TIMEOUT",
} as const;

/** `"90s"`, `"15m"`, `"1h"`, `"500ms"` or `"30"` (seconds) as milliseconds. */
export function parseDuration(value: string, name: string): number {
  const m = /^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|min|h)?\s*$/i.exec(value);
  const n = m ? Number(m[1]) * ({ ms: 1, s: 1000, m: 60_000, min: 60_000, h: 3_600_000 }[(m[2] ?? "s").toLowerCase()] ?? 1000) : NaN;
  if (!Number.isFinite(n) || n <= 0) throw new FetchError("EINPUT", "", `${name}=${value} is not a duration`, { hint: `write it as 90s, 15m, 1h or 500ms (a bare number is seconds)` });
  return Math.round(n);
}

/** The timeouts set in `env` (see `HTTP_ENV`). */
export function httpOptionsFromEnv(env: NodeJS.ProcessEnv): HttpOptions {
  const out: HttpOptions = {};
  for (const [key, name] of Object.entries(HTTP_ENV) as [keyof typeof HTTP_ENV, string][]) {
    const v = env[name];
    if (v !== undefined && v !== "") out[key] = parseDuration(v, name);
  }
  return out;
}

/** `300 ms`, `30 s`, `15 min`: how people read a limit. */
export function formatDuration(ms: number): string {
  if (ms < 1000) return `${ms} ms`;
  if (ms % 60_000 === 0) return `${ms / 60_000} min`;
  if (ms < 120_000 || ms % 1000 !== 0) return `${+(ms / 1000).toFixed(1)} s`;
  return `${+(ms / 60_000).toFixed(1)} min`;
}

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

/** Error codes that mean "the network failed; trying again may help" (Node's and fledge's own). */
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
  "EPROTO",
  "FLEDGE_CONNECT_TIMEOUT",
  "FLEDGE_HEADERS_TIMEOUT",
  "FLEDGE_BODY_TIMEOUT",
  "FLEDGE_TRUNCATED",
]);

/** A network failure inside one attempt, with fledge's own code when Node has none. */
class NetError extends Error {
  constructor(
    readonly code: string,
    message: string,
  ) {
    super(message);
  }
}

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

function describeNetworkError(err: unknown): string {
  const code = errCode(err);
  if (err instanceof NetError) return err.message;
  switch (code) {
    case "ECONNREFUSED":
      return "connection refused";
    case "ENOTFOUND":
      return "host not found";
    case "ECONNRESET":
      return "the connection was reset";
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

/** Raised (as the abort reason) when a download's total deadline passes. */
class DeadlineExceeded extends Error {}

/**
 * GET over Node's own `http`/`https` with bounded timeouts (connect, idle, and a total
 * deadline), retries (exponential backoff with jitter, honouring `Retry-After`), redirects
 * followed by hand (so a loop is named as one) and a size limit.
 *
 * Why not undici: undici 7 can throw an uncatchable `assert(!this.paused)` when a server closes
 * the connection right after a Content-Length body while the reader is slow
 * (nodejs/undici#5360); the fix is only in undici 8, which needs Node ≥ 22.19, and fledge runs on
 * Node 20 too. Every failure here is a `FetchError` naming the URL.
 */
export class HttpClient {
  readonly options: Required<HttpOptions>;
  #http?: HttpAgent;
  #https?: HttpsAgent;

  constructor(
    options: HttpOptions = {},
    private readonly log: HttpLog = () => {},
  ) {
    this.options = { ...HTTP_DEFAULTS, ...Object.fromEntries(Object.entries(options).filter(([, v]) => v !== undefined)) };
  }

  private agent(url: URL): HttpAgent {
    if (url.protocol === "https:") {
      this.#https ??= new HttpsAgent({ keepAlive: true, scheduling: "lifo" });
      return this.#https;
    }
    this.#http ??= new HttpAgent({ keepAlive: true, scheduling: "lifo" });
    return this.#http;
  }

  async close(): Promise<void> {
    this.#http?.destroy();
    this.#https?.destroy();
    this.#http = this.#https = undefined;
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
    const deadline = new AbortController();
    const started = Date.now();
    const progress = { bytes: 0, total: undefined as number | undefined, current: url };
    const timer = setTimeout(() => deadline.abort(new DeadlineExceeded()), o.deadlineMs);
    const deadlineError = (cause: unknown) => {
      const got = progress.total !== undefined ? `${progress.bytes} of ${progress.total} bytes` : `${progress.bytes} bytes`;
      return new FetchError(
        "ETIMEOUT",
        url,
        `${opts.label}: cannot download ${url}: not finished within ${formatDuration(o.deadlineMs)}, the limit for one download (${got} received${progress.current !== url ? ` from ${progress.current}` : ""})`,
        { cause, hint: `a slow or trickling server; use a closer mirror ([fetch] mirrors or FLEDGE_MIRRORS), or allow longer with ${HTTP_ENV.deadlineMs} (e.g. ${HTTP_ENV.deadlineMs}=1h)` },
      );
    };
    let last: Retriable | undefined;
    try {
      for (let attempt = 1; attempt <= attempts; attempt++) {
        try {
          return await this.attempt(url, opts, deadline.signal, progress);
        } catch (err) {
          if (deadline.signal.aborted) throw deadlineError(err);
          let r: Retriable;
          if (err instanceof Retriable) r = err;
          else if (isFetchError(err)) throw err;
          else {
            const code = errCode(err);
            if (!code || !RETRIABLE_CODES.has(code)) {
              throw new FetchError("ENETWORK", url, `${opts.label}: cannot download ${url}: ${describeNetworkError(err)}`, { cause: err });
            }
            const timeout = code.includes("TIMEOUT") || code === "ETIMEDOUT";
            r = new Retriable(describeNetworkError(err), undefined, timeout ? "ETIMEOUT" : "ENETWORK", undefined, { cause: err });
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
          if (Date.now() - started + wait >= o.deadlineMs) {
            throw new FetchError(r.code, url, `${opts.label}: cannot download ${url}: ${r.message}; no time left to retry within ${formatDuration(o.deadlineMs)}, the limit for one download`, {
              cause: r.cause ?? r,
              status: r.status,
              hint: `allow longer with ${HTTP_ENV.deadlineMs}, or use a closer mirror ([fetch] mirrors or FLEDGE_MIRRORS)`,
            });
          }
          this.log("info", `${opts.label}: ${r.message}; retry ${attempt}/${o.retries} in ${(wait / 1000).toFixed(1)} s`);
          try {
            await sleep(wait, undefined, { signal: deadline.signal });
          } catch (e) {
            throw deadlineError(e);
          }
        }
      }
    } finally {
      clearTimeout(timer);
    }
    const timeoutHint =
      last!.code === "ETIMEOUT" ? `check the network or use a closer mirror ([fetch] mirrors or FLEDGE_MIRRORS); the limits are set by ${HTTP_ENV.connectTimeoutMs} and ${HTTP_ENV.idleTimeoutMs}` : undefined;
    throw new FetchError(last!.code, url, `${opts.label}: cannot download ${url}: ${last!.message} (gave up after ${attempts} attempts)`, {
      cause: last!.cause ?? last,
      status: last!.status,
      hint: timeoutHint,
    });
  }

  /**
   * Sends one GET and resolves with the response once its headers arrive. Fails on a connect
   * timeout, on no headers within the idle timeout, and when `signal` (the deadline) aborts.
   */
  private send(target: URL, headers: Record<string, string>, signal: AbortSignal): Promise<{ req: ClientRequest; res: IncomingMessage }> {
    const o = this.options;
    return new Promise((resolve, reject) => {
      const request = target.protocol === "https:" ? httpsRequest : httpRequest;
      const req = request(target, { method: "GET", headers, agent: this.agent(target), signal });
      let timer: NodeJS.Timeout | undefined;
      const fail = (err: Error) => {
        clearTimeout(timer);
        req.destroy(err);
        reject(err);
      };
      const waitForHeaders = () => {
        clearTimeout(timer);
        timer = setTimeout(() => fail(new NetError("FLEDGE_HEADERS_TIMEOUT", `no response within ${formatDuration(o.idleTimeoutMs)}`)), o.idleTimeoutMs);
      };
      req.on("socket", (socket) => {
        if ((socket as { connecting?: boolean }).connecting) {
          timer = setTimeout(() => fail(new NetError("FLEDGE_CONNECT_TIMEOUT", `could not connect within ${formatDuration(o.connectTimeoutMs)}`)), o.connectTimeoutMs);
          socket.once(target.protocol === "https:" ? "secureConnect" : "connect", waitForHeaders);
        } else waitForHeaders();
      });
      req.on("error", (err) => {
        clearTimeout(timer);
        reject(signal.aborted ? signal.reason : err);
      });
      req.on("response", (res) => {
        clearTimeout(timer);
        resolve({ req, res });
      });
      req.end();
    });
  }

  /**
   * The body as a stream fledge controls: the idle timer runs only while fledge waits for the
   * server (not while a slow consumer holds it back), a connection closed early is an error,
   * and every error is a `NetError` or the deadline's reason.
   */
  private body(req: ClientRequest, res: IncomingMessage, signal: AbortSignal, progress: { bytes: number; total?: number }): Readable {
    const o = this.options;
    let timer: NodeJS.Timeout | undefined;
    let received = 0;
    let ended = false;
    const total = progress.total;
    const stop = () => {
      clearTimeout(timer);
      timer = undefined;
    };
    const arm = () => {
      stop();
      timer = setTimeout(() => body.destroy(new NetError("FLEDGE_BODY_TIMEOUT", `download stalled: no data for ${formatDuration(o.idleTimeoutMs)}`)), o.idleTimeoutMs);
    };
    const body = new Readable({
      highWaterMark: 1024 * 1024,
      read() {
        if (ended) return;
        arm();
        res.resume();
      },
      destroy(err, cb) {
        stop();
        signal.removeEventListener("abort", onAbort);
        if (!ended) {
          res.destroy();
          req.destroy();
        }
        cb(err);
      },
    });
    const onAbort = () => body.destroy(signal.reason as Error);
    signal.addEventListener("abort", onAbort, { once: true });
    const truncated = () => new NetError("FLEDGE_TRUNCATED", `the connection closed after ${received}${total !== undefined ? ` of ${total}` : ""} bytes`);
    res.pause();
    res.on("data", (chunk: Buffer) => {
      received += chunk.length;
      progress.bytes = received;
      if (body.push(chunk)) arm();
      else {
        // The consumer is slow: stop reading and stop the idle clock until it asks again.
        stop();
        res.pause();
      }
    });
    res.on("end", () => {
      stop();
      if (!res.complete || (total !== undefined && received !== total)) return body.destroy(truncated());
      ended = true;
      body.push(null);
    });
    res.on("aborted", () => body.destroy(truncated()));
    res.on("error", (err) => body.destroy((err as NodeJS.ErrnoException).code === "ECONNRESET" ? truncated() : err));
    res.on("close", () => {
      if (!ended) body.destroy(truncated());
    });
    req.on("error", (err) => body.destroy(signal.aborted ? (signal.reason as Error) : err));
    return body;
  }

  /** Reads at most `max` bytes of an error answer (for its message), within the idle timeout. */
  private async errorText(req: ClientRequest, res: IncomingMessage, signal: AbortSignal): Promise<string> {
    const chunks: Buffer[] = [];
    let n = 0;
    try {
      for await (const c of this.body(req, res, signal, { bytes: 0 })) {
        chunks.push(c as Buffer);
        n += (c as Buffer).length;
        if (n > 4096) break;
      }
    } catch {
      // the message is a courtesy; the status says what matters
    }
    return Buffer.concat(chunks).toString("utf8");
  }

  /** One attempt: follow redirects, then hand a 200 body to the sink. */
  private async attempt(url: string, opts: GetOptions, signal: AbortSignal, progress: { bytes: number; total?: number; current: string }): Promise<ResponseInfo> {
    const o = this.options;
    const chain: string[] = [url];
    let current = url;
    let headers: Record<string, string> = { "user-agent": o.userAgent, ...opts.headers };
    progress.bytes = 0;
    progress.total = undefined;
    for (;;) {
      let target: URL;
      try {
        target = new URL(current);
      } catch {
        throw new FetchError("EINPUT", url, `${opts.label}: ${current} is not a valid URL`);
      }
      progress.current = current;
      const { req, res } = await this.send(target, headers, signal);
      const status = res.statusCode ?? 0;
      const via = chain.length > 1 ? ` (redirected from ${chain[0]})` : "";
      if (REDIRECTS.has(status)) {
        res.on("error", () => {}).resume();
        const loc = header(res.headers, "location");
        if (!loc) throw new FetchError("EREDIRECT", url, `${opts.label}: ${current} answered HTTP ${status} without a Location header${via}`);
        const next = new URL(loc, current);
        if (next.protocol !== "http:" && next.protocol !== "https:") throw new FetchError("EREDIRECT", url, `${opts.label}: ${current} redirects to ${next.href}, which is not http(s)`);
        if (chain.includes(next.href))
          throw new FetchError("EREDIRECT", url, `${opts.label}: redirect loop: ${[...chain, next.href].join(" → ")}`, {
            hint: "the server (or a mirror) is misconfigured; fix the URL or the mirror",
          });
        if (chain.length > o.maxRedirects) throw new FetchError("EREDIRECT", url, `${opts.label}: more than ${o.maxRedirects} redirects starting at ${url} (last ${next.href})`);
        // Credentials go only to the origin they were meant for.
        if (new URL(current).origin !== next.origin) {
          const { authorization: _a, ...rest } = headers;
          headers = rest;
        }
        chain.push(next.href);
        current = next.href;
        continue;
      }
      if (status === 200) {
        const len = header(res.headers, "content-length");
        const total = len !== undefined && /^\d+$/.test(len) ? Number(len) : undefined;
        const max = opts.maxBytes ?? o.maxBytes;
        if (total !== undefined && total > max) {
          res.on("error", () => {}).destroy();
          throw new FetchError("ETOOBIG", url, `${opts.label}: ${current} is ${total} bytes, more than the limit of ${max}`);
        }
        progress.total = total;
        const info: ResponseInfo = { finalUrl: current, headers: res.headers, total };
        const body = this.body(req, res, signal, progress);
        try {
          await opts.sink(body, info);
        } finally {
          body.destroy();
        }
        return info;
      }
      const text = await this.errorText(req, res, signal);
      if (signal.aborted) throw signal.reason;
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
        headers: res.headers,
        hint: status === 404 ? "check the URL (and any mirror that rewrote it)" : undefined,
      });
    }
  }
}
