import { createHash, type Hash } from "node:crypto";
import type { FileHandle } from "node:fs/promises";
import type { Transform } from "node:stream";
import { createInflateRaw, crc32, inflateRawSync } from "node:zlib";
import { CpioError } from "./errors.js";
import { typeFromMode, type CpioEntryType } from "./entry.js";
import { lz4Bound, lz4DecompressBlock, LZ4_LEGACY_BLOCK, LZ4_LEGACY_MAGIC } from "./lz4.js";
import { XzDecompressStream, xzDecodeStream } from "./xz.js";
import { ZstdDecompressStream, zstdDecodeFrame } from "./zstd.js";
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
  /** Regular file data (hardlinks: the group's data, wherever it was stored). Only from `readArchive`. */
  data?: Uint8Array;
  /** sha256 (hex) of the data stored in this entry (regular files; `scanArchive` with `hash`). */
  sha256?: string;
  /** Symlink target. */
  target?: string;
  /** For a second or later name of a hardlinked inode: the first name. */
  linkTo?: string;
  /** Offset of the header in the uncompressed stream. */
  offset: number;
}

export interface Member {
  /** `cpio` for an uncompressed run, else the compression. */
  kind: string;
  offset: number;
  size: number;
}

export interface ReadResult {
  entries: ReadEntry[];
  /** The members found, in order: `cpio` for uncompressed runs, else the compression. */
  members: Member[];
  /** Bytes of uncompressed newc. */
  uncompressedSize: number;
}

export interface ReadOptions {
  /** Refuse to decompress more than this (default 4 GiB). */
  maxOutput?: number;
}

export interface ScanOptions extends ReadOptions {
  /** Called for each entry once its data has been read, in archive order. */
  onEntry?: (entry: ReadEntry) => void | Promise<void>;
  /** Compute `sha256` of each regular file's stored data (default true). */
  hash?: boolean;
  /** Keep each regular file's data in `entry.data` (memory grows with the archive: tests and small archives only). */
  keepData?: boolean;
}

export interface ScanResult {
  members: Member[];
  uncompressedSize: number;
  entries: number;
}

export const DEFAULT_MAX_OUTPUT = 4 * 2 ** 30;
/** The kernel's PATH_MAX: a symlink target longer than this cannot be created. */
const MAX_SYMLINK = 4096;
const CHUNK = 1 << 20;
/** gzip, zstd and xz members up to this size (in and out) are decoded in one call. */
const FAST_IN = 4 << 20;
const FAST_OUT = 16 << 20;

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

function human(n: number): string {
  if (n >= 2 ** 30 && n % 2 ** 30 === 0) return `${n / 2 ** 30} GiB`;
  if (n >= 2 ** 20 && n % 2 ** 20 === 0) return `${n / 2 ** 20} MiB`;
  return `${n} bytes`;
}

// ---------------------------------------------------------------------------------------------
// Byte sources: random access by position, so members can be measured and decoded in bounded memory.

interface ByteSource {
  readonly size: number;
  /** Up to `len` bytes at `pos` (fewer only at the end). */
  read(pos: number, len: number): Promise<Uint8Array>;
}

function bufferSource(buf: Uint8Array): ByteSource {
  return { size: buf.length, read: async (pos, len) => buf.subarray(pos, Math.min(buf.length, pos + len)) };
}

function fileSource(fh: FileHandle, size: number): ByteSource {
  return {
    size,
    async read(pos, len) {
      const n = Math.max(0, Math.min(len, size - pos));
      const buf = Buffer.allocUnsafe(n);
      let got = 0;
      while (got < n) {
        const { bytesRead } = await fh.read(buf, got, n - got, pos + got);
        if (bytesRead === 0) break;
        got += bytesRead;
      }
      return got === n ? buf : buf.subarray(0, got);
    },
  };
}

// ---------------------------------------------------------------------------------------------
// The newc parser: push-based, so it never needs more than one header in memory.

const FIELD_NAMES = ["ino", "mode", "uid", "gid", "nlink", "mtime", "filesize", "devmajor", "devminor", "rdevmajor", "rdevminor", "namesize", "check"];

