import { OciError } from "./errors.js";
import type { TarEntry } from "./tar.js";

/** Where a regular file's bytes are: a range of one layer's uncompressed tar. */
export interface FileData {
  /** Index of the layer (0 = the base layer). */
  layer: number;
  offset: number;
  size: number;
}

/** A regular file's inode: shared by every name of a hardlink group. */
export interface Inode {
  mode: number;
  uid: number;
  gid: number;
  data: FileData;
}

interface Common {
  uid: number;
  gid: number;
  /** The layer the node came from. */
  layer: number;
}
export interface DirNode extends Common {
  type: "dir";
  mode: number;
  children: Map<string, FsNode>;
}
export interface FileNode {
  type: "file";
  inode: Inode;
  layer: number;
}
export interface SymlinkNode extends Common {
  type: "symlink";
  target: string;
}
export interface DeviceNode extends Common {
  type: "char" | "block";
  mode: number;
  major: number;
  minor: number;
}
export interface FifoNode extends Common {
  type: "fifo";
  mode: number;
}
export type FsNode = DirNode | FileNode | SymlinkNode | DeviceNode | FifoNode;

/** One layer to apply: its entries in stream order and a name for messages. */
export interface LayerEntries {
  /** e.g. the layer's digest. */
  name: string;
  entries: TarEntry[];
}

export interface FlattenLimits {
  /** Most members across all layers (default 2,000,000). */
  maxEntries?: number;
}

/** What flattening noticed, for one warning each. */
export interface FlattenReport {
  /** Image paths whose extended attributes (file capabilities, SELinux labels, …) were dropped. */
  xattrs: string[];
  /** Members applied, whiteouts included. */
  entries: number;
  whiteouts: number;
}

const WH = ".wh.";
const OPAQUE = ".wh..wh..opq";
const NEWC_MAX = 0xffffffff;

function escapeError(layer: string, name: string, why: string): OciError {
  return new OciError("FLEDGE_OCI_ESCAPE", `layer ${layer}: entry ${JSON.stringify(name)} ${why}; fledge refuses to unpack it`, {
    hint: "the image is malformed or hostile: nothing was written. Rebuild the image with a normal tool (docker, buildah, umoci), or use another image",
  });
}

/**
 * A member's name as image path components. `./` prefixes, `.` components, repeated and trailing
 * slashes are dropped; an absolute name or a `..` component is an escape attempt and refused.
 */
export function nameComponents(name: string, layer: string): string[] {
  if (name.includes("\0")) throw escapeError(layer, name, "contains a NUL byte");
  if (name.startsWith("/")) throw escapeError(layer, name, "is an absolute path (it would be written outside the image root)");
  const parts: string[] = [];
  for (const c of name.split("/")) {
    if (c === "" || c === ".") continue;
    if (c === "..") throw escapeError(layer, name, 'has a ".." component (it could climb out of the image root)');
    parts.push(c);
  }
  return parts;
}

/**
 * The merged filesystem of an image's layers, applied in order with the OCI image spec's
 * changeset rules: within a layer, whiteouts (`.wh.<name>`, `.wh..wh..opq`) apply to the lower
 * layers only, whatever their position in the stream; other members add or replace entries.
 * Symlinks are data, never followed: a member below a symlink is refused, as is any name that
 * would leave the root. Nothing is read here: files are ranges of their layer's tar.
 */
export class ImageFs {
  readonly root: DirNode = { type: "dir", mode: 0o755, uid: 0, gid: 0, layer: -1, children: new Map() };
  readonly report: FlattenReport = { xattrs: [], entries: 0, whiteouts: 0 };
  readonly #maxEntries: number;

  constructor(limits: FlattenLimits = {}) {
    this.#maxEntries = limits.maxEntries ?? 2_000_000;
  }

