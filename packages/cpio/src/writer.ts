import { open } from "node:fs/promises";
import { CpioError } from "./errors.js";
import type { CpioEntry } from "./entry.js";
import { MAGIC_CRC, MAGIC_NEWC, encodeHeader, pad4, sum32, trailerHeader } from "./newc.js";
import { prepareEntries, type PreparedEntry } from "./prepare.js";

export { validateEntry } from "./prepare.js";

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

const CHUNK = 1 << 20;
export const ZERO_PAD = new Uint8Array(4);

/** A host file's bytes in chunks; into `into` (reused: each chunk is valid until the next is asked for) when given. */
export async function* fileChunks(path: string, size: number, entryPath: string, chunk = CHUNK, into?: Buffer, offset?: number): AsyncGenerator<Uint8Array> {
  let fh;
  try {
    fh = await open(path, "r");
  } catch (err) {
    throw new CpioError("ENOENT", `cannot read ${path} for ${entryPath}: ${(err as Error).message}`, entryPath);
  }
  try {
    let pos = 0;
    while (pos < size) {
      const buf = into ? into.subarray(0, Math.min(into.length, size - pos)) : Buffer.allocUnsafe(Math.min(chunk, size - pos));
      const { bytesRead } = await fh.read(buf, 0, buf.length, (offset ?? 0) + pos);
      if (bytesRead === 0)
        throw new CpioError(
          "ECHANGED",
          offset === undefined ? `${path} (for ${entryPath}) shrank while it was being archived (expected ${size} bytes)` : `${path} (for ${entryPath}) ends before its range ${offset}+${size}`,
          entryPath,
        );
      pos += bytesRead;
      yield bytesRead === buf.length ? buf : buf.subarray(0, bytesRead);
    }
    // A whole file must end where it was listed to end; a range is not checked past its end.
    if (offset === undefined) {
      const extra = await fh.read(Buffer.alloc(1), 0, 1, size);
      if (extra.bytesRead !== 0) throw new CpioError("ECHANGED", `${path} (for ${entryPath}) grew while it was being archived (expected ${size} bytes)`, entryPath);
    }
  } finally {
    await fh.close();
  }
}

async function* streamChunks(open: () => AsyncIterable<Uint8Array>, size: number, entryPath: string): AsyncGenerator<Uint8Array> {
  let got = 0;
  for await (const c of open()) {
    got += c.length;
    if (got > size) throw new CpioError("ECHANGED", `the stream for ${entryPath} gave more than the ${size} bytes declared`, entryPath);
    if (c.length) yield c;
  }
  if (got !== size) throw new CpioError("ECHANGED", `the stream for ${entryPath} gave ${got} bytes, ${size} were declared`, entryPath);
}

/** The data bytes of a prepared entry, in chunks of at most 1 MiB (sizes checked). */
export async function* entryData(e: PreparedEntry): AsyncGenerator<Uint8Array> {
  const s = e.source;
  if (s.kind === "bytes") {
    for (let i = 0; i < s.data.length; i += CHUNK) yield s.data.subarray(i, i + CHUNK);
  } else if (s.kind === "file") yield* fileChunks(s.path, e.size, e.path, CHUNK, undefined, s.offset);
  else if (s.kind === "stream") yield* streamChunks(s.open, e.size, e.path);
}

/** The header (name and padding included); for 070702 this reads the data once for its checksum. */
export async function entryHeader(e: PreparedEntry, format: "newc" | "crc" = "newc"): Promise<Buffer> {
  let check = 0;
  if (format === "crc" && e.type === "file" && e.size > 0) {
    for await (const c of entryData(e)) check = sum32(c, check);
  }
  return encodeHeader(format === "crc" ? MAGIC_CRC : MAGIC_NEWC, { ...e, check }, e.name);
}

export function magicFor(format: "newc" | "crc" = "newc"): string {
  return format === "crc" ? MAGIC_CRC : MAGIC_NEWC;
}

/** Serialises one prepared entry: header, data, padding. */
export async function* serializeEntry(e: PreparedEntry, format: "newc" | "crc" = "newc"): AsyncGenerator<Uint8Array> {
  yield await entryHeader(e, format);
  if (e.size === 0) return;
  yield* entryData(e);
  const p = pad4(e.size);
  if (p) yield ZERO_PAD.subarray(0, p);
}

/**
 * Serialises entries to an uncompressed newc stream. Entries are validated and sorted first
 * (bytewise, parents first; missing parents added as 0755 directories), inodes numbered in that
 * order, hardlinks given one inode with their data stored once: the same entries always give the
 * same bytes. Every validation error is thrown before the first chunk.
 */
export async function* writeNewc(entries: Iterable<CpioEntry> | AsyncIterable<CpioEntry>, opts: WriteOptions): AsyncGenerator<Uint8Array> {
  const prepared = await prepareEntries(entries, opts);
  yield* writePrepared(prepared, opts.format, opts.trailer);
}

export async function* writePrepared(prepared: PreparedEntry[], format: "newc" | "crc" = "newc", trailer = true): AsyncGenerator<Uint8Array> {
  for (const e of prepared) yield* serializeEntry(e, format);
  if (trailer) yield trailerHeader(magicFor(format));
}