function checkMagic(buf: Uint8Array, offset: number): string {
  const magic = Buffer.from(buf.buffer, buf.byteOffset, 6).toString("latin1");
  if (magic === MAGIC_ODC)
    throw new CpioError("EFORMAT", `old portable (odc, 070707) cpio header at offset ${offset}: the kernel only unpacks newc (070701/070702) and would refuse it too; recreate the archive with "cpio -H newc"`);
  if (magic !== MAGIC_NEWC && magic !== MAGIC_CRC) throw new CpioError("ECORRUPT", `bad cpio magic at offset ${offset}: ${JSON.stringify(magic)}`);
  return magic;
}

function parseFields(buf: Uint8Array, offset: number): number[] {
  const fields: number[] = [];
  for (let i = 0; i < 13; i++) {
    let v = 0;
    for (let j = 0; j < 8; j++) {
      const c = buf[6 + i * 8 + j]!;
      const d = c >= 0x30 && c <= 0x39 ? c - 0x30 : c >= 0x41 && c <= 0x46 ? c - 55 : c >= 0x61 && c <= 0x66 ? c - 87 : -1;
      if (d < 0) throw new CpioError("ECORRUPT", `header at offset ${offset}: field ${FIELD_NAMES[i]} is not hexadecimal`);
      v = v * 16 + d;
    }
    fields.push(v);
  }
  const namesize = fields[11]!;
  if (namesize < 1 || namesize > 4096) throw new CpioError("ECORRUPT", `header at offset ${offset}: name size ${namesize} is out of range 1–4096`);
  return fields;
}

// biome-ignore lint/suspicious/noConstEnum: module-private and inlined by esbuild in the parse loop; never exported, so isolatedModules is not at stake
const enum S {
  Idle,
  Header,
  Data,
  Pad,
}

interface LinkInfo {
  path: string;
  entry: ReadEntry;
}

class NewcParser {
  state = S.Idle;
  /** Bytes pushed so far: the offset in the uncompressed stream. */
  pos = 0;
  private hdr = Buffer.alloc(HEADER_SIZE + 4096 + 3);
  private hdrLen = 0;
  private hdrNeed = HEADER_SIZE;
  private hdrOffset = 0;
  private magic = "";
  private fields: number[] = [];
  private cur?: ReadEntry;
  private isTrailer = false;
  private remaining = 0;
  private padLeft = 0;
  private hash?: Hash;
  private sum = 0;
  private chunks: Uint8Array[] = [];
  private keep = false;
  readonly links = new Map<string, LinkInfo>();
  /** Entries completed by the last push, in order. */
  readonly done: ReadEntry[] = [];

  constructor(private readonly opts: { hash: boolean; keepData: boolean }) {}

  /** True between two entries: a compressed member may end here. */
  atBoundary(): boolean {
    return this.state === S.Idle || this.state === S.Pad;
  }

  /**
   * Consumes `chunk`. In `raw` mode (uncompressed newc in the artifact) it stops, returning how
   * much it used, after a trailer or where the next thing between entries is not newc.
   */
  push(chunk: Uint8Array, raw = false): number {
    let i = 0;
    const n = chunk.length;
    while (i < n) {
      switch (this.state) {
        case S.Idle: {
          const b = chunk[i]!;
          if (b === 0) {
            i++;
            this.pos++;
            continue;
          }
          if (raw && b !== 0x30) return i;
          this.state = S.Header;
          this.hdrLen = 0;
          this.hdrNeed = HEADER_SIZE;
          this.hdrOffset = this.pos;
          break;
        }
        case S.Header: {
          const take = Math.min(this.hdrNeed - this.hdrLen, n - i);
          this.hdr.set(chunk.subarray(i, i + take), this.hdrLen);
          const before = this.hdrLen;
          this.hdrLen += take;
          i += take;
          this.pos += take;
          if (before < 6 && this.hdrLen >= 6) this.magic = checkMagic(this.hdr, this.hdrOffset);
          if (this.hdrLen < this.hdrNeed) continue;
          if (this.hdrNeed === HEADER_SIZE) {
            this.fields = parseFields(this.hdr, this.hdrOffset);
            const namesize = this.fields[11]!;
            this.hdrNeed = HEADER_SIZE + namesize + pad4(HEADER_SIZE + namesize);
            continue;
          }
          this.startEntry();
          if ((this.state as S) === S.Idle && raw && this.isTrailer) return i;
          break;
        }
        case S.Data: {
          const take = Math.min(this.remaining, n - i);
          this.data(chunk.subarray(i, i + take));
          this.remaining -= take;
          i += take;
          this.pos += take;
          if (this.remaining === 0) {
            this.state = S.Pad;
            if (this.padLeft === 0) {
              this.finishEntry();
              if (raw && this.isTrailer) return i;
            }
          }
          break;
        }
        case S.Pad: {
          const take = Math.min(this.padLeft, n - i);
          this.padLeft -= take;
          i += take;
          this.pos += take;
          if (this.padLeft === 0) {
            this.finishEntry();
            if (raw && this.isTrailer) return i;
          }
          break;
        }
      }
    }
    return i;
  }

