import { crc32, inflateRawSync } from "node:zlib";
import { CpioError } from "./errors.js";
import { typeFromMode, type CpioEntryType } from "./entry.js";
import { lz4LegacyDecode, LZ4_LEGACY_MAGIC } from "./lz4.js";
import { xzDecodeStream } from "./xz.js";
import { zstdDecodeFrame } from "./zstd.js";
import { HEADER_SIZE, MAGIC_CRC, MAGIC_NEWC, MAGIC_ODC, TRAILER, pad4, sum32 } from "./newc.js";

export interface ReadEntry {
  path: string;
  type: CpioEntryType;
  /** Permission bits (07777). */
  mode: number;
  ino: number;
  uid: number;
  gid: number;
  nlink: number;
  mtime: number;
  size: number;
  devmajor: number;
  devminor: number;
  rdevmajor: number;
  rdevminor: number;
  format: "newc" | "crc";
  /** Regular file data (hardlinks: the group's data, wherever it was stored). */
  data?: Uint8Array;
  /** Symlink target. */
  target?: string;
  /** For a second or later name of a hardlinked inode: the first name. */
  linkTo?: string;
  /** Offset of the header in the uncompressed stream. */
  offset: number;
}

export interface ReadResult {
  entries: ReadEntry[];
  /** The members found, in order: `cpio` for uncompressed runs, else the compression. */
  members: { kind: string; offset: number; size: number }[];
  /** Bytes of uncompressed newc. */
  uncompressedSize: number;
}

export interface ReadOptions {
  /** Refuse to decompress more than this (default 4 GiB). */
  maxOutput?: number;
}

const GZIP = [0x1f, 0x8b];
const ZSTD_MAGIC = 0xfd2fb528;
const XZ = [0xfd, 0x37, 0x7a, 0x58, 0x5a, 0x00];

function startsWith(buf: Uint8Array, p: number, magic: number[]): boolean {
  if (p + magic.length > buf.length) return false;
  for (let i = 0; i < magic.length; i++) if (buf[p + i] !== magic[i]) return false;
  return true;
}

function le32(buf: Uint8Array, p: number): number {
  return (buf[p]! | (buf[p + 1]! << 8) | (buf[p + 2]! << 16) | (buf[p + 3]! << 24)) >>> 0;
}

function gunzipMember(buf: Uint8Array, start: number, maxOutput: number): { data: Uint8Array; consumed: number } {
  let p = start;
  if (p + 10 > buf.length) throw new CpioError("ETRUNC", `gzip member at offset ${start} is truncated (header)`);
  if (buf[p + 2] !== 8) throw new CpioError("ECORRUPT", `gzip member at offset ${start} uses compression method ${buf[p + 2]}, not deflate`);
  const flags = buf[p + 3]!;
  p += 10;
  if (flags & 4) {
    if (p + 2 > buf.length) throw new CpioError("ETRUNC", `gzip member at offset ${start} is truncated (extra field)`);
    p += 2 + (buf[p]! | (buf[p + 1]! << 8));
  }
  for (const bit of [8, 16]) {
    if (flags & bit) {
      while (p < buf.length && buf[p] !== 0) p++;
      p++;
    }
  }
  if (flags & 2) p += 2;
  if (p >= buf.length) throw new CpioError("ETRUNC", `gzip member at offset ${start} is truncated (header)`);
  let res: { buffer: Buffer; engine: { bytesWritten: number } };
  try {
    res = inflateRawSync(buf.subarray(p), { info: true, maxOutputLength: maxOutput }) as unknown as typeof res;
  } catch (err) {
    const m = (err as Error).message;
    const trunc = /unexpected end/i.test(m);
    throw new CpioError(trunc ? "ETRUNC" : "ECORRUPT", `gzip member at offset ${start} is ${trunc ? "truncated" : "corrupt"}: ${m}`);
  }
  p += res.engine.bytesWritten;
  if (p + 8 > buf.length) throw new CpioError("ETRUNC", `gzip member at offset ${start} is truncated (no CRC trailer)`);
  const data = res.buffer;
  if (le32(buf, p) !== crc32(data) >>> 0) throw new CpioError("ECORRUPT", `gzip member at offset ${start} fails its CRC check`);
  if (le32(buf, p + 4) !== data.length >>> 0) throw new CpioError("ECORRUPT", `gzip member at offset ${start} has a wrong length in its trailer`);
  return { data, consumed: p + 8 - start };
}

