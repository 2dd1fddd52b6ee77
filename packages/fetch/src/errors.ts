/** Raised when an input cannot be downloaded, read or verified. */
export class FetchError extends Error {
  override name = "FetchError";
  readonly code: string;
  readonly url: string;
  constructor(code: string, url: string, message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.code = code;
    this.url = url;
  }
}