  /** The end of the stream: an entry cut short is an error. */
  finish(): void {
    if (this.state === S.Header) {
      if (this.hdrLen < HEADER_SIZE || this.hdrNeed === HEADER_SIZE) throw new CpioError("ETRUNC", `archive ends inside a header at offset ${this.hdrOffset}`);
      throw new CpioError("ETRUNC", `archive ends inside a name at offset ${this.hdrOffset}`);
    }
    if (this.state === S.Data) throw new CpioError("ETRUNC", `archive ends inside the data of ${JSON.stringify(this.cur?.path ?? TRAILER)} (offset ${this.hdrOffset}, ${this.fields[6]} bytes)`);
    if (this.state === S.Pad) this.finishEntry();
  }

  private startEntry(): void {
    const namesize = this.fields[11]!;
    if (this.hdr[HEADER_SIZE + namesize - 1] !== 0) throw new CpioError("ECORRUPT", `header at offset ${this.hdrOffset}: name is not NUL-terminated`);
    const name = this.hdr.toString("utf8", HEADER_SIZE, HEADER_SIZE + namesize - 1);
    const [ino, mode, uid, gid, nlink, mtime, size, devmajor, devminor, rdevmajor, rdevminor] = this.fields as [number, number, number, number, number, number, number, number, number, number, number];
    this.remaining = size;
    this.padLeft = pad4(size);
    this.isTrailer = name === TRAILER;
    this.cur = undefined;
    this.hash = undefined;
    this.sum = 0;
    this.chunks = [];
    this.keep = false;
    if (!this.isTrailer) {
      const type = typeFromMode(mode);
      if (!type) throw new CpioError("ECORRUPT", `entry ${JSON.stringify(name)} at offset ${this.hdrOffset} has an unknown file type in mode ${mode.toString(8)}`);
      if (type === "symlink" && size > MAX_SYMLINK) throw new CpioError("ECORRUPT", `symlink ${JSON.stringify(name)} at offset ${this.hdrOffset} has a ${size}-byte target; the kernel allows ${MAX_SYMLINK}`);
      this.cur = { path: name, type, mode: mode & 0o7777, ino, uid, gid, nlink, mtime, size, devmajor, devminor, rdevmajor, rdevminor, format: this.magic === MAGIC_CRC ? "crc" : "newc", offset: this.hdrOffset };
      if (type === "file" && this.opts.hash) this.hash = createHash("sha256");
      this.keep = (type === "file" && this.opts.keepData) || type === "symlink";
    }
    this.state = S.Data;
    if (size === 0) {
      this.state = S.Pad;
      if (this.padLeft === 0) this.finishEntry();
    }
  }

  private data(b: Uint8Array): void {
    if (!this.cur) return;
    this.hash?.update(b);
    if (this.cur.format === "crc" && this.cur.type === "file") this.sum = (this.sum + sum32(b)) >>> 0;
    if (this.keep) this.chunks.push(b); // sources hand out fresh buffers (or slices of the caller's input), never reused
  }

  private finishEntry(): void {
    this.state = S.Idle;
    const e = this.cur;
    if (!e) return;
    const check = this.fields[12]!;
    if (e.format === "crc" && e.type === "file" && this.sum !== check) throw new CpioError("ECHECKSUM", `${e.path}: data checksum ${this.sum.toString(16)} does not match the header's ${check.toString(16)}`);
    if (this.hash) e.sha256 = this.hash.digest("hex");
    const data = this.keep ? Buffer.concat(this.chunks) : undefined;
    if (e.type === "symlink") e.target = data!.toString("utf8");
    else if (e.type === "file") {
      if (this.opts.keepData) e.data = data;
      if (e.nlink > 1) {
        const key = `${e.ino}:${e.devmajor}:${e.devminor}`;
        const first = this.links.get(key);
        if (first) e.linkTo = first.path;
        else this.links.set(key, { path: e.path, entry: e });
      }
    }
    this.cur = undefined;
    this.chunks = [];
    this.done.push(e);
  }
}

