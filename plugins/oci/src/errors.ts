/**
 * Every failure of the OCI plugin. Recognised by `name` and `code` (never `instanceof`: a build may
 * load another copy of this package), shown by the CLI with its `hint`.
 *
 * Codes: `FLEDGE_OCI_REFERENCE` (unparsable reference), `FLEDGE_OCI_NOT_FOUND` (unknown repository, tag or
 * digest), `FLEDGE_OCI_AUTH` (credentials missing or refused), `FLEDGE_OCI_PLATFORM` (the index has no image for
 * the build's platform), `FLEDGE_OCI_DIGEST` (content does not match its digest), `FLEDGE_OCI_TRUNCATED` (a blob
 * ended early), `FLEDGE_OCI_ESCAPE` (a layer entry would land outside the image root), `FLEDGE_OCI_TOO_BIG`
 * (the unpacked image passes the size cap), `FLEDGE_OCI_FORMAT` (a manifest, config, layout, archive or
 * layer that is not what the image spec says), `FLEDGE_OCI_UNSUPPORTED` (a valid image fledge cannot use),
 * `FLEDGE_OCI_OFFLINE` (needed content is not in the cache and the network is off), `FLEDGE_OCI_REGISTRY` (the
 * registry failed or answered something unusable).
 */
export class OciError extends Error {
  override name = "OciError";
  readonly code: string;
  /** How to fix it, when we can tell. */
  readonly hint?: string;
  constructor(code: string, message: string, options?: { cause?: unknown; hint?: string }) {
    super(message, options?.cause !== undefined ? { cause: options.cause } : undefined);
    this.code = code;
    this.hint = options?.hint;
  }
}

export function isOciError(e: unknown): e is OciError {
  return e instanceof Error && e.name === "OciError" && typeof (e as { code?: unknown }).code === "string";
}
