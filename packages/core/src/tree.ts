import { posix } from "node:path";
import type { CpioEntry } from "@fledge/cpio";
import { FledgeError } from "./errors.js";

export type TreeNode =
  | { type: "dir"; mode: number; uid?: number; gid?: number }
  | { type: "file"; mode: number; data: Uint8Array; uid?: number; gid?: number }
  | { type: "file"; mode: number; hostPath: string; size?: number; uid?: number; gid?: number }
  | { type: "symlink"; target: string; uid?: number; gid?: number }
  | { type: "char" | "block"; mode: number; major: number; minor: number; uid?: number; gid?: number }
  | { type: "fifo" | "socket"; mode: number; uid?: number; gid?: number };

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

/**
 * The image being built: absolute path → node, held in memory and serialised at the end.
 * Parents are created as 0755 directories on demand; a path under a symlink or a file is refused,
 * so nothing can be written "through" a link.
 */
export class RootfsTree {
  readonly #nodes = new Map<string, TreeNode>();

  get size(): number {
    return this.#nodes.size;
  }

  get(path: string): TreeNode | undefined {
    return this.#nodes.get(imagePath(path));
  }

  has(path: string): boolean {
    return this.#nodes.has(imagePath(path));
  }

  /** Puts a node at `path`, replacing whatever was there (a directory is replaced with its contents). */
  set(path: string, node: TreeNode): this {
    const p = imagePath(path);
    if (p === "/") throw new FledgeError("FLEDGE_PATH", "cannot replace the image root");
    this.#ensureParents(p);
    const old = this.#nodes.get(p);
    if (old && (old.type !== "dir" || node.type !== "dir")) this.remove(p);
    this.#nodes.set(p, node);
    return this;
  }

  /** `mkdir -p`; an existing directory keeps its contents and takes the new mode. */
  mkdir(path: string, mode = 0o755): this {
    return this.set(path, { type: "dir", mode });
  }

  addFile(path: string, content: Uint8Array | string, mode = 0o644): this {
    return this.set(path, { type: "file", mode, data: typeof content === "string" ? Buffer.from(content) : content });
  }

  addHostFile(path: string, hostPath: string, mode: number, size?: number): this {
    return this.set(path, { type: "file", mode, hostPath, size });
  }

  symlink(path: string, target: string): this {
    return this.set(path, { type: "symlink", target });
  }

  device(path: string, type: "char" | "block", major: number, minor: number, mode: number): this {
    return this.set(path, { type, major, minor, mode });
  }

  /** Removes a path and, for a directory, everything under it. */
  remove(path: string): boolean {
    const p = imagePath(path);
    const existed = this.#nodes.delete(p);
    const prefix = p === "/" ? "/" : p + "/";
    for (const k of [...this.#nodes.keys()]) if (k.startsWith(prefix)) this.#nodes.delete(k);
    return existed;
  }

  #ensureParents(p: string): void {
    const parts = p.split("/").slice(1, -1);
    let cur = "";
    for (const part of parts) {
      cur += "/" + part;
      const n = this.#nodes.get(cur);
      if (!n) this.#nodes.set(cur, { type: "dir", mode: 0o755 });
      else if (n.type === "symlink")
        throw new FledgeError("FLEDGE_PATH", `cannot write ${p}: ${cur} is a symlink (to ${n.target}) in the image`, {
          hint: `write to the link's target directory instead of ${cur}`,
        });
      else if (n.type !== "dir") throw new FledgeError("FLEDGE_PATH", `cannot write ${p}: ${cur} is a ${n.type} in the image, not a directory`);
    }
  }

  /** All paths, sorted bytewise (parents sort before their children). */
  paths(): string[] {
    return [...this.#nodes.keys()].sort(compareBytes);
  }

  *entries(): IterableIterator<[string, TreeNode]> {
    for (const p of this.paths()) yield [p, this.#nodes.get(p)!];
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
          out.push("data" in n ? { ...base, type: "file", mode: n.mode, data: n.data } : { ...base, type: "file", mode: n.mode, file: n.hostPath, size: n.size });
          break;
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