// ---------------------------------------------------------------------------------------------
// Members.

type Sink = (chunk: Uint8Array) => Promise<void>;

/** Feeds `src[start, end)` (or to its end) through a decompressing Transform, in bounded memory. */
async function throughTransform(t: Transform, src: ByteSource, start: number, end: number | undefined, sink: Sink): Promise<void> {
  let finished = false;
  let wake: (() => void) | undefined;
  const onDrain = () => wake?.();
  t.on("drain", onDrain);
  const writer = (async () => {
    let q = start;
    const stop = end ?? src.size;
    while (!finished) {
      const chunk = q < stop ? await src.read(q, Math.min(CHUNK, stop - q)) : new Uint8Array(0);
      if (finished) return;
      if (chunk.length === 0) {
        t.end();
        return;
      }
      q += chunk.length;
      if (!t.write(chunk)) await new Promise<void>((r) => (wake = r));
    }
  })().catch((err: Error) => {
    t.destroy(err);
  });
  try {
    for await (const out of t) await sink(out as Uint8Array);
  } finally {
    finished = true;
    wake?.();
    t.off("drain", onDrain);
    if (!t.destroyed) t.destroy();
  }
  await writer;
}

async function gunzipMember(src: ByteSource, start: number, sink: Sink): Promise<number> {
  const head = await src.read(start, 64 * 1024);
  let p = 0;
  if (head.length < 10) throw new CpioError("ETRUNC", `gzip member at offset ${start} is truncated (header)`);
  if (head[2] !== 8) throw new CpioError("ECORRUPT", `gzip member at offset ${start} uses compression method ${head[2]}, not deflate`);
  const flags = head[3]!;
  p = 10;
  if (flags & 4) {
    if (p + 2 > head.length) throw new CpioError("ETRUNC", `gzip member at offset ${start} is truncated (extra field)`);
    p += 2 + (head[p]! | (head[p + 1]! << 8));
  }
  for (const bit of [8, 16]) {
    if (flags & bit) {
      while (p < head.length && head[p] !== 0) p++;
      p++;
    }
  }
  if (flags & 2) p += 2;
  if (p >= head.length)
    throw new CpioError(head.length < 64 * 1024 ? "ETRUNC" : "ECORRUPT", `gzip member at offset ${start} is ${head.length < 64 * 1024 ? "truncated (header)" : "corrupt: its header is longer than 64 KiB"}`);
  // Fast path, for members like fledge's own segments: the whole member in one small window,
  // decoded in one call. Anything larger (or cut by the window) is streamed below.
  const win = await src.read(start + p, FAST_IN);
  let fast: { buffer: Buffer; engine: { bytesWritten: number } } | undefined;
  try {
    fast = inflateRawSync(win, { info: true, maxOutputLength: FAST_OUT }) as unknown as typeof fast;
  } catch (err) {
    const e = err as NodeJS.ErrnoException;
    const cut = /unexpected end/i.test(e.message) && win.length === FAST_IN;
    if (!cut && e.code !== "ERR_BUFFER_TOO_LARGE" && !(err instanceof RangeError)) {
      const trunc = /unexpected end/i.test(e.message);
      throw new CpioError(trunc ? "ETRUNC" : "ECORRUPT", `gzip member at offset ${start} is ${trunc ? "truncated" : "corrupt"}: ${e.message}`);
    }
  }
  if (fast) {
    await sink(fast.buffer);
    return gzipTrailer(src, start, start + p + fast.engine.bytesWritten, crc32(fast.buffer), fast.buffer.length);
  }
  const inflate = createInflateRaw({ chunkSize: 256 * 1024 });
  let crc = 0;
  let size = 0;
  try {
    await throughTransform(inflate, src, start + p, undefined, async (out) => {
      crc = crc32(out, crc);
      size += out.length;
      await sink(out);
    });
  } catch (err) {
    if (err instanceof CpioError) throw err;
    const m = (err as Error).message;
    const trunc = /unexpected end/i.test(m);
    throw new CpioError(trunc ? "ETRUNC" : "ECORRUPT", `gzip member at offset ${start} is ${trunc ? "truncated" : "corrupt"}: ${m}`);
  }
  return gzipTrailer(src, start, start + p + inflate.bytesWritten, crc, size);
}