  /** Applies one layer on top of what is there. */
  apply(index: number, layer: LayerEntries): void {
    const { name: lname, entries } = layer;
    this.report.entries += entries.length;
    if (this.report.entries > this.#maxEntries)
      throw new OciError("FLEDGE_OCI_TOO_BIG", `the image has more than ${this.#maxEntries} members (at layer ${lname})`, {
        hint: "this looks like a decompression bomb; if the image is genuine, raise max_entries (in its [[overlay]] table, or in the options of @fledge/plugin-oci)",
      });
    // 1. whiteouts, against the lower layers only
    const rest: { e: TarEntry; parts: string[] }[] = [];
    for (const e of entries) {
      const parts = nameComponents(e.name, lname);
      if (parts.length === 0) continue; // the root itself ("./"): the image root is fledge's
      const base = parts[parts.length - 1]!;
      if (base.startsWith(WH)) {
        this.report.whiteouts++;
        const dir = this.#lookupDir(parts.slice(0, -1));
        if (base === OPAQUE) dir?.children.clear();
        else if (base.startsWith(WH + WH))
          continue; // aufs bookkeeping (.wh..wh.plnk, …): meaningless here
        else dir?.children.delete(base.slice(WH.length));
        continue;
      }
      rest.push({ e, parts });
    }
    // 2. everything else, in stream order
    for (const { e, parts } of rest) this.#add(index, lname, e, parts);
  }

  /** The directory at `parts` when every component is a directory (no symlink followed), else undefined. */
  #lookupDir(parts: string[]): DirNode | undefined {
    let cur: DirNode = this.root;
    for (const p of parts) {
      const n = cur.children.get(p);
      if (n?.type !== "dir") return undefined;
      cur = n;
    }
    return cur;
  }

