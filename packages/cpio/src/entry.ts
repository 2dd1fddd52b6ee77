/** The kinds of entry a newc archive can hold. */
export type CpioEntryType = "file" | "dir" | "symlink" | "char" | "block" | "fifo" | "socket";

/**
 * One archive member. `path` is relative to the archive root, without a leading slash
 * (`bin/busybox`). Regular file data comes from exactly one of `data` (bytes), `file` (a host
 * path read while the archive is written) or `stream` (a function that opens the data; `size` is
 * then required). A file with `linkTo` is a hardlink to that other file entry: the data is stored
 * once and every name of the group gets the same inode and the right `nlink`.
 */
export interface CpioEntry {
  path: string;
  type: CpioEntryType;
  /** Permission bits (07777). The file-type bits are derived from `type`. */
  mode: number;
  uid?: number;
  gid?: number;
  /** Seconds since the epoch; defaults to the writer's `mtime`. */
  mtime?: number;
  /** Regular file contents as bytes. */
  data?: Uint8Array;
  /** Regular file contents read from this host path. */
  file?: string;
  /**
   * With `file`: the contents are the `size` bytes at this byte offset of the host file (a range,
   * e.g. a member of an uncompressed tar); `size` is then required, the file must hold at least
   * `offset + size` bytes, and what follows the range is not checked.
   */
  offset?: number;
  /** Regular file contents from a stream opened on demand (may be called more than once). */
  stream?: () => AsyncIterable<Uint8Array>;
  /** Size of `file`/`stream` in bytes (checked while reading; required for `stream`). */
  size?: number;
  /** Hardlink: path of another regular file entry in the same archive. */
  linkTo?: string;
  /** Symlink target. */
  target?: string;
  /** Device numbers for `char` and `block`. */
  major?: number;
  minor?: number;
}

export const S_IFMT = 0o170000;
export const TYPE_BITS: Record<CpioEntryType, number> = {
  socket: 0o140000,
  symlink: 0o120000,
  file: 0o100000,
  block: 0o060000,
  dir: 0o040000,
  char: 0o020000,
  fifo: 0o010000,
};

export function typeFromMode(mode: number): CpioEntryType | undefined {
  const bits = mode & S_IFMT;
  for (const [type, value] of Object.entries(TYPE_BITS)) {
    if (value === bits) return type as CpioEntryType;
  }
  return undefined;
}