async function gzipTrailer(src: ByteSource, start: number, q: number, crc: number, size: number): Promise<number> {
  const trailer = await src.read(q, 8);
  if (trailer.length < 8) throw new CpioError("ETRUNC", `gzip member at offset ${start} is truncated (no CRC trailer)`);
  if (le32(trailer, 0) !== crc >>> 0) throw new CpioError("ECORRUPT", `gzip member at offset ${start} fails its CRC check`);
  if (le32(trailer, 4) !== size >>> 0) throw new CpioError("ECORRUPT", `gzip member at offset ${start} has a wrong length in its trailer`);
  return q + 8 - start;
}

/** Length of the zstd frame (or skippable frame) at `start`, walking block headers. */
async function zstdFrameLength(src: ByteSource, start: number): Promise<{ length: number; skippable: boolean; contentSize?: number }> {
  const head = await src.read(start, 18);
  const magic = head.length >= 4 ? le32(head, 0) : 0;
  if ((magic & 0xfffffff0) === 0x184d2a50) {
    if (head.length < 8) throw new CpioError("ETRUNC", `zstd skippable frame at offset ${start} is truncated`);
    const len = 8 + le32(head, 4);
    if (start + len > src.size) throw new CpioError("ETRUNC", `zstd skippable frame at offset ${start} is truncated`);
    return { length: len, skippable: true };
  }
  if (head.length < 5) throw new CpioError("ETRUNC", `zstd frame at offset ${start} is truncated`);
  const fhd = head[4]!;
  const fcsFlag = fhd >> 6;
  const single = (fhd >> 5) & 1;
  const checksum = (fhd >> 2) & 1;
  const dictFlag = fhd & 3;
  if (fhd & 0x08) throw new CpioError("ECORRUPT", `zstd frame at offset ${start} has a reserved bit set`);
  const fcsAt = 5 + (single ? 0 : 1) + [0, 1, 2, 4][dictFlag]!;
  const fcsLen = [single ? 1 : 0, 2, 4, 8][fcsFlag]!;
  let contentSize: number | undefined;
  if (fcsLen && fcsAt + fcsLen <= head.length) {
    contentSize = 0;
    for (let i = fcsLen - 1; i >= 0; i--) contentSize = contentSize * 256 + head[fcsAt + i]!;
    if (fcsLen === 2) contentSize += 256;
  }
  let p = start + fcsAt + fcsLen;
  for (;;) {
    const h3 = await src.read(p, 3);
    if (h3.length < 3) throw new CpioError("ETRUNC", `zstd frame at offset ${start} is truncated`);
    const h = h3[0]! | (h3[1]! << 8) | (h3[2]! << 16);
    p += 3;
    const last = h & 1;
    const type = (h >> 1) & 3;
    const size = h >>> 3;
    if (type === 3) throw new CpioError("ECORRUPT", `zstd frame at offset ${start} has a reserved block type`);
    p += type === 1 ? 1 : size;
    if (p > src.size) throw new CpioError("ETRUNC", `zstd frame at offset ${start} is truncated`);
    if (last) break;
  }
  if (checksum) p += 4;
  if (p > src.size) throw new CpioError("ETRUNC", `zstd frame at offset ${start} is truncated`);
  return { length: p - start, skippable: false, contentSize };
}

/** The output of a one-call decode, or undefined when it would pass FAST_OUT (then it is streamed). */
function oneCall(decode: () => Uint8Array): Uint8Array | undefined {
  try {
    return decode();
  } catch (err) {
    if (err instanceof CpioError && err.code === "FLEDGE_TOOBIG") return undefined;
    throw err;
  }
}

