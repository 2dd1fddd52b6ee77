import { randomBytes } from "node:crypto";
import { createWriteStream } from "node:fs";
import { mkdir } from "node:fs/promises";
import { join, posix } from "node:path";
import type { Readable } from "node:stream";
import { pipeline } from "node:stream/promises";
import type { CpioEntry } from "@fledge/cpio";
import { FledgeError } from "./errors.js";
import { SCOPE } from "./scope.js";

/** What every node may carry besides its content. */
export interface NodeMeta {
  /** Owner; 0 (root) when unset. */
  uid?: number;
  gid?: number;
  /**
   * Where the node came from, set by the plugin that added it: `skeleton`, `busybox`, `init`,
   * `kestrel`, `mapping:<host path as written>`, `tarball:<source>`, `layer:<digest>`, or
   * `plugin:<name>` when a plugin did not say. Read by SBOMs and `fledge diff`.
   */
  origin?: string;
}

/**
 * One node of the image. A regular file's bytes come from `data`, `hostPath` or `open`; with
 * `hostPath`, `offset` (default 0) and `size` make it a byte range of the host file, read in place
 * (the file must hold at least `offset + size` bytes).
 */
export type TreeNode = NodeMeta &
  (
    | { type: "dir"; mode: number }
    | { type: "file"; mode: number; data: Uint8Array }
    | { type: "file"; mode: number; hostPath: string; size?: number; offset?: number }
    | { type: "file"; mode: number; open: () => AsyncIterable<Uint8Array>; size: number }
    | { type: "hardlink"; target: string }
    | { type: "symlink"; target: string }
    | { type: "char" | "block"; mode: number; major: number; minor: number }
    | { type: "fifo" | "socket"; mode: number }
  );

/** Permission bits and owner for a new node; a bare number is the mode. */
export type NodeOptions = number | { mode?: number; uid?: number; gid?: number; origin?: string };

/** Streams up to this size are held in memory; larger ones are spilled to the tree's scratch directory. */
export const STREAM_MEMORY_LIMIT = 1024 * 1024;

/** Normalises an absolute image path; refuses relative paths, `..`, and NUL. */
export function imagePath(p: string): string {
  if (typeof p !== "string" || !p.startsWith("/")) throw new FledgeError("FLEDGE_PATH", `image paths must be absolute: ${JSON.stringify(p)}`);
  if (p.includes("\0")) throw new FledgeError("FLEDGE_PATH", `image path contains a NUL byte: ${JSON.stringify(p)}`);
  if (p.split("/").includes("..")) throw new FledgeError("FLEDGE_PATH", `image path must not contain "..": ${p}`);
  const n = posix.normalize(p);
  // The kernel unpacks names with open/mkdir/symlink: a component over NAME_MAX (255 bytes) fails
  // there with ENAMETOOLONG, and the initramfs unpacker then skips the entry without a word.
  for (const part of n.split("/"))
    if (Buffer.byteLength(part) > 255)
      throw new FledgeError("FLEDGE_PATH", `image path component is ${Buffer.byteLength(part)} bytes long, more than the 255 the kernel allows (NAME_MAX): ${part.slice(0, 40)}… in ${n.slice(0, 80)}…`, {
        hint: "shorten that file or directory name",
      });
  return n.length > 1 ? n.replace(/\/+$/, "") : n;
}

function compareBytes(a: string, b: string): number {
  return Buffer.compare(Buffer.from(a, "utf8"), Buffer.from(b, "utf8"));
}

interface Store {
  nodes: Map<string, TreeNode>;
  scratchDir?: string;
  scratchReady?: Promise<unknown>;
}

export interface RootfsTreeOptions {
  /**
   * Where `addStream` spills large streams. The owner creates nothing: the directory is made on
   * first use, and removing it afterwards is the owner's job (a build removes its own).
   * Without one, streams are held in memory.
   */
  scratchDir?: string;
}

/**
 * The image being built: absolute path → node, held in memory and serialised at the end.
 * Parents are created as 0755 directories on demand; a path under a symlink or a file is refused,
 * so nothing can be written "through" a link. Every node records its `origin`.
 *
 * During a build, each plugin's taps receive a view of the one tree (`withOrigin`) that marks
 * what they add with `plugin:<name>` unless they say otherwise.
 */
export class RootfsTree {
  #store: Store;
  #origin: string | undefined;

  constructor(opts: RootfsTreeOptions = {}) {
    this.#store = { nodes: new Map(), scratchDir: opts.scratchDir };
    this.#origin = undefined;
  }

  /** The same tree, writing `origin` on every node it adds (unless a call gives its own). */
  withOrigin(origin: string): RootfsTree {
    const view = new RootfsTree();
    view.#store = this.#store;
    view.#origin = origin;
    return view;
  }

