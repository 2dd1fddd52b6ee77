import { createHash } from "node:crypto";
import { closeSync, constants, fstatSync, openSync, readSync } from "node:fs";
import { open, stat, type FileHandle } from "node:fs/promises";
import { crc32c } from "./crc32c.js";
import { DIRENT_TYPE, TYPE_BITS, type Ext4Entry, type Ext4EntryType } from "./entry.js";
import { Ext4Error } from "./errors.js";

/*
 * An ext4 image written in one pass, without mke2fs, loop devices, mount or root.
 *
 * Layout (4 KiB blocks, 32768 blocks a group, 256-byte inodes, flex_bg):
 *   block 0            boot area (1 KiB of zeros) and the superblock at byte 1024
 *   blocks 1..g        group descriptors; copies of both at the start of groups 1, 3^n, 5^n, 7^n
 *   then               every group's block bitmap, inode bitmap and inode table, packed (flex_bg)
 *   then               the journal (inode 8), then the data of every inode in inode order
 *   the rest           free space
 * Directories are linear (no htree: the kernel indexes them itself as they grow), regular files
 * and long symlinks use extents, everything is initialised (no lazy init), and with
 * metadata_csum every superblock, descriptor, bitmap, inode, extent block and directory block
 * carries its crc32c. Inode numbers follow the sorted paths; UUID and hash seed are derived from
 * the content; every time is the entry's mtime. The same entries give the same bytes.
 */

export const BLOCK_SIZE = 4096;
const B = BLOCK_SIZE;
const BLOCKS_PER_GROUP = 8 * B;
const INODE_SIZE = 256;
const INODES_PER_BLOCK = B / INODE_SIZE;
const EXTRA_ISIZE = 32;
const FIRST_INO = 11;
const ROOT_INO = 2;
const JOURNAL_INO = 8;
const DESC_SIZE = 32;
const MAX_EXTENT_LEN = 32768;
const EXTENTS_PER_LEAF = Math.floor((B - 12) / 12); // 340, then 4 bytes for the checksum tail
const EXTENTS_FL = 0x80000;
const MAX_NAME = 255;
const LOST_FOUND_BLOCKS = 4;
const DIR_TAIL = 12;
const CHUNK = 4 << 20;

const COMPAT_HAS_JOURNAL = 0x4;
const COMPAT_EXT_ATTR = 0x8;
const COMPAT_DIR_INDEX = 0x20;
const INCOMPAT_FILETYPE = 0x2;
const INCOMPAT_EXTENTS = 0x40;
const INCOMPAT_FLEX_BG = 0x200;
const RO_COMPAT_SPARSE_SUPER = 0x1;
const RO_COMPAT_LARGE_FILE = 0x2;
const RO_COMPAT_DIR_NLINK = 0x20;
const RO_COMPAT_EXTRA_ISIZE = 0x40;
const RO_COMPAT_METADATA_CSUM = 0x400;

export interface Ext4Options {
  /** Time of every inode (and of the superblock), in seconds: `SOURCE_DATE_EPOCH` or a fixed epoch. */
  mtime: number;
  /**
   * Free space to leave in the image, in bytes (rounded up to blocks), or a function of the bytes
   * of regular file data in the image (e.g. "25% of the content"). Default 0.
   */
  freeBytes?: number | ((dataBytes: number) => number);
  /** Free inodes to leave. Default: one per 16 KiB of free space (mke2fs's ratio), at least 64. */
  freeInodes?: number;
  /** A jbd2 journal, sized as mke2fs sizes it (default true). */
  journal?: boolean;
  /** crc32c checksums on all metadata (default true, as mke2fs does). */
  metadataCsum?: boolean;
  /** Filesystem UUID; default derived from the content. */
  uuid?: string;
  /** Volume label, at most 16 bytes. */
  label?: string;
  /** Write every block, zeros included, instead of leaving holes in the image file. */
  preallocate?: boolean;
  /** Longest extent in blocks (default and at most 32768). Smaller values fragment files: for tests of the extent tree. */
  maxExtentBlocks?: number;
  /** Called as file data is written: bytes so far, bytes in all. */
  onProgress?: (written: number, total: number) => void;
}

export interface Ext4Result {
  /** Size of the image file in bytes (`blocks * 4096`). */
  size: number;
  /** sha256 of the image file, hex. */
  sha256: string;
  uuid: string;
  blocks: number;
  freeBlocks: number;
  inodes: number;
  freeInodes: number;
  /** Inodes in use, the root and lost+found included (not the reserved ones). */
  usedInodes: number;
  /** Bytes of regular file data. */
  dataBytes: number;
}

interface Node {
  path: string;
  name: Buffer;
  type: Ext4EntryType;
  mode: number;
  uid: number;
  gid: number;
  mtime: number;
  entry?: Ext4Entry;
  ino: number;
  links: number;
  size: number;
  parent?: Node;
  dirents?: { name: Buffer; node: Node }[];
  dirData?: Buffer;
  target?: Buffer;
  /** Data blocks (file content, directory blocks, a long symlink's block, the journal). */
  blocks: number;
  runs: [start: number, len: number][];
  leaves: number[];
  contentHash?: string;
}

function fail(code: string, message: string, path?: string): never {
  throw new Ext4Error(code, message, path);
}

function normPath(p: string): string {
  if (typeof p !== "string") fail("EPATH", `entry path must be a string, got ${typeof p}`);
  if (p.includes("\0")) fail("EPATH", `entry path contains a NUL byte: ${JSON.stringify(p)}`, p);
  const parts = p.split("/").filter((s) => s !== "");
  if (parts.length === 1 && parts[0] === ".") return "";
  for (const s of parts) if (s === "." || s === "..") fail("EPATH", `entry path must not contain "." or "..": ${p}`, p);
  return parts.join("/");
}

function cmpBytes(a: string, b: string): number {
  return Buffer.compare(Buffer.from(a), Buffer.from(b));
}

function isSparseGroup(g: number): boolean {
  if (g <= 1) return true;
  for (const base of [3, 5, 7]) {
    let n = base;
    while (n < g) n *= base;
    if (n === g) return true;
  }
  return false;
}