/** Length of the zstd frame (or skippable frame) at `p`, walking block headers. */
function zstdFrameLength(buf: Uint8Array, start: number): { length: number; skippable: boolean } {
  const magic = le32(buf, start);
  if ((magic & 0xfffffff0) === 0x184d2a50) {
    if (start + 8 > buf.length) throw new CpioError("ETRUNC", `zstd skippable frame at offset ${start} is truncated`);
    const len = 8 + le32(buf, start + 4);
    if (start + len > buf.length) throw new CpioError("ETRUNC", `zstd skippable frame at offset ${start} is truncated`);
    return { length: len, skippable: true };
  }
  let p = start + 4;
  if (p >= buf.length) throw new CpioError("ETRUNC", `zstd frame at offset ${start} is truncated`);
  const fhd = buf[p++]!;
  const fcsFlag = fhd >> 6;
  const single = (fhd >> 5) & 1;
  const checksum = (fhd >> 2) & 1;
  const dictFlag = fhd & 3;
  if (fhd & 0x08) throw new CpioError("ECORRUPT", `zstd frame at offset ${start} has a reserved bit set`);
  p += (single ? 0 : 1) + [0, 1, 2, 4][dictFlag]! + [single ? 1 : 0, 2, 4, 8][fcsFlag]!;
  for (;;) {
    if (p + 3 > buf.length) throw new CpioError("ETRUNC", `zstd frame at offset ${start} is truncated`);
    const h = buf[p]! | (buf[p + 1]! << 8) | (buf[p + 2]! << 16);
    p += 3;
    const last = h & 1;
    const type = (h >> 1) & 3;
    const size = h >>> 3;
    if (type === 3) throw new CpioError("ECORRUPT", `zstd frame at offset ${start} has a reserved block type`);
    p += type === 1 ? 1 : size;
    if (p > buf.length) throw new CpioError("ETRUNC", `zstd frame at offset ${start} is truncated`);
    if (last) break;
  }
  if (checksum) p += 4;
  if (p > buf.length) throw new CpioError("ETRUNC", `zstd frame at offset ${start} is truncated`);
  return { length: p - start, skippable: false };
}

/** One zstd frame (plus any skippable frames around it): the unit the kernel's unzstd decodes. */
async function unzstdMember(buf: Uint8Array, start: number, maxOutput: number): Promise<{ data: Uint8Array; consumed: number }> {
  const out: Uint8Array[] = [];
  let p = start;
  let frames = 0;
  while (p + 4 <= buf.length && (le32(buf, p) & 0xfffffff0) === 0x184d2a50) p += zstdFrameLength(buf, p).length;
  if (p + 4 <= buf.length && le32(buf, p) === ZSTD_MAGIC) {
    const { length } = zstdFrameLength(buf, p);
    try {
      out.push(zstdDecodeFrame(buf.subarray(p, p + length), maxOutput));
    } catch (err) {
      if (err instanceof CpioError) throw err;
      throw new CpioError("ECORRUPT", `zstd frame at offset ${p} is corrupt: ${(err as Error).message}`);
    }
    p += length;
    frames++;
  }
  if (!frames && p === start) throw new CpioError("ECORRUPT", `no zstd frame at offset ${start}`);
  return { data: Buffer.concat(out), consumed: p - start };
}

async function unxzMember(buf: Uint8Array, start: number, maxOutput: number): Promise<{ data: Uint8Array; consumed: number }> {
  if (start + 24 > buf.length) throw new CpioError("ETRUNC", `xz stream at offset ${start} is truncated`);
  const flags0 = buf[start + 6]!;
  const flags1 = buf[start + 7]!;
  // The stream ends at the first valid footer: CRC32(backward size, flags), the header's flags, "YZ".
  for (let q = start + 12; q + 12 <= buf.length; q += 4) {
    if (buf[q + 10] !== 0x59 || buf[q + 11] !== 0x5a || buf[q + 8] !== flags0 || buf[q + 9] !== flags1) continue;
    if ((crc32(buf.subarray(q + 4, q + 10)) >>> 0) !== le32(buf, q)) continue;
    try {
      const data = xzDecodeStream(buf.subarray(start, q + 12), maxOutput);
      return { data, consumed: q + 12 - start };
    } catch (err) {
      if (err instanceof CpioError) throw err;
      throw new CpioError("ECORRUPT", `xz stream at offset ${start} is corrupt: ${(err as Error).message}`);
    }
  }
  throw new CpioError("ETRUNC", `xz stream at offset ${start} is truncated (no stream footer)`);
}

