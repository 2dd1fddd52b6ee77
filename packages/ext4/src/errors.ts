/** Raised for an entry ext4 cannot hold, a host file that changed while it was read, or a bad option. */
export class Ext4Error extends Error {
  override name = "Ext4Error";
  readonly code: string;
  readonly path?: string;
  constructor(code: string, message: string, path?: string) {
    super(message);
    this.code = code;
    this.path = path;
  }
}
