/**
 * fledge's one error-code scheme is `FLEDGE_<WHAT>`; this package's codes were once written
 * `E<WHAT>`, and a code given that way is normalised to the scheme (`ECHECKSUM` →
 * `FLEDGE_CHECKSUM`).
 */
export function fledgeCode(code: string): string {
  return code.startsWith("FLEDGE_") ? code : `FLEDGE_${code.replace(/^E/, "")}`;
}

/**
 * Raised when an input cannot be downloaded, read or verified. Recognise it by `name` and
 * `code`, not `instanceof` (a plugin may carry its own copy of this package).
 *
 * Codes: `FLEDGE_NETWORK` (connection failed or dropped), `FLEDGE_TIMEOUT`, `FLEDGE_HTTP` (an
 * HTTP status that is not retried), `FLEDGE_RATELIMIT`, `FLEDGE_REDIRECT` (loop, too many, bad
 * target), `FLEDGE_TOOBIG`, `FLEDGE_CHECKSUM`, `FLEDGE_CACHE` (a cache entry no longer matches
 * its sha256, offline), `FLEDGE_OFFLINE` (not in the cache and the network is off),
 * `FLEDGE_NOENT`, `FLEDGE_NOTFILE`, `FLEDGE_RELEASE` (a GitHub release cannot be resolved),
 * `FLEDGE_INPUT` (a malformed request).
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
    this.code = fledgeCode(code);
    this.url = url;
    this.hint = options?.hint;
    this.status = options?.status;
    this.headers = options?.headers;
  }
}

export function isFetchError(e: unknown): e is FetchError {
  return e instanceof Error && e.name === "FetchError" && typeof (e as { code?: unknown }).code === "string";
}