/** Splits the input into uncompressed newc runs, decompressing each member (as the kernel does). */
export async function decompressMembers(buf: Uint8Array, opts: ReadOptions = {}): Promise<{ kind: string; offset: number; size: number; data: Uint8Array }[]> {
  const max = opts.maxOutput ?? 4 * 2 ** 30;
  const out: { kind: string; offset: number; size: number; data: Uint8Array }[] = [];
  let p = 0;
  let total = 0;
  while (p < buf.length) {
    if (buf[p] === 0) {
      p++;
      continue;
    }
    let r: { data: Uint8Array; consumed: number };
    let kind: string;
    if (buf[p] === 0x30) {
      // Uncompressed newc: runs until the next member's magic, which we find by parsing.
      const end = rawCpioEnd(buf, p);
      r = { data: buf.subarray(p, end), consumed: end - p };
      kind = "cpio";
    } else if (startsWith(buf, p, GZIP)) {
      r = gunzipMember(buf, p, max - total);
      kind = "gzip";
    } else if (p + 4 <= buf.length && (le32(buf, p) === ZSTD_MAGIC || (le32(buf, p) & 0xfffffff0) === 0x184d2a50)) {
      r = await unzstdMember(buf, p, max - total);
      kind = "zstd";
    } else if (startsWith(buf, p, XZ)) {
      r = await unxzMember(buf, p, max - total);
      kind = "xz";
    } else if (p + 4 <= buf.length && le32(buf, p) === LZ4_LEGACY_MAGIC) {
      r = lz4LegacyDecode(buf, p);
      kind = "lz4";
    } else if (p + 4 <= buf.length && le32(buf, p) === 0x184d2204) {
      throw new CpioError("EFORMAT", `lz4 frame at offset ${p} uses the modern frame format; the kernel only reads the legacy format (lz4 -l)`);
    } else if (startsWith(buf, p, [0x42, 0x5a, 0x68]) || startsWith(buf, p, [0x5d, 0x00, 0x00]) || startsWith(buf, p, [0x89, 0x4c, 0x5a, 0x4f])) {
      throw new CpioError("EFORMAT", `member at offset ${p} is bzip2/lzma/lzo, which fledge's reader does not decode`);
    } else {
      throw new CpioError("ECORRUPT", `unknown data at offset ${p} (byte 0x${buf[p]!.toString(16).padStart(2, "0")}): not newc, gzip, zstd, xz or lz4`);
    }
    total += r.data.length;
    if (total > max) throw new CpioError("E2BIG", `archive decompresses to more than ${max} bytes`);
    out.push({ kind, offset: p, size: r.consumed, data: r.data });
    if (r.consumed <= 0) throw new CpioError("ECORRUPT", `empty member at offset ${p}`);
    p += r.consumed;
  }
  return out;
}

/** End of an uncompressed newc run starting at `p`: after a trailer and its zero padding. */
function rawCpioEnd(buf: Uint8Array, p: number): number {
  let q = p;
  while (q < buf.length) {
    if (buf[q] === 0) {
      q++;
      continue;
    }
    if (buf[q] !== 0x30) return q;
    const h = parseHeader(buf, q);
    q = h.next;
    if (h.name === TRAILER) return q;
  }
  return q;
}

interface RawHeader {
  magic: string;
  fields: number[];
  name: string;
  dataStart: number;
  next: number;
}

const FIELD_NAMES = ["ino", "mode", "uid", "gid", "nlink", "mtime", "filesize", "devmajor", "devminor", "rdevmajor", "rdevminor", "namesize", "check"];

function parseHeader(buf: Uint8Array, p: number): RawHeader {
  if (p + 6 > buf.length) throw new CpioError("ETRUNC", `archive ends inside a header at offset ${p}`);
  const magic = Buffer.from(buf.buffer, buf.byteOffset + p, 6).toString("latin1");
  if (magic === MAGIC_ODC)
    throw new CpioError("EFORMAT", `old portable (odc, 070707) cpio header at offset ${p}: the kernel only unpacks newc (070701/070702) and would refuse it too; recreate the archive with "cpio -H newc"`);
  if (magic !== MAGIC_NEWC && magic !== MAGIC_CRC) throw new CpioError("ECORRUPT", `bad cpio magic at offset ${p}: ${JSON.stringify(magic)}`);
  if (p + HEADER_SIZE > buf.length) throw new CpioError("ETRUNC", `archive ends inside a header at offset ${p}`);
  const fields: number[] = [];
  for (let i = 0; i < 13; i++) {
    let v = 0;
    for (let j = 0; j < 8; j++) {
      const c = buf[p + 6 + i * 8 + j]!;
      const d = c >= 0x30 && c <= 0x39 ? c - 0x30 : c >= 0x41 && c <= 0x46 ? c - 55 : c >= 0x61 && c <= 0x66 ? c - 87 : -1;
      if (d < 0) throw new CpioError("ECORRUPT", `header at offset ${p}: field ${FIELD_NAMES[i]} is not hexadecimal`);
      v = v * 16 + d;
    }
    fields.push(v);
  }
  const namesize = fields[11]!;
  const size = fields[6]!;
  if (namesize < 1 || namesize > 4096) throw new CpioError("ECORRUPT", `header at offset ${p}: name size ${namesize} is out of range 1–4096`);
  const nameEnd = p + HEADER_SIZE + namesize;
  if (nameEnd > buf.length) throw new CpioError("ETRUNC", `archive ends inside a name at offset ${p}`);
  if (buf[nameEnd - 1] !== 0) throw new CpioError("ECORRUPT", `header at offset ${p}: name is not NUL-terminated`);
  const name = Buffer.from(buf.buffer, buf.byteOffset + p + HEADER_SIZE, namesize - 1).toString("utf8");
  const dataStart = nameEnd + pad4(HEADER_SIZE + namesize);
  const next = dataStart + size + pad4(size);
  if (dataStart + size > buf.length) throw new CpioError("ETRUNC", `archive ends inside the data of ${JSON.stringify(name)} (offset ${p}, ${size} bytes)`);
  return { magic, fields, name, dataStart, next: Math.min(next, buf.length) };
}

