import type { FileHandle } from "node:fs/promises";
import { OciError } from "./errors.js";
import type { FsNode, ImageFs } from "./flatten.js";
import type { OpenLayer } from "./layers.js";

/** A node as fledge's tree takes it (`RootfsTree#set`), with the layer it came from as origin. */
export type OverlayNode = { uid?: number; gid?: number; origin?: string } & (
  | { type: "dir"; mode: number }
  | { type: "file"; mode: number; open: () => AsyncIterable<Uint8Array>; size: number }
  | { type: "file"; mode: number; hostPath: string; offset: number; size: number }
  | { type: "hardlink"; target: string }
  | { type: "symlink"; target: string }
  | { type: "char" | "block"; mode: number; major: number; minor: number }
  | { type: "fifo"; mode: number }
);

/**
 * Reads `size` bytes at `offset` of a verified layer, through the handle that was verified. Once
 * the image is closed (after the build), a read opens the cached layer again and verifies all of
 * it first: the bytes served are always the ones the diffID names.
 */
export function rangeReader(layer: OpenLayer, offset: number, size: number): () => AsyncIterable<Uint8Array> {
  return async function* () {
    if (size === 0) return;
    let handle: FileHandle = layer.handle;
    let own = false;
    if (layer.closed) {
      if (!layer.reopen) throw new OciError("FLEDGE_OCI_CLOSED", `layer ${layer.diffID} was closed after the build`);
      handle = await layer.reopen();
      own = true;
    }
    try {
      const chunk = 1 << 20;
      let pos = 0;
      while (pos < size) {
        const buf = Buffer.allocUnsafe(Math.min(chunk, size - pos));
        const { bytesRead } = await handle.read(buf, 0, buf.length, offset + pos);
        if (bytesRead === 0) throw new OciError("FLEDGE_OCI_TRUNCATED", `layer ${layer.diffID} ended early at byte ${offset + pos}`);
        pos += bytesRead;
        yield bytesRead === buf.length ? buf : buf.subarray(0, bytesRead);
      }
    } finally {
      if (own) await handle.close();
    }
  };
}

export interface OverlayOptions {
  /**
   * Regular files as `{ hostPath, offset, size }` byte ranges of the layer tar, read through the
   * verified handle (`/proc/self/fd/<n>`), so the archive writer reads them like host files (in
   * parallel, large ones streamed): valid only while the image is open. Default: `open()`
   * readers, which stay valid after `close()` (they reopen and verify the layer).
   */
  ranges?: boolean;
}

/**
 * The image's nodes for the tree, parents first, hardlinks after the file they name: a regular
 * file is a range of its layer's verified tar (read when the image is written, never held in
 * memory); every node carries `layer:<digest>` as its origin.
 */
export function* overlayNodes(fs: ImageFs, layers: OpenLayer[], origins: string[], opts: OverlayOptions = {}): Generator<[string, OverlayNode]> {
  const groups = fs.linkGroups();
  const primary = new Map<number, string>();
  const links: [string, OverlayNode][] = [];
  const meta = (n: { uid: number; gid: number; layer: number }) => ({ uid: n.uid, gid: n.gid, origin: origins[n.layer] });
  for (const [path, n] of fs.walk() as Generator<[string, FsNode]>) {
    switch (n.type) {
      case "dir":
        yield [path, { type: "dir", mode: n.mode, ...meta(n) }];
        break;
      case "file": {
        const g = groups.get(n.inode);
        if (g !== undefined) {
          const first = primary.get(g);
          if (first !== undefined) {
            links.push([path, { type: "hardlink", target: first, origin: origins[n.layer] }]);
            break;
          }
          primary.set(g, path);
        }
        const { data, mode, uid, gid } = n.inode;
        const layer = layers[data.layer]!;
        yield [
          path,
          opts.ranges
            ? { type: "file", mode, uid, gid, origin: origins[data.layer], hostPath: layer.readPath, offset: data.offset, size: data.size }
            : { type: "file", mode, uid, gid, origin: origins[data.layer], size: data.size, open: rangeReader(layer, data.offset, data.size) },
        ];
        break;
      }
      case "symlink":
        yield [path, { type: "symlink", target: n.target, ...meta(n) }];
        break;
      case "char":
      case "block":
        yield [path, { type: n.type, mode: n.mode, major: n.major, minor: n.minor, ...meta(n) }];
        break;
      case "fifo":
        yield [path, { type: "fifo", mode: n.mode, ...meta(n) }];
        break;
    }
  }
  yield* links;
}

/**
 * Turns a range node, in place, into its `open()` form (for reads after the image is closed:
 * the path of a closed handle must never be read, the number may name another file by then).
 */
export function toReopenable(node: Extract<OverlayNode, { hostPath: string }>, layer: OpenLayer): void {
  const n = node as Partial<Extract<OverlayNode, { hostPath: string }>> & { open?: () => AsyncIterable<Uint8Array> };
  n.open = rangeReader(layer, node.offset, node.size);
  delete n.hostPath;
  delete n.offset;
}