  /** A tap's view: what a plugin adds is marked `plugin:<name>` unless it says otherwise. */
  [SCOPE](plugin: string): RootfsTree {
    return this.#origin === undefined ? this.withOrigin(`plugin:${plugin}`) : this;
  }

  /** The origin this view writes by default. */
  get origin(): string | undefined {
    return this.#origin;
  }

  get size(): number {
    return this.#store.nodes.size;
  }

  get(path: string): TreeNode | undefined {
    return this.#store.nodes.get(imagePath(path));
  }

  has(path: string): boolean {
    return this.#store.nodes.has(imagePath(path));
  }

  /** Puts a node at `path`, replacing whatever was there (a directory is replaced with its contents). */
  set(path: string, node: TreeNode): this {
    const p = imagePath(path);
    if (p === "/") throw new FledgeError("FLEDGE_PATH", "cannot replace the image root");
    const n = node.origin === undefined && this.#origin !== undefined ? { ...node, origin: this.#origin } : node;
    this.#ensureParents(p, n.origin);
    const old = this.#store.nodes.get(p);
    if (old && (old.type !== "dir" || n.type !== "dir")) this.remove(p);
    this.#store.nodes.set(p, n);
    return this;
  }

  /** `mkdir -p`; an existing directory keeps its contents and takes the new mode. */
  mkdir(path: string, opts: NodeOptions = 0o755): this {
    return this.set(path, { type: "dir", ...meta(opts, 0o755) });
  }

  /** A regular file from bytes or a string (UTF-8). Default mode 0644. */
  addFile(path: string, content: Uint8Array | string, opts: NodeOptions = 0o644): this {
    return this.set(path, { type: "file", ...meta(opts, 0o644), data: typeof content === "string" ? Buffer.from(content) : content });
  }

  /** A regular file whose bytes are read from a host file when the image is written. */
  addHostFile(path: string, hostPath: string, opts: NodeOptions = 0o644, size?: number): this {
    return this.set(path, { type: "file", ...meta(opts, 0o644), hostPath, ...(size !== undefined ? { size } : {}) });
  }

  /**
   * A regular file from a stream, read now: held in memory up to 1 MiB, else spilled to the
   * tree's scratch directory. With `size`, the stream must deliver exactly that many bytes.
   */
  async addStream(path: string, stream: Readable | AsyncIterable<Uint8Array>, opts: NodeOptions & { size?: number } = 0o644): Promise<this> {
    const p = imagePath(path);
    const { size: expected, ...node } = typeof opts === "object" ? opts : { mode: opts, size: undefined };
    const chunks: Uint8Array[] = [];
    let total = 0;
    const iter = (stream as AsyncIterable<Uint8Array>)[Symbol.asyncIterator]();
    let spilled: string | undefined;
    try {
      for (;;) {
        const { value, done } = await iter.next();
        if (done) break;
        const chunk = typeof value === "string" ? Buffer.from(value) : value;
        chunks.push(chunk);
        total += chunk.length;
        if (this.#store.scratchDir && total > STREAM_MEMORY_LIMIT) {
          spilled = await this.#spill(chunks, iter, (n) => (total += n));
          break;
        }
      }
    } catch (err) {
      await iter.return?.();
      throw err;
    }
    if (expected !== undefined && total !== expected) throw new FledgeError("FLEDGE_TRUNCATED", `${p}: the stream gave ${total} bytes, expected ${expected}`);
    if (spilled) return this.addHostFile(p, spilled, node, total);
    return this.addFile(p, Buffer.concat(chunks), node);
  }