/** Parses uncompressed newc (possibly several archives, zero-padded between). */
export function parseNewc(buf: Uint8Array, base = 0): ReadEntry[] {
  const out: ReadEntry[] = [];
  const links = new Map<string, ReadEntry>();
  let p = 0;
  while (p < buf.length) {
    if (buf[p] === 0) {
      p++;
      continue;
    }
    const h = parseHeader(buf, p);
    const [ino, mode, uid, gid, nlink, mtime, size, devmajor, devminor, rdevmajor, rdevminor, , check] = h.fields as [number, number, number, number, number, number, number, number, number, number, number, number, number];
    if (h.name === TRAILER) {
      p = h.next;
      continue;
    }
    const type = typeFromMode(mode);
    if (!type) throw new CpioError("ECORRUPT", `entry ${JSON.stringify(h.name)} at offset ${base + p} has an unknown file type in mode ${mode.toString(8)}`);
    const data = buf.subarray(h.dataStart, h.dataStart + size);
    const format = h.magic === MAGIC_CRC ? "crc" : "newc";
    if (format === "crc" && type === "file" && sum32(data) !== check)
      throw new CpioError("ECHECKSUM", `${h.name}: data checksum ${sum32(data).toString(16)} does not match the header's ${check.toString(16)}`);
    const e: ReadEntry = { path: h.name, type, mode: mode & 0o7777, ino, uid, gid, nlink, mtime, size, devmajor, devminor, rdevmajor, rdevminor, format, offset: base + p };
    if (type === "file") {
      e.data = data;
      if (nlink > 1) {
        const key = `${ino}:${devmajor}:${devminor}`;
        const first = links.get(key);
        if (first) {
          e.linkTo = first.path;
          if (size > 0 && first.size === 0) first.data = data;
          else e.data = first.data;
        } else links.set(key, e);
      }
    } else if (type === "symlink") e.target = Buffer.from(data).toString("utf8");
    out.push(e);
    p = h.next;
  }
  // Hardlinked names all see the group's data.
  for (const e of out) if (e.linkTo) e.data = links.get(`${e.ino}:${e.devmajor}:${e.devminor}`)!.data;
  return out;
}

/**
 * Reads an initramfs as the kernel does: concatenated members, each uncompressed newc or gzip,
 * zstd, xz or lz4 (legacy), zero padding between. Every compressed member must end between two
 * entries (the kernel refuses one that stops inside an entry). Errors are CpioErrors.
 */
export async function readArchive(input: Uint8Array, opts: ReadOptions = {}): Promise<ReadResult> {
  const members = await decompressMembers(input, opts);
  const ends: number[] = [];
  let total = 0;
  for (const m of members) {
    total += m.data.length;
    ends.push(total);
  }
  const stream = Buffer.concat(members.map((m) => m.data));
  const entries = parseNewc(stream);
  // Member boundaries must fall between entries.
  const boundaries = new Set<number>();
  for (const e of entries) boundaries.add(e.offset);
  for (let i = 0; i < members.length - 1; i++) {
    if (members[i]!.kind === "cpio") continue;
    const end = ends[i]!;
    let q = end;
    while (q < stream.length && stream[q] === 0) q++;
    if (q < stream.length && !boundaries.has(q) && !isTrailerAt(stream, q))
      throw new CpioError("ESPLIT", `${members[i]!.kind} member at offset ${members[i]!.offset} ends inside an entry; the kernel would stop with "junk at the end of compressed archive"`);
  }
  return { entries, members: members.map(({ kind, offset, size }) => ({ kind, offset, size })), uncompressedSize: stream.length };
}

function isTrailerAt(buf: Uint8Array, p: number): boolean {
  try {
    return parseHeader(buf, p).name === TRAILER;
  } catch {
    return false;
  }
}
