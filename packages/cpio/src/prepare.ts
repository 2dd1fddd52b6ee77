import { stat } from "node:fs/promises";
import { CpioError } from "./errors.js";
import { TYPE_BITS, type CpioEntry, type CpioEntryType } from "./entry.js";
import { MAX_U32, NAME_MAX_BYTES } from "./newc.js";

/** Where a regular file's bytes come from. */
export type DataSource = { kind: "none" } | { kind: "bytes"; data: Uint8Array } | { kind: "file"; path: string; offset?: number } | { kind: "stream"; open: () => AsyncIterable<Uint8Array> };

/** An entry ready to serialise: validated, sorted, inode and link count assigned. */
export interface PreparedEntry {
  path: string;
  name: Buffer;
  type: CpioEntryType;
  /** Full st_mode (type bits | permissions). */
  mode: number;
  uid: number;
  gid: number;
  mtime: number;
  ino: number;
  nlink: number;
  rdevmajor: number;
  rdevminor: number;
  /** Bytes of data written after the header. */
  size: number;
  source: DataSource;
}

export interface PrepareOptions {
  /** mtime for entries that carry none (seconds since the epoch). */
  mtime: number;
  uid?: number;
  gid?: number;
}

function compareBytes(a: Buffer, b: Buffer): number {
  return Buffer.compare(a, b);
}

function u32(value: number | undefined, what: string, path: string): number | undefined {
  if (value === undefined) return undefined;
  if (!Number.isInteger(value) || value < 0 || value > MAX_U32) throw new CpioError("ERANGE", `${what} ${value} of ${path} does not fit newc's 32-bit field`, path);
  return value;
}

/** Checks one entry on its own; throws a CpioError naming the path otherwise. */
export function validateEntry(e: CpioEntry): void {
  const p = e.path;
  if (typeof p !== "string") throw new CpioError("EPATH", `entry path must be a string, got ${JSON.stringify(p)}`);
  if (p.includes("\0")) throw new CpioError("EPATH", `path contains a NUL byte: ${JSON.stringify(p)}`, p);
  const parts = p.split("/");
  if (parts.includes("..")) throw new CpioError("EPATH", `path contains "..": ${p}`, p);
  if (p.startsWith("/")) throw new CpioError("EPATH", `archive paths are relative (no leading "/"): ${p}`, p);
  if (parts.some((c) => c === "" || c === ".")) throw new CpioError("EPATH", `path is not normalised (empty or "." component): ${JSON.stringify(p)}`, p);
  const bytes = Buffer.byteLength(p, "utf8");
  if (bytes > NAME_MAX_BYTES) throw new CpioError("ENAMETOOLONG", `path is ${bytes} bytes; the kernel reads names of at most ${NAME_MAX_BYTES} bytes: ${p.slice(0, 80)}…`, p);
  if (!(e.type in TYPE_BITS)) throw new CpioError("ETYPE", `unknown entry type ${JSON.stringify(e.type)} for ${p}`, p);
  if (!Number.isInteger(e.mode) || e.mode < 0 || e.mode > 0o7777) throw new CpioError("EMODE", `mode ${e.mode} of ${p} is not a permission value 0–07777`, p);
  if (e.mtime !== undefined && (!Number.isInteger(e.mtime) || e.mtime < 0 || e.mtime > MAX_U32)) throw new CpioError("EMTIME", `mtime ${e.mtime} of ${p} does not fit newc's 32-bit field (1970–2106)`, p);
  if (e.offset !== undefined) {
    if (e.file === undefined) throw new CpioError("EDATA", `${p} has an offset but no host file`, p);
    if (e.size === undefined) throw new CpioError("EDATA", `${p} is a range of ${e.file} (offset ${e.offset}), so its size must be given`, p);
    if (!Number.isSafeInteger(e.offset) || e.offset < 0) throw new CpioError("EDATA", `offset ${e.offset} of ${p} is not a whole number of bytes ≥ 0`, p);
  }
  u32(e.uid, "uid", p);
  u32(e.gid, "gid", p);
  u32(e.major, "major", p);
  u32(e.minor, "minor", p);
  if (e.type === "file" && e.linkTo === undefined) {
    const n = [e.data, e.file, e.stream].filter((x) => x !== undefined).length;
    if (n !== 1) throw new CpioError("EDATA", `regular file ${p} needs exactly one of data, file or stream (has ${n})`, p);
    if (e.stream && e.size === undefined) throw new CpioError("EDATA", `regular file ${p} comes from a stream, so its size must be given`, p);
  }
  if (e.linkTo !== undefined && e.type !== "file") throw new CpioError("ELINK", `only regular files can be hardlinks (${p} is a ${e.type})`, p);
  if (e.type === "symlink") {
    if (!e.target) throw new CpioError("EDATA", `symlink ${p} has no target`, p);
    if (e.target.includes("\0")) throw new CpioError("EDATA", `symlink ${p} has a NUL byte in its target`, p);
  }
  if ((e.type === "char" || e.type === "block") && (e.major === undefined || e.minor === undefined)) throw new CpioError("EDATA", `${e.type} device ${p} needs major and minor numbers`, p);
  const size = e.data?.length ?? e.size ?? 0;
  if (size > MAX_U32) throw new CpioError("E2BIG", `${p} is ${size} bytes; newc cannot store files of 4 GiB or more`, p);
}