/** One zstd frame (plus any skippable frames around it): the unit the kernel's unzstd decodes. */
async function unzstdMember(src: ByteSource, start: number, room: number, sink: Sink): Promise<number> {
  let p = start;
  let frames = 0;
  while (p + 4 <= src.size && (le32(await src.read(p, 4), 0) & 0xfffffff0) === 0x184d2a50) p += (await zstdFrameLength(src, p)).length;
  if (p + 4 <= src.size && le32(await src.read(p, 4), 0) === ZSTD_MAGIC) {
    const { length, contentSize } = await zstdFrameLength(src, p);
    if (contentSize !== undefined && contentSize > room) throw new CpioError("E2BIG", `zstd frame at offset ${p} decompresses to ${contentSize} bytes, more than the ${human(room)} left under the limit`);
    try {
      // small (fledge's own segments): one call, unless it expands past FAST_OUT; then, like a
      // large frame, streamed. The sink checks the output against the cap either way.
      const bytes = length <= FAST_IN ? await src.read(p, length) : undefined;
      const out = bytes && oneCall(() => zstdDecodeFrame(bytes, FAST_OUT));
      if (out) for (let i = 0; i < out.length; i += CHUNK) await sink(out.subarray(i, i + CHUNK));
      else await throughTransform(new ZstdDecompressStream(), src, p, p + length, sink);
    } catch (err) {
      if (err instanceof CpioError && err.code !== "FLEDGE_CORRUPT") throw err;
      throw new CpioError("ECORRUPT", `zstd frame at offset ${p} is corrupt: ${(err as Error).message.replace(/^zstd data at byte \d+ is corrupt: /, "")}`);
    }
    p += length;
    frames++;
  }
  if (!frames && p === start) throw new CpioError("ECORRUPT", `no zstd frame at offset ${start}`);
  return p - start;
}

async function unxzMember(src: ByteSource, start: number, sink: Sink): Promise<number> {
  const head = await src.read(start, 12);
  if (start + 24 > src.size || head.length < 12) throw new CpioError("ETRUNC", `xz stream at offset ${start} is truncated`);
  const flags0 = head[6]!;
  const flags1 = head[7]!;
  // The stream ends at the first valid footer: CRC32(backward size, flags), the header's flags, "YZ".
  let end = -1;
  for (let base = start + 12; base + 12 <= src.size && end < 0; base += CHUNK) {
    const win = await src.read(base, CHUNK + 12);
    for (let i = 0; i + 12 <= win.length && i < CHUNK; i += 4) {
      if (win[i + 10] !== 0x59 || win[i + 11] !== 0x5a || win[i + 8] !== flags0 || win[i + 9] !== flags1) continue;
      if (crc32(win.subarray(i + 4, i + 10)) >>> 0 !== le32(win, i)) continue;
      end = base + i + 12;
      break;
    }
  }
  if (end < 0) throw new CpioError("ETRUNC", `xz stream at offset ${start} is truncated (no stream footer)`);
  if (end - start <= FAST_IN) {
    // small (fledge's own segments): one call, unless it expands past FAST_OUT (then streamed
    // below); the output is still checked against the cap by the sink
    let out: Uint8Array | undefined;
    const bytes = await src.read(start, end - start);
    try {
      out = oneCall(() => xzDecodeStream(bytes, FAST_OUT));
    } catch (err) {
      if (err instanceof CpioError) throw err;
      throw new CpioError("ECORRUPT", `xz stream at offset ${start} is corrupt: ${(err as Error).message}`);
    }
    if (out) {
      for (let i = 0; i < out.length; i += CHUNK) await sink(out.subarray(i, i + CHUNK));
      return end - start;
    }
  }
  try {
    await throughTransform(new XzDecompressStream(), src, start, end, sink);
  } catch (err) {
    if (err instanceof CpioError) throw err;
    throw new CpioError("ECORRUPT", `xz stream at offset ${start} is corrupt: ${(err as Error).message}`);
  }
  return end - start;
}

async function unlz4Member(src: ByteSource, start: number, sink: Sink): Promise<number> {
  let p = start + 4;
  const bound = lz4Bound(LZ4_LEGACY_BLOCK);
  while (p + 4 <= src.size) {
    const size = le32(await src.read(p, 4), 0);
    if (size === LZ4_LEGACY_MAGIC) {
      p += 4;
      continue;
    }
    if (size === 0 || size > bound) break;
    if (p + 4 + size > src.size) throw new CpioError("ETRUNC", `lz4 block at offset ${p} needs ${size} bytes, only ${src.size - p - 4} are left`);
    await sink(lz4DecompressBlock(await src.read(p + 4, size), LZ4_LEGACY_BLOCK));
    p += 4 + size;
  }
  return p - start;
}