  async #spill(head: Uint8Array[], rest: AsyncIterator<Uint8Array>, count: (n: number) => void): Promise<string> {
    const dir = this.#store.scratchDir!;
    this.#store.scratchReady ??= mkdir(dir, { recursive: true, mode: 0o700 });
    await this.#store.scratchReady;
    const file = join(dir, randomBytes(8).toString("hex"));
    async function* all() {
      for (const c of head) yield c;
      for (;;) {
        const { value, done } = await rest.next();
        if (done) return;
        const chunk = typeof value === "string" ? Buffer.from(value) : value;
        count(chunk.length);
        yield chunk;
      }
    }
    await pipeline(all(), createWriteStream(file, { mode: 0o600 }));
    return file;
  }

  /** A symbolic link; `target` is stored as written (relative or absolute inside the image). */
  symlink(path: string, target: string, opts: Exclude<NodeOptions, number> = {}): this {
    return this.set(path, { type: "symlink", target, ...opts });
  }

  /** A hard link to the regular file at `target` (already in the tree): one inode, two names. */
  hardlink(path: string, target: string, opts: Exclude<NodeOptions, number> = {}): this {
    const t = imagePath(target);
    const node = this.#store.nodes.get(t);
    if (!node) throw new FledgeError("FLEDGE_PATH", `cannot link ${path} to ${t}: there is nothing at ${t} in the image`);
    if (node.type === "hardlink") return this.hardlink(path, node.target, opts);
    if (node.type !== "file") throw new FledgeError("FLEDGE_PATH", `cannot link ${path} to ${t}: ${t} is a ${node.type}, hard links are for regular files`);
    if (imagePath(path) === t) return this;
    return this.set(path, { type: "hardlink", target: t, ...opts });
  }

  /** A character or block device node (written into the archive header: no mknod, no root). */
  device(path: string, type: "char" | "block", major: number, minor: number, opts: NodeOptions = 0o600): this {
    return this.set(path, { type, major, minor, ...meta(opts, 0o600) });
  }

  /** A named pipe. */
  fifo(path: string, opts: NodeOptions = 0o644): this {
    return this.set(path, { type: "fifo", ...meta(opts, 0o644) });
  }

  /** Removes a path and, for a directory, everything under it. */
  remove(path: string): boolean {
    const p = imagePath(path);
    const nodes = this.#store.nodes;
    const existed = nodes.delete(p);
    const prefix = p === "/" ? "/" : p + "/";
    for (const k of [...nodes.keys()]) if (k.startsWith(prefix)) nodes.delete(k);
    return existed;
  }

  #ensureParents(p: string, origin: string | undefined): void {
    const parts = p.split("/").slice(1, -1);
    let cur = "";
    for (const part of parts) {
      cur += "/" + part;
      const n = this.#store.nodes.get(cur);
      if (!n) this.#store.nodes.set(cur, { type: "dir", mode: 0o755, ...(origin !== undefined ? { origin } : {}) });
      else if (n.type === "symlink")
        throw new FledgeError("FLEDGE_PATH", `cannot write ${p}: ${cur} is a symlink (to ${n.target}) in the image`, {
          hint: `write to the link's target directory instead of ${cur}`,
        });
      else if (n.type !== "dir") throw new FledgeError("FLEDGE_PATH", `cannot write ${p}: ${cur} is a ${n.type} in the image, not a directory`);
    }
  }

  /** All paths, sorted bytewise (parents sort before their children). */
  paths(): string[] {
    return [...this.#store.nodes.keys()].sort(compareBytes);
  }

  /** Every `[path, node]`, sorted bytewise. */
  *entries(): IterableIterator<[string, TreeNode]> {
    for (const p of this.paths()) yield [p, this.#store.nodes.get(p)!];
  }

  /** `[path, node]` for `dir` itself (when present) and everything under it, sorted bytewise. */
  *walk(dir = "/"): IterableIterator<[string, TreeNode]> {
    const d = imagePath(dir);
    const prefix = d === "/" ? "/" : d + "/";
    for (const p of this.paths()) if (p === d || p.startsWith(prefix)) yield [p, this.#store.nodes.get(p)!];
  }

  /** The tree as cpio entries, sorted, paths relative to the root. */
  toCpioEntries(): CpioEntry[] {
    const out: CpioEntry[] = [];
    for (const [p, n] of this.entries()) {
      const base = { path: p.slice(1), uid: n.uid, gid: n.gid };
      switch (n.type) {
        case "dir":
        case "fifo":
        case "socket":
          out.push({ ...base, type: n.type, mode: n.mode });
          break;
        case "file":
          if ("data" in n) out.push({ ...base, type: "file", mode: n.mode, data: n.data });
          else if ("hostPath" in n) out.push({ ...base, type: "file", mode: n.mode, file: n.hostPath, size: n.size, ...(n.offset !== undefined ? { offset: n.offset } : {}) });
          else out.push({ ...base, type: "file", mode: n.mode, stream: n.open, size: n.size });
          break;
        case "hardlink": {
          const t = this.#store.nodes.get(n.target);
          if (t?.type !== "file")
            throw new FledgeError("FLEDGE_PATH", `${p} is a hard link to ${n.target}, which ${t ? `is now a ${t.type}` : "is no longer in the image"}`, {
              hint: "a plugin removed or replaced the link's target after the link was made",
            });
          out.push({ ...base, uid: t.uid, gid: t.gid, type: "file", mode: t.mode, linkTo: n.target.slice(1) });
          break;
        }
        case "symlink":
          out.push({ ...base, type: "symlink", mode: 0o777, target: n.target });
          break;
        case "char":
        case "block":
          out.push({ ...base, type: n.type, mode: n.mode, major: n.major, minor: n.minor });
          break;
      }
    }
    return out;
  }
}

function meta(opts: NodeOptions, mode: number): { mode: number; uid?: number; gid?: number; origin?: string } {
  if (typeof opts === "number") return { mode: opts };
  const { mode: m, ...rest } = opts;
  return { mode: m ?? mode, ...rest };
}
