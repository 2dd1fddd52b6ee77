/** Raised for an entry or archive the newc format (or the kernel) cannot represent or read. */
export class CpioError extends Error {
  override name = "CpioError";
  readonly code: string;
  readonly path?: string;
  constructor(code: string, message: string, path?: string) {
    super(message);
    this.code = code;
    this.path = path;
  }
}