/** Index of the first non-zero byte at or after `pos` (or the end). */
async function skipZeros(src: ByteSource, pos: number): Promise<number> {
  while (pos < src.size) {
    const win = await src.read(pos, CHUNK);
    let i = 0;
    // compare 8 bytes at a time where aligned, then byte by byte
    while (i < win.length && win[i] === 0) {
      if ((i & 7) === 0 && i + 8 <= win.length && win[i + 1] === 0 && win[i + 2] === 0 && win[i + 3] === 0 && win[i + 4] === 0 && win[i + 5] === 0 && win[i + 6] === 0 && win[i + 7] === 0) i += 8;
      else i++;
    }
    pos += i;
    if (i < win.length) return pos;
  }
  return pos;
}

/**
 * Reads an initramfs as the kernel does — concatenated members, each uncompressed newc or gzip,
 * zstd, xz or lz4 (legacy), zero padding between; every compressed member must end between two
 * entries — streaming: memory stays bounded whatever the archive's size (file data is hashed,
 * not kept, unless `keepData`), and decompressing more than `maxOutput` bytes stops with E2BIG.
 * Entries are reported through `onEntry` as soon as their data has been read.
 */
export async function scanArchive(input: Uint8Array | FileHandle, opts: ScanOptions = {}): Promise<ScanResult> {
  let src: ByteSource;
  if (input instanceof Uint8Array) src = bufferSource(input);
  else src = fileSource(input, (await input.stat()).size);
  const max = opts.maxOutput ?? DEFAULT_MAX_OUTPUT;
  const parser = new NewcParser({ hash: opts.hash ?? true, keepData: opts.keepData ?? false });
  const members: Member[] = [];
  let entries = 0;
  let total = 0;
  const flush = async () => {
    if (!parser.done.length) return;
    const done = parser.done.splice(0);
    entries += done.length;
    if (opts.onEntry) for (const e of done) await opts.onEntry(e);
  };
  const sink: Sink = async (chunk) => {
    total += chunk.length;
    if (total > max) throw new CpioError("E2BIG", `archive decompresses to more than ${human(max)}; fledge stops there (raise the limit if the archive is trusted)`);
    parser.push(chunk);
    await flush();
  };
  const boundary = () => {
    const prev = members[members.length - 1];
    if (prev && prev.kind !== "cpio" && !parser.atBoundary())
      throw new CpioError("ESPLIT", `${prev.kind} member at offset ${prev.offset} ends inside an entry; the kernel would stop with "junk at the end of compressed archive"`);
  };
  let p = 0;
  while (p < src.size) {
    p = await skipZeros(src, p);
    if (p >= src.size) break;
    const head = await src.read(p, 16);
    boundary();
    let consumed: number;
    let kind: string;
    if (head[0] === 0x30) {
      kind = "cpio";
      let q = p;
      for (;;) {
        const chunk = await src.read(q, CHUNK);
        if (!chunk.length) break;
        const used = parser.push(chunk, true);
        total += used;
        if (total > max) throw new CpioError("E2BIG", `archive holds more than ${human(max)} of newc; fledge stops there`);
        await flush();
        q += used;
        if (used < chunk.length) break;
      }
      consumed = q - p;
    } else if (startsWith(head, 0, GZIP)) {
      kind = "gzip";
      consumed = await gunzipMember(src, p, sink);
    } else if (head.length >= 4 && (le32(head, 0) === ZSTD_MAGIC || (le32(head, 0) & 0xfffffff0) === 0x184d2a50)) {
      kind = "zstd";
      consumed = await unzstdMember(src, p, max - total, sink);
    } else if (startsWith(head, 0, XZ)) {
      kind = "xz";
      consumed = await unxzMember(src, p, sink);
    } else if (head.length >= 4 && le32(head, 0) === LZ4_LEGACY_MAGIC) {
      kind = "lz4";
      consumed = await unlz4Member(src, p, sink);
    } else if (head.length >= 4 && le32(head, 0) === 0x184d2204) {
      throw new CpioError("EFORMAT", `lz4 frame at offset ${p} uses the modern frame format; the kernel only reads the legacy format (lz4 -l)`);
    } else if (startsWith(head, 0, [0x42, 0x5a, 0x68]) || startsWith(head, 0, [0x5d, 0x00, 0x00]) || startsWith(head, 0, [0x89, 0x4c, 0x5a, 0x4f])) {
      throw new CpioError("EFORMAT", `member at offset ${p} is bzip2/lzma/lzo, which fledge's reader does not decode`);
    } else {
      throw new CpioError("ECORRUPT", `unknown data at offset ${p} (byte 0x${head[0]!.toString(16).padStart(2, "0")}): not newc, gzip, zstd, xz or lz4`);
    }
    if (consumed <= 0) throw new CpioError("ECORRUPT", `empty member at offset ${p}`);
    members.push({ kind, offset: p, size: consumed });
    p += consumed;
  }
  parser.finish();
  await flush();
  return { members, uncompressedSize: total, entries };
}

