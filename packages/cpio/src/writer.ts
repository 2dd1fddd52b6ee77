import { open } from "node:fs/promises";
import { CpioError } from "./errors.js";
import { TYPE_BITS, type CpioEntry } from "./entry.js";

export interface WriteOptions {
  /** mtime written for entries that carry none (seconds since the epoch). */
  mtime: number;
  /** Owner written for entries that carry none; default 0. */
  uid?: number;
  gid?: number;
  /** `newc` (070701, default) or `crc` (070702, with the data checksum the kernel verifies). */
  format?: "newc" | "crc";
  /** Write the TRAILER!!! entry at the end (default true). */
  trailer?: boolean;
}

const MAX_U32 = 0xffffffff;
const PATH_MAX = 4095;
const CHUNK = 1 << 20;

function hex8(n: number): string {
  return n.toString(16).padStart(8, "0");
}

function pad4(n: number): number {
  return (4 - (n % 4)) % 4;
}

const ZERO = new Uint8Array(4);

function header(
  magic: string,
  f: {
    ino: number;
    mode: number;
    uid: number;
    gid: number;
    nlink: number;
    mtime: number;
    size: number;
    major: number;
    minor: number;
    check: number;
  },
  name: Uint8Array,
): Uint8Array {
  const text =
    magic +
    hex8(f.ino) +
    hex8(f.mode) +
    hex8(f.uid) +
    hex8(f.gid) +
    hex8(f.nlink) +
    hex8(f.mtime) +
    hex8(f.size) +
    hex8(0) +
    hex8(0) +
    hex8(f.major) +
    hex8(f.minor) +
    hex8(name.length + 1) +
    hex8(f.check);
  const total = 110 + name.length + 1;
  const out = new Uint8Array(total + pad4(total));
  out.set(Buffer.from(text, "latin1"), 0);
  out.set(name, 110);
  return out;
}

/** Checks an entry can be written; throws a CpioError naming the path otherwise. */
export function validateEntry(e: CpioEntry): void {
  const p = e.path;
  if (p.includes("\0")) throw new CpioError("EPATH", `path contains a NUL byte: ${JSON.stringify(p)}`, p);
  if (p.split("/").some((c) => c === "..")) throw new CpioError("EPATH", `path contains "..": ${p}`, p);
  if (p.startsWith("/")) throw new CpioError("EPATH", `archive paths are relative (no leading "/"): ${p}`, p);
  const bytes = Buffer.byteLength(p, "utf8");
  if (bytes === 0 || bytes > PATH_MAX) throw new CpioError("EPATH", `path is ${bytes} bytes; newc names must be 1–${PATH_MAX} bytes: ${p.slice(0, 80)}…`, p);
  if (e.mtime !== undefined && (e.mtime < 0 || e.mtime > MAX_U32 || !Number.isInteger(e.mtime)))
    throw new CpioError("EMTIME", `mtime ${e.mtime} of ${p} does not fit newc's 32-bit field (1970–2106)`, p);
  if (e.type === "file" && e.data === undefined && e.file === undefined)
    throw new CpioError("EDATA", `regular file ${p} has neither data nor a host file`, p);
  if (e.type === "symlink" && !e.target) throw new CpioError("EDATA", `symlink ${p} has no target`, p);
  const size = e.data?.length ?? e.size ?? 0;
  if (size > MAX_U32) throw new CpioError("E2BIG", `${p} is ${size} bytes; newc cannot store files of 4 GiB or more`, p);
}

async function* fileChunks(path: string, expected: number | undefined, entryPath: string): AsyncGenerator<Uint8Array> {
  const fh = await open(path, "r");
  try {
    const size = expected ?? (await fh.stat()).size;
    let left = size;
    while (left > 0) {
      const buf = Buffer.allocUnsafe(Math.min(CHUNK, left));
      const { bytesRead } = await fh.read(buf, 0, buf.length, size - left);
      if (bytesRead === 0) throw new CpioError("ECHANGED", `${path} (for ${entryPath}) shrank while it was being archived`, entryPath);
      left -= bytesRead;
      yield bytesRead === buf.length ? buf : buf.subarray(0, bytesRead);
    }
  } finally {
    await fh.close();
  }
}

/**
 * Serialises entries, in the order given, to newc. Inode numbers are assigned in that order
 * (from 1), so sorting the entries first makes the output deterministic.
 */
export async function* writeNewc(entries: Iterable<CpioEntry> | AsyncIterable<CpioEntry>, opts: WriteOptions): AsyncGenerator<Uint8Array> {
  const magic = opts.format === "crc" ? "070702" : "070701";
  let ino = 0;
  for await (const e of entries) {
    validateEntry(e);
    ino++;
    const name = Buffer.from(e.path, "utf8");
    const mtime = e.mtime ?? opts.mtime;
    const base = {
      ino,
      mode: TYPE_BITS[e.type] | (e.mode & 0o7777),
      uid: e.uid ?? opts.uid ?? 0,
      gid: e.gid ?? opts.gid ?? 0,
      nlink: e.type === "dir" ? 2 : 1,
      mtime,
      major: e.major ?? 0,
      minor: e.minor ?? 0,
      check: 0,
    };
    if (e.type === "symlink" || (e.type === "file" && e.data)) {
      const data = e.type === "symlink" ? Buffer.from(e.target!, "utf8") : e.data!;
      if (opts.format === "crc") base.check = sum32(data);
      yield header(magic, { ...base, size: data.length }, name);
      yield data;
      if (pad4(data.length)) yield ZERO.subarray(0, pad4(data.length));
    } else if (e.type === "file") {
      const size = e.size ?? (await (await import("node:fs/promises")).stat(e.file!)).size;
      if (size > MAX_U32) throw new CpioError("E2BIG", `${e.path} is ${size} bytes; newc cannot store files of 4 GiB or more`, e.path);
      if (opts.format === "crc") {
        let s = 0;
        for await (const c of fileChunks(e.file!, size, e.path)) s = (s + sum32(c)) >>> 0;
        base.check = s;
      }
      yield header(magic, { ...base, size }, name);
      yield* fileChunks(e.file!, size, e.path);
      if (pad4(size)) yield ZERO.subarray(0, pad4(size));
    } else {
      yield header(magic, { ...base, size: 0 }, name);
    }
  }
  if (opts.trailer !== false) {
    yield header(magic, { ino: 0, mode: 0, uid: 0, gid: 0, nlink: 1, mtime: 0, size: 0, major: 0, minor: 0, check: 0 }, Buffer.from("TRAILER!!!"));
  }
}

function sum32(data: Uint8Array): number {
  let s = 0;
  for (let i = 0; i < data.length; i++) s = (s + data[i]!) >>> 0;
  return s;
}
