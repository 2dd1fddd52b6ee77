/**
 * Raised for an entry or archive the newc format (or the kernel) cannot represent or read. Its
 * `code` follows fledge's one scheme, `FLEDGE_<WHAT>`: a code written `E<WHAT>` is normalised
 * (`ETRUNC` → `FLEDGE_TRUNC`, `E2BIG` → `FLEDGE_TOOBIG`).
 */
export class CpioError extends Error {
  override name = "CpioError";
  readonly code: string;
  readonly path?: string;
  constructor(code: string, message: string, path?: string) {
    super(message);
    this.code = code.startsWith("FLEDGE_") ? code : code === "E2BIG" ? "FLEDGE_TOOBIG" : `FLEDGE_${code.replace(/^E/, "")}`;
    this.path = path;
  }
}
