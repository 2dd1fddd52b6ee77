/** The kinds of entry a newc archive can hold. */
export type CpioEntryType = "file" | "dir" | "symlink" | "char" | "block" | "fifo" | "socket";

/**
 * One archive member. `path` is relative to the archive root, without a leading slash
 * (`bin/busybox`). Regular file data comes from `data` (bytes) or `file` (a host path that is
 * read while the archive is written).
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
  /** Size of `file` in bytes, when known in advance (checked while reading). */
  size?: number;
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