/** mke2fs's journal size for a filesystem of this many 4 KiB blocks (ext2fs_default_journal_size). */
export function defaultJournalBlocks(blocks: number): number {
  if (blocks < 2048) return 0;
  if (blocks < 32768) return 1024;
  if (blocks < 256 * 1024) return 4096;
  if (blocks < 512 * 1024) return 8192;
  if (blocks < 4096 * 1024) return 16384;
  if (blocks < 8192 * 1024) return 32768;
  if (blocks < 16384 * 1024) return 65536;
  if (blocks < 32768 * 1024) return 131072;
  return 262144;
}

function checkId(v: unknown, what: string, path: string): number {
  if (v === undefined) return 0;
  if (typeof v !== "number" || !Number.isInteger(v) || v < 0 || v > 0xffffffff) fail("EOWNER", `${path}: ${what} must be a whole number 0–4294967295, got ${String(v)}`, path);
  return v;
}

function checkTime(t: unknown, path: string): number {
  // ext4 with 256-byte inodes stores 34-bit seconds: 1901-12-13 to 2446-05-10.
  if (typeof t !== "number" || !Number.isInteger(t) || t < -0x80000000 || t > 0x37fffffff) fail("ETIME", `${path || "/"}: mtime ${String(t)} is not a whole number of seconds ext4 can store`, path);
  return t;
}

function dirRecLen(nameLen: number): number {
  return (8 + nameLen + 3) & ~3;
}

function writeU16(b: Buffer, off: number, v: number): void {
  b.writeUInt16LE(v & 0xffff, off);
}
function writeU32(b: Buffer, off: number, v: number): void {
  b.writeUInt32LE(v >>> 0, off);
}

/** ext4 timestamp: the low 32 bits (as the signed seconds' bit pattern) and the `_extra` word's epoch bits. */
function timeParts(t: number): [number, number] {
  const lo = ((t % 2 ** 32) + 2 ** 32) % 2 ** 32;
  const signedLo = lo >= 2 ** 31 ? lo - 2 ** 32 : lo;
  return [lo, ((t - signedLo) / 2 ** 32) & 3];
}

function parseUuid(s: string): Buffer {
  const hex = s.replace(/-/g, "");
  if (!/^[0-9a-fA-F]{32}$/.test(hex)) fail("EOPTION", `uuid must be 32 hex digits (dashes allowed), got ${JSON.stringify(s)}`);
  return Buffer.from(hex, "hex");
}

export function formatUuid(b: Uint8Array): string {
  const h = Buffer.from(b).toString("hex");
  return `${h.slice(0, 8)}-${h.slice(8, 12)}-${h.slice(12, 16)}-${h.slice(16, 20)}-${h.slice(20)}`;
}

/** Sequential block allocator that never hands out the superblock/descriptor copies. */
class Allocator {
  next = 0;
  constructor(
    readonly total: number,
    readonly maxRun: number,
    /** Sorted, disjoint [start, end) ranges that are already taken. */
    readonly reserved: [number, number][],
  ) {}
  #skip(): void {
    for (const [s, e] of this.reserved) if (this.next >= s && this.next < e) this.next = e;
  }
  #roomHere(): number {
    let limit = this.total;
    for (const [s] of this.reserved) if (s >= this.next && s < limit) limit = s;
    return limit - this.next;
  }
  /** n blocks in one piece. */
  contiguous(n: number): number {
    for (;;) {
      this.#skip();
      const room = this.#roomHere();
      if (room >= n) {
        const at = this.next;
        this.next += n;
        return at;
      }
      if (this.next + room >= this.total) fail("ESPACE", "internal: the image is too small for its metadata");
      this.next += room;
    }
  }
  /** n blocks as runs of at most one extent each. */
  runs(n: number, maxRun = this.maxRun): [number, number][] {
    const out: [number, number][] = [];
    while (n > 0) {
      this.#skip();
      const room = this.#roomHere();
      if (room <= 0) fail("ESPACE", "internal: the image is too small for its data");
      const len = Math.min(n, room, maxRun);
      const last = out[out.length - 1];
      if (last && last[0] + last[1] === this.next && last[1] + len <= maxRun) last[1] += len;
      else out.push([this.next, len]);
      this.next += len;
      n -= len;
    }
    return out;
  }
}