/**
 * A stable inode number for a path: derived from the name, so adding or removing an entry does
 * not renumber the others (and recompress their segments). Numbers are unique within an archive
 * — a collision takes the next candidate of the name's sequence, in sorted order — and never 0.
 * The kernel only needs (ino, mode) unique among hardlinked files; GNU cpio and bsdtar the same.
 */
function stableIno(name: Buffer, used: Set<number>): number {
  for (let salt = 0; ; salt++) {
    // FNV-1a over the name (and the salt), finished with murmur3's avalanche step.
    let h = 0x811c9dc5 ^ salt;
    for (let i = 0; i < name.length; i++) h = Math.imul(h ^ name[i]!, 0x01000193);
    h ^= h >>> 16;
    h = Math.imul(h, 0x85ebca6b);
    h ^= h >>> 13;
    h = Math.imul(h, 0xc2b2ae35);
    h = (h ^ (h >>> 16)) >>> 0;
    if (h !== 0 && !used.has(h)) {
      used.add(h);
      return h;
    }
  }
}

function sameEntry(a: CpioEntry, b: CpioEntry): boolean {
  return a.type === "dir" && b.type === "dir" && a.mode === b.mode && a.uid === b.uid && a.gid === b.gid && a.mtime === b.mtime;
}

/**
 * Validates every entry, then sorts them bytewise by path (a parent always sorts before its
 * children), adds missing parent directories (0755), resolves hardlinks and gives each inode a
 * number derived from its (first) path. Throws before anything is written.
 */
