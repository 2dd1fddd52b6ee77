import { constants, type Stats } from "node:fs";
import { open, stat } from "node:fs/promises";

/**
 * Raised when a path that must be a regular file is something else, or cannot be read.
 * Recognise it by `name` and `code`: `ENOENT`, `EISDIR`, `ESPECIAL` (a FIFO, socket or device),
 * `ETOOBIG`, `EACCES`, `EIO`.
 */
export class SafeFsError extends Error {
  override name = "SafeFsError";
  constructor(
    readonly code: string,
    readonly path: string,
    message: string,
  ) {
    super(message);
  }
}

/** "a FIFO", "a socket", "a character device"… for messages. */
export function describeKind(st: Stats): string {
  if (st.isFile()) return "a regular file";
  if (st.isDirectory()) return "a directory";
  if (st.isFIFO()) return "a FIFO (named pipe)";
  if (st.isSocket()) return "a socket";
  if (st.isCharacterDevice()) return "a character device";
  if (st.isBlockDevice()) return "a block device";
  if (st.isSymbolicLink()) return "a symbolic link";
  return "not a regular file";
}

function notRegular(path: string, st: Stats): SafeFsError {
  return new SafeFsError(st.isDirectory() ? "EISDIR" : "ESPECIAL", path, `${path} is ${describeKind(st)}, not a regular file`);
}

function fromErrno(path: string, err: unknown): SafeFsError {
  const e = err as NodeJS.ErrnoException;
  if (e instanceof SafeFsError) return e;
  const what: Record<string, string> = {
    ENOENT: "does not exist",
    EACCES: "cannot be read: permission denied",
    EPERM: "cannot be read: permission denied",
    ELOOP: "is a symlink loop",
    ENAMETOOLONG: "has a name longer than the system allows",
    ENOTDIR: "does not exist (a parent is not a directory)",
    EISDIR: "is a directory, not a regular file",
  };
  return new SafeFsError(e.code === "EPERM" ? "EACCES" : (e.code ?? "EIO"), path, `${path} ${what[e.code ?? ""] ?? `cannot be read: ${e.message}`}`);
}

/**
 * Stats `path` (following symlinks, as the user named it) and refuses anything but a regular
 * file without opening it, so a FIFO never blocks and a device is never touched.
 */
export async function assertRegularFile(path: string): Promise<Stats> {
  let st: Stats;
  try {
    st = await stat(path);
  } catch (err) {
    throw fromErrno(path, err);
  }
  if (!st.isFile()) throw notRegular(path, st);
  return st;
}

export interface ReadRegularOptions {
  /** Refuse a file larger than this (default 64 MiB). */
  maxBytes?: number;
}

/**
 * Reads a regular file to its end, safely:
 * - refuses FIFOs, sockets and devices before opening them (and again after, by fstat, in case
 *   the path was swapped: the open is non-blocking so even then a FIFO cannot hang us);
 * - reads until EOF rather than trusting `st.size`, so a zero-size pseudo-file (`/proc/cpuinfo`)
 *   gives its real content;
 * - stops at `maxBytes` with a clear error.
 */
export async function readRegularFile(path: string, opts: ReadRegularOptions = {}): Promise<Buffer> {
  const max = opts.maxBytes ?? 64 * 2 ** 20;
  await assertRegularFile(path);
  let fh;
  try {
    fh = await open(path, constants.O_RDONLY | constants.O_NONBLOCK | constants.O_NOCTTY);
  } catch (err) {
    throw fromErrno(path, err);
  }
  try {
    const st = await fh.stat();
    if (!st.isFile()) throw notRegular(path, st);
    const chunks: Buffer[] = [];
    let total = 0;
    for (;;) {
      const buf = Buffer.allocUnsafe(Math.min(Math.max(st.size + 1, 64 * 1024), 8 * 2 ** 20));
      const { bytesRead } = await fh.read(buf, 0, buf.length, total);
      if (bytesRead === 0) break;
      total += bytesRead;
      if (total > max) throw new SafeFsError("ETOOBIG", path, `${path} is larger than ${max} bytes`);
      chunks.push(buf.subarray(0, bytesRead));
    }
    return chunks.length === 1 ? chunks[0]! : Buffer.concat(chunks, total);
  } catch (err) {
    throw fromErrno(path, err);
  } finally {
    await fh.close();
  }
}