/** Buffers adjacent writes into large positional writes. */
class BlockWriter {
  readonly #buf = Buffer.alloc(CHUNK);
  #start = 0;
  #len = 0;
  constructor(readonly fh: FileHandle) {}
  async write(pos: number, data: Uint8Array): Promise<void> {
    if (this.#len > 0 && (pos !== this.#start + this.#len || this.#len + data.length > CHUNK)) await this.flush();
    if (data.length >= CHUNK) {
      await writeAll(this.fh, data, pos);
      return;
    }
    if (this.#len === 0) this.#start = pos;
    this.#buf.set(data, this.#len);
    this.#len += data.length;
  }
  async flush(): Promise<void> {
    if (this.#len === 0) return;
    await writeAll(this.fh, this.#buf.subarray(0, this.#len), this.#start);
    this.#len = 0;
  }
}

async function writeAll(fh: FileHandle, data: Uint8Array, pos: number): Promise<void> {
  let off = 0;
  while (off < data.length) {
    const { bytesWritten } = await fh.write(data, off, data.length - off, pos + off);
    off += bytesWritten;
  }
}

const ZERO_BLOCK = Buffer.alloc(B);

/**
 * Writes `entries` as an ext4 image to `out` (created; an existing file is an error). Parents
 * missing from the list are created as 0755 root-owned directories; `/lost+found` is added
 * unless given. Returns the image's size and sha256.
 */
export async function writeExt4(entries: Iterable<Ext4Entry>, out: string, opts: Ext4Options): Promise<Ext4Result> {
  const defaultTime = checkTime(opts.mtime, "");
  const csum = opts.metadataCsum ?? true;
  const withJournal = opts.journal ?? true;
  const maxRun = opts.maxExtentBlocks ?? MAX_EXTENT_LEN;
  if (!Number.isInteger(maxRun) || maxRun < 1 || maxRun > MAX_EXTENT_LEN) fail("EOPTION", `maxExtentBlocks must be 1–${MAX_EXTENT_LEN}, got ${opts.maxExtentBlocks}`);
  const label = Buffer.from(opts.label ?? "", "utf8");
  if (label.length > 16) fail("EOPTION", `the volume label is at most 16 bytes, got ${label.length}: ${opts.label}`);

  // --- 1. the entries as a tree of nodes
  const byPath = new Map<string, Ext4Entry>();
  for (const e of entries) {
    const p = normPath(e.path);
    if (byPath.has(p)) fail("EDUP", `two entries for the same path: /${p}`, e.path);
    byPath.set(p, e);
  }
  const rootEntry = byPath.get("");
  byPath.delete("");
  if (rootEntry && rootEntry.type !== "dir") fail("ETYPE", `the image root must be a directory, got a ${rootEntry.type}`, "/");
  const nodes = new Map<string, Node>();
  const order: Node[] = [];
  const mkNode = (path: string, name: string, type: Ext4EntryType, e: Ext4Entry | undefined, parent: Node | undefined): Node => {
    const nameBuf = Buffer.from(name, "utf8");
    if (nameBuf.length > MAX_NAME) fail("ENAMETOOLONG", `/${path}: the name "${name.slice(0, 40)}…" is ${nameBuf.length} bytes; ext4 names are at most ${MAX_NAME}`, path);
    const mode = e ? e.mode : type === "dir" ? 0o755 : 0o644;
    if (!Number.isInteger(mode) || mode < 0 || mode > 0o7777) fail("EMODE", `/${path}: mode ${String(mode)} is not permission bits (0–0o7777)`, path);
    const n: Node = {
      path,
      name: nameBuf,
      type,
      mode,
      uid: checkId(e?.uid, "uid", path),
      gid: checkId(e?.gid, "gid", path),
      mtime: e?.mtime === undefined ? defaultTime : checkTime(e.mtime, path),
      entry: e,
      ino: 0,
      links: 1,
      size: 0,
      parent,
      blocks: 0,
      runs: [],
      leaves: [],
    };
    if (type === "dir") n.dirents = [];
    nodes.set(path, n);
    return n;
  };
  const root = mkNode("", "", "dir", rootEntry, undefined);
  root.ino = ROOT_INO;
  const dirOf = (path: string, child: string): Node => {
    if (path === "") return root;
    const have = nodes.get(path);
    if (have) {
      if (have.type !== "dir") fail("ENOTDIR", `cannot add /${child}: /${path} is a ${have.type}, not a directory`, child);
      return have;
    }
    const slash = path.lastIndexOf("/");
    const parent = dirOf(slash < 0 ? "" : path.slice(0, slash), child);
    const d = mkNode(path, path.slice(slash + 1), "dir", undefined, parent);
    parent.dirents!.push({ name: d.name, node: d });
    order.push(d);
    return d;
  };
  const links: [string, Ext4Entry][] = [];
  let lostFound: Node | undefined;
  if (!byPath.has("lost+found")) {
    lostFound = mkNode("lost+found", "lost+found", "dir", undefined, root);
    lostFound.mode = 0o700;
    root.dirents!.push({ name: lostFound.name, node: lostFound });
    order.push(lostFound);
  } else if (byPath.get("lost+found")!.type !== "dir") fail("ETYPE", "/lost+found must be a directory in an ext4 image (fsck puts orphaned files there)", "lost+found");
  for (const p of [...byPath.keys()].sort(cmpBytes)) {
    const e = byPath.get(p)!;
    const slash = p.lastIndexOf("/");
    const parent = dirOf(slash < 0 ? "" : p.slice(0, slash), p);
    if (e.linkTo !== undefined) {
      if (e.type !== "file") fail("ETYPE", `/${p}: only regular files can be hardlinks (linkTo), this is a ${e.type}`, p);
      links.push([p, e]);
      continue;
    }
    if (!(e.type in TYPE_BITS)) fail("ETYPE", `/${p}: unknown entry type ${JSON.stringify(e.type)}`, p);
    const n = mkNode(p, p.slice(slash + 1), e.type, e, parent);
    if (p === "lost+found") lostFound = n;
    parent.dirents!.push({ name: n.name, node: n });
    order.push(n);
  }
  // Hardlinks: another name for a regular file's inode.
  for (const [p, e] of links) {
    let to = normPath(e.linkTo!);
    const seen = new Set<string>([p]);
    let target = nodes.get(to);
    while (!target) {
      const via = byPath.get(to);
      if (!via || via.linkTo === undefined || seen.has(to)) fail("ELINK", `/${p}: hardlink target /${to} is not a regular file in the image`, p);
      seen.add(to);
      to = normPath(via.linkTo);
      target = nodes.get(to);
    }
    if (target.type !== "file") fail("ELINK", `/${p}: hardlink target /${to} is a ${target.type}, not a regular file`, p);
    const slash = p.lastIndexOf("/");
    const parent = nodes.get(slash < 0 ? "" : p.slice(0, slash)) ?? root;
    const name = Buffer.from(p.slice(slash + 1), "utf8");
    if (name.length > MAX_NAME) fail("ENAMETOOLONG", `/${p}: the name is ${name.length} bytes; ext4 names are at most ${MAX_NAME}`, p);
    parent.dirents!.push({ name, node: target });
    target.links++;
  }

  // Inode numbers in order; directory link counts; sizes.
  let nextIno = FIRST_INO;
  for (const n of order) n.ino = nextIno++;
  const usedInodes = order.length + 1;
  for (const n of [root, ...order]) {
    if (n.type === "dir") {
      n.dirents!.sort((a, b) => Buffer.compare(a.name, b.name));
      let subdirs = 0;
      for (const d of n.dirents!) if (d.node.type === "dir") subdirs++;
      n.links = 2 + subdirs > 65000 ? 1 : 2 + subdirs;
    }
  }
  let dataBytes = 0;
  for (const n of order) {
    const e = n.entry;
    if (n.type === "file" && e) {
      const sources = [e.data, e.file, e.stream].filter((s) => s !== undefined).length;
      if (sources !== 1) fail("EDATA", `/${n.path}: a regular file needs exactly one of data, file and stream`, n.path);
      if (e.data) n.size = e.data.length;
      else if (e.size !== undefined) n.size = e.size;
      else if (e.offset) fail("EDATA", `/${n.path}: a byte range of a host file (offset) needs a size`, n.path);
      else if (e.file) {
        let st;
        try {
          st = await stat(e.file);
        } catch (err) {
          fail("EREAD", `/${n.path}: cannot read ${e.file}: ${(err as Error).message}`, n.path);
        }
        if (!st.isFile()) fail("EREAD", `/${n.path}: ${e.file} is not a regular file`, n.path);
        n.size = st.size;
      } else fail("EDATA", `/${n.path}: a stream needs a size`, n.path);
      if (!Number.isSafeInteger(n.size) || n.size < 0) fail("EDATA", `/${n.path}: size ${n.size} is not a byte count`, n.path);
      if (e.offset !== undefined && (!Number.isSafeInteger(e.offset) || e.offset < 0)) fail("EDATA", `/${n.path}: offset ${e.offset} is not a byte position`, n.path);
      n.blocks = Math.ceil(n.size / B);
      dataBytes += n.size;
    } else if (n.type === "symlink") {
      if (!e?.target) fail("ETARGET", `/${n.path}: a symlink needs a target`, n.path);
      n.target = Buffer.from(e.target, "utf8");
      if (n.target.length >= B) fail("ETARGET", `/${n.path}: symlink target is ${n.target.length} bytes; at most ${B - 1}`, n.path);
      n.size = n.target.length;
      n.blocks = n.target.length < 60 ? 0 : 1;
    } else if (n.type === "char" || n.type === "block") {
      const { major, minor } = e ?? {};
      if (!Number.isInteger(major) || !Number.isInteger(minor) || major! < 0 || minor! < 0 || major! > 0xfff || minor! > 0xfffff)
        fail("EDEV", `/${n.path}: device numbers must be whole numbers (major 0–4095, minor 0–1048575), got ${major}:${minor}`, n.path);
    }
  }
  // Directory contents, laid out now (the tails' checksums come last).
  const usable = csum ? B - DIR_TAIL : B;
  for (const n of [root, ...order]) if (n.type === "dir") layoutDir(n, usable, csum, n === lostFound ? LOST_FOUND_BLOCKS : 1);

  const freeBytes = typeof opts.freeBytes === "function" ? opts.freeBytes(dataBytes) : (opts.freeBytes ?? 0);
  if (!Number.isFinite(freeBytes) || freeBytes < 0) fail("EOPTION", `freeBytes must be 0 or more, got ${freeBytes}`);

  // --- 2. geometry: groups, inodes per group, journal, reserved ranges, to a fixed point
  let dataBlocks = 0;
  for (const n of [root, ...order]) dataBlocks += n.blocks;
  const freeBlocksWanted = Math.ceil(freeBytes / B);
  const freeInodesWanted = opts.freeInodes ?? Math.max(64, Math.ceil(freeBytes / 16384));
  if (!Number.isInteger(freeInodesWanted) || freeInodesWanted < 0) fail("EOPTION", `freeInodes must be a whole number 0 or more, got ${opts.freeInodes}`);
  const inodesNeeded = FIRST_INO - 1 + order.length + freeInodesWanted;
  let groups = 1;
  let geo!: ReturnType<typeof geometry>;
  for (let i = 0; i < 64; i++) {
    geo = geometry(groups, inodesNeeded, withJournal, dataBlocks, freeBlocksWanted, order, maxRun);
    const need = Math.ceil(geo.total / BLOCKS_PER_GROUP);
    if (need <= groups) break;
    groups = need;
  }
  if (geo.total > 0xffffffff) fail("ESPACE", `the image would be ${geo.total} blocks; this writer stops at 2^32 blocks (16 TiB)`);
  const { total, ipg, itb, gdtBlocks, journalBlocks } = geo;
  const inodesCount = groups * ipg;

  // --- 3. allocation
  const reserved: [number, number][] = [];
  for (let g = 0; g < groups; g++) if (isSparseGroup(g)) reserved.push([g * BLOCKS_PER_GROUP, g * BLOCKS_PER_GROUP + 1 + gdtBlocks]);
  const alloc = new Allocator(total, maxRun, reserved);
  const blockBitmapAt: number[] = [];
  const inodeBitmapAt: number[] = [];
  const inodeTableAt: number[] = [];
  for (let g = 0; g < groups; g++) blockBitmapAt.push(alloc.contiguous(1));
  for (let g = 0; g < groups; g++) inodeBitmapAt.push(alloc.contiguous(1));
  for (let g = 0; g < groups; g++) inodeTableAt.push(alloc.contiguous(itb));
  let journal: Node | undefined;
  if (journalBlocks > 0) {
    journal = { path: "", name: Buffer.alloc(0), type: "file", mode: 0o600, uid: 0, gid: 0, mtime: defaultTime, ino: JOURNAL_INO, links: 1, size: journalBlocks * B, blocks: journalBlocks, runs: [], leaves: [] };
    allocNode(journal, alloc, MAX_EXTENT_LEN);
  }
  for (const n of [root, ...order]) allocNode(n, alloc);
  if (alloc.next > total) fail("ESPACE", "internal: allocation ran past the end of the image");

  const used = new Uint8Array(Math.ceil(total / 8));
  const mark = (start: number, len: number) => {
    for (let b = start; b < start + len; b++) used[b >>> 3]! |= 1 << (b & 7);
  };
  for (const [s, e] of reserved) mark(s, e - s);
  for (let g = 0; g < groups; g++) {
    mark(blockBitmapAt[g]!, 1);
    mark(inodeBitmapAt[g]!, 1);
    mark(inodeTableAt[g]!, itb);
  }
  for (const n of journal ? [journal, root, ...order] : [root, ...order]) {
    for (const [s, l] of n.runs) mark(s, l);
    for (const l of n.leaves) mark(l, 1);
  }

  // --- 4. data
  const fh = await open(out, "wx", 0o644);
  let closed = false;
  try {
    await fh.truncate(total * B);
    if (opts.preallocate) {
      const zeros = Buffer.alloc(CHUNK);
      for (let pos = 0; pos < total * B; pos += CHUNK) await writeAll(fh, zeros.subarray(0, Math.min(CHUNK, total * B - pos)), pos);
    }
    const w = new BlockWriter(fh);
    const readBuf = Buffer.alloc(1 << 20);
    let written = 0;
    opts.onProgress?.(0, dataBytes);
    let sinceYield = 0;
    for (const n of order) {
      if (n.type !== "file") continue;
      n.contentHash = await writeFileData(n, w, readBuf);
      written += n.size;
      opts.onProgress?.(written, dataBytes);
      // Let signals, timers and progress through now and then (host files are read synchronously).
      sinceYield += n.size + 4096;
      if (sinceYield > 8 << 20) {
        sinceYield = 0;
        await new Promise<void>((r) => setImmediate(r));
      }
    }

    // --- 5. identity: derived from everything that went in
    const id = createHash("sha256");
    id.update(`fledge-ext4 1 ${total} ${ipg} ${groups} ${journalBlocks} ${csum ? 1 : 0} ${label.toString("hex")}\n`);
    for (const n of [root, ...order]) {
      id.update(`${n.ino} ${Buffer.from(n.path).toString("hex")} ${n.type} ${n.mode} ${n.uid} ${n.gid} ${n.mtime} ${n.size} ${n.links}`);
      if (n.contentHash) id.update(` ${n.contentHash}`);
      if (n.target) id.update(` ${n.target.toString("hex")}`);
      if (n.type === "char" || n.type === "block") id.update(` ${n.entry!.major}:${n.entry!.minor}`);
      if (n.dirents) for (const d of n.dirents) id.update(` ${d.name.toString("hex")}=${d.node.ino}`);
      id.update("\n");
    }
    const digest = id.digest();
    const uuid = opts.uuid ? parseUuid(opts.uuid) : Buffer.from(digest.subarray(0, 16));
    if (!opts.uuid) {
      uuid[6] = (uuid[6]! & 0x0f) | 0x50; // name-based (SHA) UUID
      uuid[8] = (uuid[8]! & 0x3f) | 0x80;
    }
    const hashSeed = createHash("sha256").update(digest).update("hash seed").digest().subarray(0, 16);
    const seed = csum ? crc32c(0xffffffff, uuid) : 0;

    // --- 6. metadata
    const inodeSeed = (ino: number) => {
      const b = Buffer.alloc(8);
      b.writeUInt32LE(ino, 0); // generation 0 follows
      return crc32c(seed, b);
    };
    // directories, long symlinks, extent leaves
    for (const n of journal ? [journal, root, ...order] : [root, ...order]) {
      const iseed = csum ? inodeSeed(n.ino) : 0;
      if (n.type === "dir") {
        const data = n.dirData!;
        if (csum) for (let off = 0; off < data.length; off += B) writeU32(data, off + B - 4, crc32c(iseed, data, off, off + B - DIR_TAIL));
        await writeRuns(w, n.runs, data);
      } else if (n.type === "symlink" && n.blocks === 1) {
        const blk = Buffer.alloc(B);
        n.target!.copy(blk);
        await writeRuns(w, n.runs, blk);
      } else if (n === journal) {
        await w.write(n.runs[0]![0] * B, journalSuperblock(journalBlocks, uuid));
      }
      if (n.leaves.length) {
        for (let i = 0; i < n.leaves.length; i++) {
          const leaf = Buffer.alloc(B);
          const runs = n.runs.slice(i * EXTENTS_PER_LEAF, (i + 1) * EXTENTS_PER_LEAF);
          let logical = 0;
          for (const [, l] of n.runs.slice(0, i * EXTENTS_PER_LEAF)) logical += l;
          writeU16(leaf, 0, 0xf30a);
          writeU16(leaf, 2, runs.length);
          writeU16(leaf, 4, EXTENTS_PER_LEAF);
          writeU16(leaf, 6, 0);
          runs.forEach(([s, l], k) => {
            writeExtent(leaf, 12 + k * 12, logical, s, l);
            logical += l;
          });
          if (csum) writeU32(leaf, 12 + EXTENTS_PER_LEAF * 12, crc32c(iseed, leaf, 0, 12 + EXTENTS_PER_LEAF * 12));
          await w.write(n.leaves[i]! * B, leaf);
        }
      }
    }

    // inode tables
    const tables = Array.from({ length: groups }, () => Buffer.alloc(itb * B));
    const iused = new Uint8Array(Math.ceil(inodesCount / 8));
    const dirsIn = new Array<number>(groups).fill(0);
    const highest = new Array<number>(groups).fill(0);
    const putInode = (ino: number, raw: Buffer) => {
      const g = Math.floor((ino - 1) / ipg);
      const idx = (ino - 1) % ipg;
      if (csum) {
        const c = crc32c(inodeSeed(ino), raw);
        writeU16(raw, 0x7c, c & 0xffff);
        writeU16(raw, 0x82, c >>> 16);
      }
      raw.copy(tables[g]!, idx * INODE_SIZE);
      iused[(ino - 1) >>> 3]! |= 1 << ((ino - 1) & 7);
      highest[g] = Math.max(highest[g]!, idx + 1);
    };
    const inodeNodes = new Map<number, Node>();
    for (const n of journal ? [journal, root, ...order] : [root, ...order]) inodeNodes.set(n.ino, n);
    for (let ino = 1; ino < FIRST_INO; ino++) {
      const n = inodeNodes.get(ino);
      if (n) continue;
      const raw = Buffer.alloc(INODE_SIZE);
      writeU16(raw, 0x80, EXTRA_ISIZE);
      putInode(ino, raw);
    }
    for (const n of inodeNodes.values()) {
      putInode(n.ino, encodeInode(n));
      if (n.type === "dir") dirsIn[Math.floor((n.ino - 1) / ipg)]!++;
    }

    // bitmaps and group descriptors
    const gdt = Buffer.alloc(gdtBlocks * B);
    let freeBlocksTotal = 0;
    let freeInodesTotal = 0;
    for (let g = 0; g < groups; g++) {
      const first = g * BLOCKS_PER_GROUP;
      const count = Math.min(BLOCKS_PER_GROUP, total - first);
      const bb = Buffer.alloc(B);
      let freeB = 0;
      for (let i = 0; i < BLOCKS_PER_GROUP; i++) {
        const b = first + i;
        const isUsed = i >= count || (used[b >>> 3]! & (1 << (b & 7))) !== 0;
        if (isUsed) bb[i >>> 3]! |= 1 << (i & 7);
        else freeB++;
      }
      const ib = Buffer.alloc(B, 0xff);
      ib.fill(0, 0, ipg / 8);
      let freeI = 0;
      for (let i = 0; i < ipg; i++) {
        const ino = g * ipg + i + 1;
        if (iused[(ino - 1) >>> 3]! & (1 << ((ino - 1) & 7))) ib[i >>> 3]! |= 1 << (i & 7);
        else freeI++;
      }
      freeBlocksTotal += freeB;
      freeInodesTotal += freeI;
      const d = gdt.subarray(g * DESC_SIZE, (g + 1) * DESC_SIZE);
      writeU32(d, 0x00, blockBitmapAt[g]!);
      writeU32(d, 0x04, inodeBitmapAt[g]!);
      writeU32(d, 0x08, inodeTableAt[g]!);
      writeU16(d, 0x0c, freeB);
      writeU16(d, 0x0e, freeI);
      writeU16(d, 0x10, dirsIn[g]!);
      if (csum) {
        writeU16(d, 0x12, 0x4); // EXT4_BG_INODE_ZEROED: the table is written in full
        writeU16(d, 0x18, crc32c(seed, bb) & 0xffff);
        writeU16(d, 0x1a, crc32c(seed, ib, 0, ipg / 8) & 0xffff);
        writeU16(d, 0x1c, ipg - highest[g]!);
        const gb = Buffer.alloc(4);
        gb.writeUInt32LE(g, 0);
        let c = crc32c(seed, gb);
        c = crc32c(c, d, 0, 0x1e);
        c = crc32c(c, Buffer.alloc(2));
        writeU16(d, 0x1e, c & 0xffff);
      }
      await w.write(blockBitmapAt[g]! * B, bb);
      await w.write(inodeBitmapAt[g]! * B, ib);
      await w.write(inodeTableAt[g]! * B, tables[g]!);
    }

    // superblock and its copies
    const sbFields: SuperblockFields = {
      inodesCount,
      total,
      freeBlocks: freeBlocksTotal,
      freeInodes: freeInodesTotal,
      ipg,
      time: defaultTime,
      uuid,
      label,
      hashSeed,
      csum,
      journal,
    };
    for (const [s] of reserved) {
      const g = s / BLOCKS_PER_GROUP;
      const sb = superblock(sbFields, g);
      if (g === 0) {
        const blk0 = Buffer.alloc(B);
        sb.copy(blk0, 1024);
        await w.write(0, blk0);
      } else await w.write(s * B, sb);
      await w.write((s + 1) * B, gdt);
    }
    await w.flush();
    await fh.close();
    closed = true;

    // --- 7. the image's sha256, read back
    const sha = createHash("sha256");
    const rh = await open(out, "r");
    try {
      const buf = Buffer.alloc(CHUNK);
      for (let pos = 0; pos < total * B; ) {
        const { bytesRead } = await rh.read(buf, 0, Math.min(CHUNK, total * B - pos), pos);
        if (bytesRead === 0) fail("EWRITE", `${out} is shorter than the image written to it`);
        sha.update(buf.subarray(0, bytesRead));
        pos += bytesRead;
      }
    } finally {
      await rh.close();
    }
    return {
      size: total * B,
      sha256: sha.digest("hex"),
      uuid: formatUuid(uuid),
      blocks: total,
      freeBlocks: freeBlocksTotal,
      inodes: inodesCount,
      freeInodes: freeInodesTotal,
      usedInodes,
      dataBytes,
    };
  } finally {
    if (!closed) await fh.close().catch(() => {});
  }
}

function geometry(groups: number, inodesNeeded: number, withJournal: boolean, dataBlocks: number, freeBlocks: number, order: Node[], maxRun: number) {
  let ipg = Math.ceil(inodesNeeded / groups);
  ipg = Math.max(INODES_PER_BLOCK, Math.ceil(ipg / INODES_PER_BLOCK) * INODES_PER_BLOCK);
  if (ipg > BLOCKS_PER_GROUP) return { total: (groups + 1) * BLOCKS_PER_GROUP, ipg, itb: 0, gdtBlocks: 0, journalBlocks: 0 };
  const itb = ipg / INODES_PER_BLOCK;
  const gdtBlocks = Math.ceil((groups * DESC_SIZE) / B);
  let backups = 0;
  for (let g = 0; g < groups; g++) if (isSparseGroup(g)) backups++;
  // Extent leaves: an upper bound (a file is cut at every superblock copy it crosses).
  let leaves = 0;
  for (const n of order) {
    const runs = Math.ceil(n.blocks / maxRun) + (n.blocks > 1 ? backups : 0);
    if (runs > 4) leaves += Math.ceil(runs / EXTENTS_PER_LEAF);
  }
  const fixed = backups * (1 + gdtBlocks) + groups * (2 + itb) + dataBlocks + leaves + freeBlocks;
  let journalBlocks = 0;
  if (withJournal) {
    for (;;) {
      const j = defaultJournalBlocks(fixed + journalBlocks);
      if (j <= journalBlocks) break;
      journalBlocks = j;
    }
  }
  let total = fixed + journalBlocks;
  // A last group too small to be worth its metadata gets more free space instead.
  const last = total - (groups - 1) * BLOCKS_PER_GROUP;
  if (groups > 1 && last > 0 && last < 1024) total += 1024 - last;
  // Always a little room, so the kernel can write a file or two even with freeBytes = 0.
  total = Math.max(total, fixed + journalBlocks + 16);
  return { total, ipg, itb, gdtBlocks, journalBlocks };
}

function allocNode(n: Node, alloc: Allocator, maxRun?: number): void {
  if (n.blocks === 0) return;
  // i_blocks counts 512-byte sectors in 32 bits (no huge_file): 2 TiB a file.
  if ((n.blocks + 5) * (B / 512) > 0xffffffff) fail("EFBIG", `/${n.path}: ${n.size} bytes is more than an ext4 file holds here (2 TiB)`, n.path);
  n.runs = alloc.runs(n.blocks, maxRun);
  if (n.runs.length > 4) {
    const leaves = Math.ceil(n.runs.length / EXTENTS_PER_LEAF);
    if (leaves > 4) fail("ESPACE", `/${n.path}: ${n.runs.length} extents need a deeper extent tree than this writer makes`, n.path);
    for (let i = 0; i < leaves; i++) n.leaves.push(alloc.contiguous(1));
  }
}

function layoutDir(n: Node, usable: number, csum: boolean, minBlocks: number): void {
  const recs: { ino: number; name: Buffer; type: number }[] = [
    { ino: n.ino, name: Buffer.from("."), type: DIRENT_TYPE.dir },
    { ino: n.parent ? n.parent.ino : n.ino, name: Buffer.from(".."), type: DIRENT_TYPE.dir },
    ...n.dirents!.map((d) => ({ ino: d.node.ino, name: d.name, type: DIRENT_TYPE[d.node.type] })),
  ];
  const blocks: { ino: number; name: Buffer; type: number }[][] = [[]];
  let fill = 0;
  for (const r of recs) {
    const len = dirRecLen(r.name.length);
    if (fill + len > usable) {
      blocks.push([]);
      fill = 0;
    }
    blocks[blocks.length - 1]!.push(r);
    fill += len;
  }
  while (blocks.length < minBlocks) blocks.push([]);
  const data = Buffer.alloc(blocks.length * B);
  blocks.forEach((recsIn, bi) => {
    const base = bi * B;
    let off = 0;
    if (recsIn.length === 0) {
      writeU32(data, base, 0);
      writeU16(data, base + 4, usable);
    }
    recsIn.forEach((r, i) => {
      const len = i === recsIn.length - 1 ? usable - off : dirRecLen(r.name.length);
      writeU32(data, base + off, r.ino);
      writeU16(data, base + off + 4, len);
      data[base + off + 6] = r.name.length;
      data[base + off + 7] = r.type;
      r.name.copy(data, base + off + 8);
      off += len;
    });
    if (csum) {
      // struct ext4_dir_entry_tail: inode 0, rec_len 12, name_len 0, type 0xde, checksum
      writeU16(data, base + B - DIR_TAIL + 4, DIR_TAIL);
      data[base + B - DIR_TAIL + 7] = 0xde;
    }
  });
  n.dirData = data;
  n.blocks = blocks.length;
  n.size = data.length;
}

async function writeRuns(w: BlockWriter, runs: [number, number][], data: Buffer): Promise<void> {
  let off = 0;
  for (const [s, l] of runs) {
    await w.write(s * B, data.subarray(off, off + l * B));
    off += l * B;
  }
}

async function writeFileData(n: Node, w: BlockWriter, readBuf: Buffer): Promise<string> {
  const e = n.entry!;
  const hash = createHash("sha256");
  let runIdx = 0;
  let inRun = 0; // bytes into the current run
  let total = 0;
  const put = async (chunk: Uint8Array) => {
    let off = 0;
    while (off < chunk.length) {
      const run = n.runs[runIdx];
      if (!run) throw new Ext4Error("ECHANGED", `${describe(e)} changed size while the image was written (it grew past ${n.size} bytes)`, n.path);
      const room = run[1] * B - inRun;
      const take = Math.min(room, chunk.length - off);
      await w.write(run[0] * B + inRun, chunk.subarray(off, off + take));
      off += take;
      inRun += take;
      if (inRun === run[1] * B) {
        runIdx++;
        inRun = 0;
      }
    }
  };
  const feed = async (chunk: Uint8Array) => {
    if (total + chunk.length > n.size) throw new Ext4Error("ECHANGED", `${describe(e)} changed size while the image was written (it grew past ${n.size} bytes)`, n.path);
    hash.update(chunk);
    total += chunk.length;
    await put(chunk);
  };
  if (e.data) await feed(e.data);
  else if (e.stream) for await (const c of e.stream()) await feed(c);
  else await readHostFile(e.file!, e.offset ?? 0, n.size, feed, n.path, readBuf);
  if (total !== n.size) throw new Ext4Error("ECHANGED", `${describe(e)} changed size while the image was written (${n.size} → ${total} bytes)`, n.path);
  // Zero the rest of the last block, so adjacent files coalesce into one write.
  const tail = (B - (n.size % B)) % B;
  if (tail) await put(ZERO_BLOCK.subarray(0, tail));
  return hash.digest("hex");
}

function describe(e: Ext4Entry): string {
  return e.file ? `${e.file} (for /${normPath(e.path)})` : `/${normPath(e.path)}`;
}

/**
 * Reads `size` bytes of a host file from `offset` and feeds them on. Synchronous reads: with many
 * small files, a thread-pool round trip per open/read/close costs more than the reads themselves
 * (mke2fs reads synchronously too); the caller yields to the event loop between files.
 */
async function readHostFile(path: string, offset: number, size: number, feed: (c: Uint8Array) => Promise<void>, entryPath: string, buf: Buffer): Promise<void> {
  let fd: number;
  try {
    // O_NONBLOCK: a FIFO swapped in for a listed file must fail here, not hang the build.
    fd = openSync(path, constants.O_RDONLY | constants.O_NONBLOCK);
  } catch (err) {
    throw new Ext4Error("EREAD", `/${entryPath}: cannot read ${path}: ${(err as Error).message}`, entryPath);
  }
  try {
    if (!fstatSync(fd).isFile()) throw new Ext4Error("EREAD", `/${entryPath}: ${path} is not a regular file (any more)`, entryPath);
    let pos = 0;
    for (;;) {
      // Read one byte past the expected end: a file that grew must not be cut silently. A byte
      // range (offset) of a larger file ends where the range ends, not at the file's end.
      const want = Math.min(buf.length, size - pos + (offset ? 0 : 1));
      if (want === 0) break;
      const bytesRead = readSync(fd, buf, 0, want, offset + pos);
      if (bytesRead === 0) break;
      // The writer copies (or writes) the bytes before this resolves, so the buffer can be reused.
      await feed(buf.subarray(0, bytesRead));
      pos += bytesRead;
    }
  } finally {
    closeSync(fd);
  }
}

function writeExtent(b: Buffer, off: number, logical: number, start: number, len: number): void {
  writeU32(b, off, logical);
  writeU16(b, off + 4, len);
  writeU16(b, off + 6, Math.floor(start / 2 ** 32));
  writeU32(b, off + 8, start % 2 ** 32);
}

function encodeInode(n: Node): Buffer {
  const raw = Buffer.alloc(INODE_SIZE);
  writeU16(raw, 0x00, TYPE_BITS[n.type] | (n.mode & 0o7777));
  writeU16(raw, 0x02, n.uid & 0xffff);
  writeU32(raw, 0x04, n.size % 2 ** 32);
  const [t, extra] = timeParts(n.mtime);
  writeU32(raw, 0x08, t); // atime
  writeU32(raw, 0x0c, t); // ctime
  writeU32(raw, 0x10, t); // mtime
  writeU16(raw, 0x18, n.gid & 0xffff);
  writeU16(raw, 0x1a, n.links);
  writeU32(raw, 0x1c, (n.blocks + n.leaves.length) * (B / 512));
  if (n.type === "file" || n.type === "dir" || (n.type === "symlink" && n.blocks > 0)) {
    writeU32(raw, 0x20, EXTENTS_FL);
    const ib = raw.subarray(0x28, 0x28 + 60);
    writeU16(ib, 0, 0xf30a);
    writeU16(ib, 4, 4);
    if (n.leaves.length === 0) {
      writeU16(ib, 2, n.runs.length);
      let logical = 0;
      n.runs.forEach(([s, l], k) => {
        writeExtent(ib, 12 + k * 12, logical, s, l);
        logical += l;
      });
    } else {
      writeU16(ib, 2, n.leaves.length);
      writeU16(ib, 6, 1);
      n.leaves.forEach((leaf, k) => {
        let logical = 0;
        for (const [, l] of n.runs.slice(0, k * EXTENTS_PER_LEAF)) logical += l;
        writeU32(ib, 12 + k * 12, logical);
        writeU32(ib, 12 + k * 12 + 4, leaf);
      });
    }
  } else if (n.type === "symlink") {
    n.target!.copy(raw, 0x28);
  } else if (n.type === "char" || n.type === "block") {
    const major = n.entry!.major!;
    const minor = n.entry!.minor!;
    if (major < 256 && minor < 256) writeU32(raw, 0x28, (major << 8) | minor);
    else writeU32(raw, 0x2c, (minor & 0xff) | (major << 8) | ((minor & ~0xff) << 12));
  }
  writeU32(raw, 0x6c, Math.floor(n.size / 2 ** 32));
  writeU16(raw, 0x78, n.uid >>> 16);
  writeU16(raw, 0x7a, n.gid >>> 16);
  writeU16(raw, 0x80, EXTRA_ISIZE);
  writeU32(raw, 0x84, extra); // ctime_extra
  writeU32(raw, 0x88, extra); // mtime_extra
  writeU32(raw, 0x8c, extra); // atime_extra
  writeU32(raw, 0x90, t); // crtime
  writeU32(raw, 0x94, extra);
  return raw;
}

interface SuperblockFields {
  inodesCount: number;
  total: number;
  freeBlocks: number;
  freeInodes: number;
  ipg: number;
  time: number;
  uuid: Buffer;
  label: Buffer;
  hashSeed: Uint8Array;
  csum: boolean;
  journal?: Node;
}

function superblock(f: SuperblockFields, group: number): Buffer {
  const sb = Buffer.alloc(1024);
  const [t] = timeParts(f.time);
  writeU32(sb, 0x00, f.inodesCount);
  writeU32(sb, 0x04, f.total);
  writeU32(sb, 0x08, 0); // no blocks reserved for root: the free space is the workload's
  writeU32(sb, 0x0c, f.freeBlocks);
  writeU32(sb, 0x10, f.freeInodes);
  writeU32(sb, 0x14, 0); // first data block (4 KiB blocks)
  writeU32(sb, 0x18, 2); // log2(block size) - 10
  writeU32(sb, 0x1c, 2);
  writeU32(sb, 0x20, BLOCKS_PER_GROUP);
  writeU32(sb, 0x24, BLOCKS_PER_GROUP);
  writeU32(sb, 0x28, f.ipg);
  writeU32(sb, 0x2c, 0); // never mounted
  writeU32(sb, 0x30, t); // write time
  writeU16(sb, 0x34, 0);
  writeU16(sb, 0x36, 0xffff); // max mount count -1: no forced checks
  writeU16(sb, 0x38, 0xef53);
  writeU16(sb, 0x3a, 1); // clean
  writeU16(sb, 0x3c, 1); // errors: continue
  writeU32(sb, 0x40, t); // last check
  writeU32(sb, 0x48, 0); // Linux
  writeU32(sb, 0x4c, 1); // dynamic revision
  writeU32(sb, 0x54, FIRST_INO);
  writeU16(sb, 0x58, INODE_SIZE);
  writeU16(sb, 0x5a, group);
  writeU32(sb, 0x5c, COMPAT_EXT_ATTR | COMPAT_DIR_INDEX | (f.journal ? COMPAT_HAS_JOURNAL : 0));
  writeU32(sb, 0x60, INCOMPAT_FILETYPE | INCOMPAT_EXTENTS | INCOMPAT_FLEX_BG);
  writeU32(sb, 0x64, RO_COMPAT_SPARSE_SUPER | RO_COMPAT_LARGE_FILE | RO_COMPAT_DIR_NLINK | RO_COMPAT_EXTRA_ISIZE | (f.csum ? RO_COMPAT_METADATA_CSUM : 0));
  f.uuid.copy(sb, 0x68);
  f.label.copy(sb, 0x78);
  if (f.journal) writeU32(sb, 0xe0, JOURNAL_INO);
  Buffer.from(f.hashSeed).copy(sb, 0xec);
  sb[0xfc] = 1; // half_md4
  if (f.journal) {
    sb[0xfd] = 1; // s_jnl_blocks holds a copy of the journal inode's i_block
    const ji = encodeInode(f.journal);
    ji.copy(sb, 0x10c, 0x28, 0x28 + 60);
    writeU32(sb, 0x10c + 60, Math.floor(f.journal.size / 2 ** 32));
    writeU32(sb, 0x10c + 64, f.journal.size % 2 ** 32);
  }
  writeU32(sb, 0x100, 0x000c); // default mount options: user_xattr, acl (as mke2fs)
  writeU32(sb, 0x108, t); // mkfs time
  writeU16(sb, 0x15c, EXTRA_ISIZE);
  writeU16(sb, 0x15e, EXTRA_ISIZE);
  writeU32(sb, 0x160, 0x1); // signed directory hash
  sb[0x174] = 4; // 16 groups per flex group
  if (f.csum) {
    sb[0x175] = 1; // crc32c
    writeU32(sb, 0x3fc, crc32c(0xffffffff, sb, 0, 0x3fc));
  }
  return sb;
}

function journalSuperblock(blocks: number, uuid: Buffer): Buffer {
  const j = Buffer.alloc(B);
  j.writeUInt32BE(0xc03b3998, 0x0); // JBD2 magic
  j.writeUInt32BE(4, 0x4); // superblock v2
  j.writeUInt32BE(B, 0xc);
  j.writeUInt32BE(blocks, 0x10);
  j.writeUInt32BE(1, 0x14); // first log block
  j.writeUInt32BE(1, 0x18); // sequence
  j.writeUInt32BE(0, 0x1c); // start 0: nothing to replay
  uuid.copy(j, 0x30);
  j.writeUInt32BE(1, 0x40); // one user: this filesystem
  return j;
}