  /** The parent directory of a new member, creating missing directories; refuses to pass a symlink or a file. */
  #parent(parts: string[], layer: number, lname: string, name: string): DirNode {
    let cur: DirNode = this.root;
    for (let i = 0; i < parts.length - 1; i++) {
      const p = parts[i]!;
      const n = cur.children.get(p);
      if (!n) {
        const d: DirNode = { type: "dir", mode: 0o755, uid: 0, gid: 0, layer, children: new Map() };
        cur.children.set(p, d);
        cur = d;
      } else if (n.type === "dir") cur = n;
      else if (n.type === "symlink") throw escapeError(lname, name, `would be written through the symlink /${parts.slice(0, i + 1).join("/")} -> ${n.target}`);
      else
        throw new OciError("FLEDGE_OCI_FORMAT", `layer ${lname}: entry ${JSON.stringify(name)} is inside /${parts.slice(0, i + 1).join("/")}, which is a ${n.type === "file" ? "regular file" : n.type}, not a directory`, {
          hint: "the image's layers do not fit together; rebuild the image",
        });
    }
    return cur;
  }

  /** The node at `parts` without following symlinks (undefined when missing or below a non-directory). */
  lookup(parts: string[]): FsNode | undefined {
    let cur: FsNode = this.root;
    for (const p of parts) {
      if (cur.type !== "dir") return undefined;
      const n: FsNode | undefined = cur.children.get(p);
      if (!n) return undefined;
      cur = n;
    }
    return cur;
  }

  #add(layer: number, lname: string, e: TarEntry, parts: string[]): void {
    const parent = this.#parent(parts, layer, lname, e.name);
    const base = parts[parts.length - 1]!;
    const old = parent.children.get(base);
    const path = "/" + parts.join("/");
    if (e.xattrs?.length) this.report.xattrs.push(path);
    let node: FsNode;
    switch (e.type) {
      case "dir":
        if (old?.type === "dir") {
          // A directory over a directory keeps its contents and takes the new metadata.
          old.mode = e.mode;
          old.uid = e.uid;
          old.gid = e.gid;
          old.layer = layer;
          return;
        }
        node = { type: "dir", mode: e.mode, uid: e.uid, gid: e.gid, layer, children: new Map() };
        break;
      case "file":
        if (e.size > NEWC_MAX) throw new OciError("FLEDGE_OCI_UNSUPPORTED", `layer ${lname}: ${path} is ${e.size} bytes; an initramfs (newc) cannot hold files of 4 GiB or more`);
        node = { type: "file", layer, inode: { mode: e.mode, uid: e.uid, gid: e.gid, data: { layer, offset: e.offset, size: e.size } } };
        break;
      case "symlink":
        if (!e.linkname) throw new OciError("FLEDGE_OCI_FORMAT", `layer ${lname}: symlink ${path} has no target`);
        node = { type: "symlink", target: e.linkname, uid: e.uid, gid: e.gid, layer };
        break;
      case "link": {
        const tparts = nameComponents(e.linkname, lname);
        if (tparts.length === 0) throw escapeError(lname, e.name, "is a hardlink to the image root");
        if (tparts.join("/") === parts.join("/")) return; // a link to itself changes nothing
        // The target's directories must be real directories too: a hardlink through a symlink is refused.
        let cur: FsNode | undefined = this.root;
        for (let i = 0; i < tparts.length - 1 && cur?.type === "dir"; i++) {
          cur = cur.children.get(tparts[i]!);
          if (cur?.type === "symlink") throw escapeError(lname, e.name, `is a hardlink through the symlink /${tparts.slice(0, i + 1).join("/")} -> ${cur.target}`);
        }
        const target = this.lookup(tparts);
        if (!target)
          throw new OciError("FLEDGE_OCI_FORMAT", `layer ${lname}: ${path} is a hardlink to /${tparts.join("/")}, which is not in the image`, {
            hint: "the layer is corrupt or was built against other lower layers",
          });
        if (target.type === "dir") throw new OciError("FLEDGE_OCI_FORMAT", `layer ${lname}: ${path} is a hardlink to the directory /${tparts.join("/")}`);
        // A regular file shares the inode; a hardlinked symlink, device or fifo is copied (newc links regular files only).
        node = target.type === "file" ? { type: "file", layer, inode: target.inode } : { ...target, layer };
        break;
      }
      case "char":
      case "block":
        node = { type: e.type, mode: e.mode, major: e.devmajor, minor: e.devminor, uid: e.uid, gid: e.gid, layer };
        break;
      case "fifo":
        node = { type: "fifo", mode: e.mode, uid: e.uid, gid: e.gid, layer };
        break;
    }
    // Replacing drops the old node (and, for a directory, everything under it).
    parent.children.set(base, node);
  }

  /** Every node but the root, parents before children, names sorted bytewise within a directory. */
  *walk(): Generator<[string, FsNode]> {
    const stack: [string, DirNode][] = [["", this.root]];
    while (stack.length) {
      const [prefix, dir] = stack.pop()!;
      const names = [...dir.children.keys()].sort((a, b) => Buffer.compare(Buffer.from(a), Buffer.from(b)));
      const subdirs: [string, DirNode][] = [];
      for (const n of names) {
        const node = dir.children.get(n)!;
        const path = `${prefix}/${n}`;
        yield [path, node];
        if (node.type === "dir") subdirs.push([path, node]);
      }
      for (let i = subdirs.length - 1; i >= 0; i--) stack.push(subdirs[i]!);
    }
  }

  /** Inodes with more than one surviving name, numbered in walk order (for hardlink groups). */
  linkGroups(): Map<Inode, number> {
    const count = new Map<Inode, number>();
    for (const [, n] of this.walk()) if (n.type === "file") count.set(n.inode, (count.get(n.inode) ?? 0) + 1);
    const out = new Map<Inode, number>();
    let id = 0;
    for (const [, n] of this.walk()) if (n.type === "file" && count.get(n.inode)! > 1 && !out.has(n.inode)) out.set(n.inode, id++);
    return out;
  }
}
