/** The kinds of entry an ext4 image can hold. */
export type Ext4EntryType = "file" | "dir" | "symlink" | "char" | "block" | "fifo" | "socket";

/**
 * One file in the image. `path` is relative to the image root (`bin/busybox`; a leading slash is
 * accepted). Regular file data comes from exactly one of `data`, `file` (a host path, read while
 * the image is written) or `stream` (`size` then required). A file with `linkTo` is a hardlink to
 * another regular file entry. The shape is the same as `@fledge/cpio`'s `CpioEntry`, so one list
 * of entries can be written as either.
 */
export interface Ext4Entry {
  path: string;
  type: Ext4EntryType;
  /** Permission bits (07777): setuid, setgid and sticky included. The type bits come from `type`. */
  mode: number;
  uid?: number;
  gid?: number;
  /** Seconds since the epoch; defaults to the writer's `mtime`. */
  mtime?: number;
  data?: Uint8Array;
  file?: string;
  /** Where the data starts in `file` (a byte range of a larger file, e.g. a layer tar); default 0. `size` is then required. */
  offset?: number;
  stream?: () => AsyncIterable<Uint8Array>;
  /** Size of `file`/`stream` in bytes; checked while reading. */
  size?: number;
  /** Hardlink: path of another regular file entry. */
  linkTo?: string;
  /** Symlink target. */
  target?: string;
  /** Device numbers for `char` and `block`. */
  major?: number;
  minor?: number;
}

export const TYPE_BITS: Record<Ext4EntryType, number> = {
  socket: 0o140000,
  symlink: 0o120000,
  file: 0o100000,
  block: 0o060000,
  dir: 0o040000,
  char: 0o020000,
  fifo: 0o010000,
};

/** ext4 directory entry file types (`EXT2_FT_*`). */
export const DIRENT_TYPE: Record<Ext4EntryType, number> = {
  file: 1,
  dir: 2,
  char: 3,
  block: 4,
  fifo: 5,
  socket: 6,
  symlink: 7,
};
