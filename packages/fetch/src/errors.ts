/**
 * Raised when an input cannot be downloaded, read or verified. Recognise it by `name` and
 * `code`, not `instanceof` (a plugin may carry its own copy of this package).
 *
 * Codes: `ENETWORK` (connection failed or dropped), `ETIMEOUT`, `EHTTP` (an HTTP status that
 * is not retried), `ERATELIMIT`, `EREDIRECT` (loop, too many, bad target), `ETOOBIG`,
 * `ECHECKSUM`, `ECACHE` (a cache entry no longer matches its sha256, offline), `EOFFLINE` (not in
 * the cache and the network is off), `ENOENT`, `ENOTFILE`,
 * `ERELEASE` (a GitHub release cannot be resolved), `EINPUT` (a malformed request).
 */
export class FetchError extends Error {
  override name = "FetchError";
  readonly code: string;
  /** The URL as requested (before mirrors). */
  readonly url: string;
  /** How to fix it, when we can tell. */
  readonly hint?: string;
  /** HTTP status, for `EHTTP` / `ERATELIMIT`. */
  readonly status?: number;
  /** The response headers of an `EHTTP` answer (e.g. a 401's `WWW-Authenticate`). */
  readonly headers?: Record<string, string | string[] | undefined>;
  constructor(code: string, url: string, message: string, options?: { cause?: unknown; hint?: string; status?: number; headers?: Record<string, string | string[] | undefined> }) {
    super(message, options?.cause !== undefined ? { cause: options.cause } : undefined);
    this.code = code;
    this.url = url;
    this.hint = options?.hint;
    this.status = options?.status;
    this.headers = options?.headers;
  }
}

export function isFetchError(e: unknown): e is FetchError {
  return e instanceof Error && e.name === "FetchError" && typeof (e as { code?: unknown }).code === "string";
}