/**
 * Reads a whole initramfs into memory (entries with their data): for tests and small archives.
 * `scanArchive` does the same in bounded memory. Errors are CpioErrors.
 */
export async function readArchive(input: Uint8Array, opts: ReadOptions = {}): Promise<ReadResult> {
  const entries: ReadEntry[] = [];
  const r = await scanArchive(input, { ...opts, keepData: true, hash: false, onEntry: (e) => void entries.push(e) });
  resolveLinks(entries);
  return { entries, members: r.members, uncompressedSize: r.uncompressedSize };
}

/** Hardlinked names all see the group's data (stored on any one of them, GNU cpio uses the last). */
function resolveLinks(entries: ReadEntry[]): void {
  const groups = new Map<string, Uint8Array>();
  for (const e of entries) {
    if (e.type !== "file" || e.nlink < 2) continue;
    const key = `${e.ino}:${e.devmajor}:${e.devminor}`;
    if (e.size > 0 || !groups.has(key)) groups.set(key, e.data ?? new Uint8Array(0));
  }
  for (const e of entries) if (e.type === "file" && e.nlink > 1) e.data = groups.get(`${e.ino}:${e.devmajor}:${e.devminor}`);
}

/** Parses uncompressed newc (possibly several archives, zero-padded between). */
export function parseNewc(buf: Uint8Array, base = 0): ReadEntry[] {
  const parser = new NewcParser({ hash: false, keepData: true });
  parser.push(buf);
  parser.finish();
  const out = parser.done.splice(0);
  for (const e of out) e.offset += base;
  resolveLinks(out);
  return out;
}

/** Splits the input into uncompressed newc runs, decompressing each member (as the kernel does). */
export async function decompressMembers(buf: Uint8Array, opts: ReadOptions = {}): Promise<{ kind: string; offset: number; size: number; data: Uint8Array }[]> {
  const src = bufferSource(buf);
  const max = opts.maxOutput ?? DEFAULT_MAX_OUTPUT;
  const out: { kind: string; offset: number; size: number; data: Uint8Array }[] = [];
  let total = 0;
  let p = 0;
  while (p < buf.length) {
    p = await skipZeros(src, p);
    if (p >= buf.length) break;
    const chunks: Uint8Array[] = [];
    const sink: Sink = async (c) => {
      total += c.length;
      if (total > max) throw new CpioError("E2BIG", `archive decompresses to more than ${human(max)}`);
      chunks.push(Buffer.from(c));
    };
    const head = buf.subarray(p, p + 16);
    let consumed: number;
    let kind: string;
    if (head[0] === 0x30) {
      const parser = new NewcParser({ hash: false, keepData: false });
      consumed = parser.push(buf.subarray(p), true);
      chunks.push(buf.subarray(p, p + consumed));
      kind = "cpio";
    } else if (startsWith(head, 0, GZIP)) [kind, consumed] = ["gzip", await gunzipMember(src, p, sink)];
    else if (head.length >= 4 && (le32(head, 0) === ZSTD_MAGIC || (le32(head, 0) & 0xfffffff0) === 0x184d2a50)) [kind, consumed] = ["zstd", await unzstdMember(src, p, max - total, sink)];
    else if (startsWith(head, 0, XZ)) [kind, consumed] = ["xz", await unxzMember(src, p, sink)];
    else if (head.length >= 4 && le32(head, 0) === LZ4_LEGACY_MAGIC) [kind, consumed] = ["lz4", await unlz4Member(src, p, sink)];
    else throw new CpioError("ECORRUPT", `unknown data at offset ${p}: not newc, gzip, zstd, xz or lz4`);
    if (consumed <= 0) throw new CpioError("ECORRUPT", `empty member at offset ${p}`);
    out.push({ kind, offset: p, size: consumed, data: Buffer.concat(chunks) });
    p += consumed;
  }
  return out;
}