export async function prepareEntries(input: Iterable<CpioEntry> | AsyncIterable<CpioEntry>, opts: PrepareOptions): Promise<PreparedEntry[]> {
  if (!Number.isInteger(opts.mtime) || opts.mtime < 0 || opts.mtime > MAX_U32) throw new CpioError("EMTIME", `default mtime ${opts.mtime} does not fit newc's 32-bit field (1970–2106)`);
  const byPath = new Map<string, CpioEntry>();
  for await (const e of input) {
    validateEntry(e);
    const old = byPath.get(e.path);
    if (old) {
      if (old.type !== e.type) throw new CpioError("ECONFLICT", `${e.path} is listed twice with different types (${old.type} and ${e.type})`, e.path);
      if (!sameEntry(old, e)) throw new CpioError("ECONFLICT", `${e.path} is listed twice`, e.path);
      continue;
    }
    byPath.set(e.path, e);
  }
  // Parents: must be directories; missing ones are added.
  for (const p of [...byPath.keys()]) {
    let i = p.lastIndexOf("/");
    while (i > 0) {
      const parent = p.slice(0, i);
      const pe = byPath.get(parent);
      if (pe) {
        if (pe.type !== "dir") throw new CpioError("ECONFLICT", `${p} is inside ${parent}, which is a ${pe.type}, not a directory`, p);
        break;
      }
      byPath.set(parent, { path: parent, type: "dir", mode: 0o755 });
      i = parent.lastIndexOf("/");
    }
  }
  // Hardlinks: resolve every name to the group's root (the entry that holds the data).
  const rootOf = (e: CpioEntry): CpioEntry => {
    const seen = new Set<string>();
    let cur = e;
    while (cur.linkTo !== undefined) {
      if (seen.has(cur.path)) throw new CpioError("ELINK", `hardlink cycle through ${cur.path}`, e.path);
      seen.add(cur.path);
      const next = byPath.get(cur.linkTo);
      if (!next) throw new CpioError("ELINK", `${cur.path} is a hardlink to ${cur.linkTo}, which is not in the archive`, e.path);
      if (next.type !== "file") throw new CpioError("ELINK", `${cur.path} is a hardlink to ${cur.linkTo}, which is a ${next.type}, not a regular file`, e.path);
      cur = next;
    }
    return cur;
  };
  const groups = new Map<CpioEntry, CpioEntry[]>();
  const subdirs = new Map<string, number>();
  for (const e of byPath.values()) {
    if (e.type === "file") {
      const root = rootOf(e);
      const g = groups.get(root);
      if (g) g.push(e);
      else groups.set(root, [e]);
    }
    if (e.type === "dir") {
      const i = e.path.lastIndexOf("/");
      if (i > 0) subdirs.set(e.path.slice(0, i), (subdirs.get(e.path.slice(0, i)) ?? 0) + 1);
    }
  }
  const names = new Map<string, Buffer>();
  for (const p of byPath.keys()) names.set(p, Buffer.from(p, "utf8"));
  const sorted = [...byPath.values()].sort((a, b) => compareBytes(names.get(a.path)!, names.get(b.path)!));
  // Sizes of host files, checked before any byte is written.
  const sizes = new Map<CpioEntry, number>();
  for (const root of groups.keys()) {
    if (root.data) sizes.set(root, root.data.length);
    else if (root.file !== undefined) {
      let size = root.size;
      if (size === undefined) {
        try {
          const st = await stat(root.file);
          if (!st.isFile()) throw new CpioError("EDATA", `${root.file} (for ${root.path}) is not a regular file`, root.path);
          size = st.size;
        } catch (err) {
          if (err instanceof CpioError) throw err;
          throw new CpioError("ENOENT", `cannot read ${root.file} for ${root.path}: ${(err as Error).message}`, root.path);
        }
      }
      if (size > MAX_U32) throw new CpioError("E2BIG", `${root.path} (${root.file}) is ${size} bytes; newc cannot store files of 4 GiB or more`, root.path);
      sizes.set(root, size);
    } else sizes.set(root, root.size!);
  }
  const out: PreparedEntry[] = [];
  const inoOf = new Map<CpioEntry, number>();
  const used = new Set<number>();
  for (const e of sorted) {
    // Fields spelled out, not spread from a shared object: spreading was a third of this function's time.
    const name = names.get(e.path)!;
    const uid = e.uid ?? opts.uid ?? 0;
    const gid = e.gid ?? opts.gid ?? 0;
    const mtime = e.mtime ?? opts.mtime;
    if (e.type === "file") {
      const root = rootOf(e);
      const group = groups.get(root)!;
      let n = inoOf.get(root);
      const first = n === undefined;
      if (n === undefined) {
        n = stableIno(name, used);
        inoOf.set(root, n);
      }
      const size = first ? sizes.get(root)! : 0;
      const source: DataSource = !first
        ? { kind: "none" }
        : root.data
          ? { kind: "bytes", data: root.data }
          : root.file !== undefined
            ? root.offset !== undefined
              ? { kind: "file", path: root.file, offset: root.offset }
              : { kind: "file", path: root.file }
            : { kind: "stream", open: root.stream! };
      out.push({
        path: e.path,
        name,
        type: e.type,
        // Every name of a hardlink group carries the root's metadata: the kernel links by (ino, mode).
        mode: TYPE_BITS.file | (root.mode & 0o7777),
        uid: root.uid ?? opts.uid ?? 0,
        gid: root.gid ?? opts.gid ?? 0,
        mtime: root.mtime ?? opts.mtime,
        ino: n!,
        nlink: group.length,
        rdevmajor: 0,
        rdevminor: 0,
        size,
        source,
      });
      continue;
    }
    const data = e.type === "symlink" ? Buffer.from(e.target!, "utf8") : undefined;
    out.push({
      path: e.path,
      name,
      type: e.type,
      mode: TYPE_BITS[e.type] | (e.mode & 0o7777),
      uid,
      gid,
      mtime,
      ino: stableIno(name, used),
      nlink: e.type === "dir" ? 2 + (subdirs.get(e.path) ?? 0) : 1,
      rdevmajor: e.major ?? 0,
      rdevminor: e.minor ?? 0,
      size: data?.length ?? 0,
      source: data ? { kind: "bytes", data } : { kind: "none" },
    });
  }
  return out;
}
