import { createHash } from "node:crypto";
import { constants } from "node:fs";
import { open, readFile, type FileHandle } from "node:fs/promises";
import { scanArchive } from "@fledge/cpio";
import { ExitError } from "./io.js";

/** One entry of an artifact, as diff and sizes see it. */
export interface SizedEntry {
  /** Absolute image path ("/bin/busybox"). */
  path: string;
  type: string;
  mode: number;
  uid: number;
  gid: number;
  /** File data bytes (a symlink: its target's length). */
  size: number;
  /** File content hash; symlink target; device numbers: what "changed" compares. */
  digest: string;
}

export interface ArtifactView {
  path: string;
  size: number;
  sha256: string;
  entries: SizedEntry[];
  /** path → origin, from `<artifact>.origins.json` (or the SPDX SBOM) when there is a current one. */
  origins?: Map<string, string>;
  /** Where the origins came from, or why there are none. */
  originsNote: string;
}

/**
 * Reads an artifact (streamed: memory does not grow with its size; only regular files, never a
 * FIFO or device) and the origins record beside it.
 */
export async function readArtifact(path: string, maxOutput?: number): Promise<ArtifactView> {
  let fh: FileHandle;
  try {
    fh = await open(path, constants.O_RDONLY | constants.O_NONBLOCK | constants.O_NOCTTY);
  } catch (err) {
    throw new ExitError(1, `cannot read ${path}: ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}`);
  }
  const byPath = new Map<string, SizedEntry>();
  let size = 0;
  const hash = createHash("sha256");
  try {
    const st = await fh.stat();
    if (!st.isFile()) throw new ExitError(1, `${path} is not a regular file`);
    size = st.size;
    try {
      await scanArchive(fh, {
        hash: true,
        ...(maxOutput ? { maxOutput } : {}),
        onEntry: (e) => {
          const p = "/" + e.path.replace(/^\.?\/+/, "").replace(/\/+$/, "");
          if (p === "/") return;
          const sz = e.type === "file" ? e.size : e.type === "symlink" ? Buffer.byteLength(e.target ?? "") : 0;
          const digest = e.type === "file" ? (e.linkTo ? `link:${e.linkTo}` : (e.sha256 ?? "")) : e.type === "symlink" ? `-> ${e.target}` : e.type === "char" || e.type === "block" ? `${e.rdevmajor},${e.rdevminor}` : "";
          // a later entry at the same path replaces an earlier one, as the kernel unpacks them
          byPath.set(p, { path: p, type: e.type, mode: e.mode & 0o7777, uid: e.uid, gid: e.gid, size: sz, digest });
        },
      });
    } catch (err) {
      if ((err as Error).name === "ExitError") throw err;
      throw new ExitError(1, `${path}: ${(err as Error).message}`);
    }
    const buf = Buffer.allocUnsafe(1 << 20);
    for (let pos = 0; pos < size; ) {
      const { bytesRead } = await fh.read(buf, 0, buf.length, pos);
      if (!bytesRead) break;
      hash.update(buf.subarray(0, bytesRead));
      pos += bytesRead;
    }
  } finally {
    await fh.close();
  }
  const sha256 = hash.digest("hex");
  const entries = [...byPath.values()].sort((a, b) => Buffer.compare(Buffer.from(a.path), Buffer.from(b.path)));
  const { origins, note } = await readOrigins(path, sha256);
  return { path, size, sha256, entries, origins, originsNote: note };
}

async function readOrigins(artifact: string, sha256: string): Promise<{ origins?: Map<string, string>; note: string }> {
  const recordPath = `${artifact}.origins.json`;
  let text: string | undefined;
  try {
    text = await readFile(recordPath, "utf8");
  } catch {
    /* none */
  }
  if (text !== undefined) {
    let rec: { version?: number; artifact?: { sha256?: string }; entries?: { path: string; origin: string }[] };
    try {
      rec = JSON.parse(text);
    } catch {
      return { note: `${recordPath} is not JSON: origins unknown` };
    }
    if (rec.artifact?.sha256 !== sha256) return { note: `${recordPath} is for another build (its sha256 differs): origins unknown` };
    return { origins: new Map((rec.entries ?? []).map((e) => [e.path, e.origin])), note: recordPath };
  }
  // The SPDX SBOM (@fledge/plugin-sbom) names each file's origin in its annotations/comment, when it does.
  const sbomPath = artifact.replace(/(\.cpio)?(\.(gz|zst|xz|lz4))?$/, "") + ".spdx.json";
  try {
    const sbom = JSON.parse(await readFile(sbomPath, "utf8")) as { files?: { fileName?: string; comment?: string }[] };
    const m = new Map<string, string>();
    for (const f of sbom.files ?? []) {
      const origin = /origin: (\S+)/.exec(f.comment ?? "")?.[1];
      if (f.fileName && origin) m.set("/" + f.fileName.replace(/^\.?\/+/, ""), origin);
    }
    if (m.size) return { origins: m, note: sbomPath };
  } catch {
    /* none */
  }
  return { note: `no ${recordPath} beside it: origins unknown (build with fledge to write one)` };
}

export const originOf = (v: ArtifactView, path: string) => v.origins?.get(path) ?? "unknown";

export interface DiffEntry {
  path: string;
  change: "added" | "removed" | "changed";
  origin: string;
  /** Size in a (removed, changed) and in b (added, changed). */
  before?: number;
  after?: number;
  /** What changed: content, size, mode, type, owner, target. */
  what?: string[];
}

export interface OriginTotal {
  origin: string;
  added: number;
  removed: number;
  changed: number;
  /** Bytes of that origin in a and in b. */
  before: number;
  after: number;
}

export interface DiffResult {
  entries: DiffEntry[];
  origins: OriginTotal[];
}

/** Entries added, removed and changed from a to b, with totals per origin (of both whole images). */
export function diffArtifacts(a: ArtifactView, b: ArtifactView): DiffResult {
  const am = new Map(a.entries.map((e) => [e.path, e]));
  const bm = new Map(b.entries.map((e) => [e.path, e]));
  const entries: DiffEntry[] = [];
  for (const e of a.entries) if (!bm.has(e.path)) entries.push({ path: e.path, change: "removed", origin: originOf(a, e.path), before: e.size });
  for (const e of b.entries) {
    const old = am.get(e.path);
    if (!old) {
      entries.push({ path: e.path, change: "added", origin: originOf(b, e.path), after: e.size });
      continue;
    }
    const what: string[] = [];
    if (old.type !== e.type) what.push("type");
    if (old.digest !== e.digest) what.push(e.type === "symlink" ? "target" : "content");
    if (old.size !== e.size) what.push("size");
    if (old.mode !== e.mode) what.push("mode");
    if (old.uid !== e.uid || old.gid !== e.gid) what.push("owner");
    const originChanged = originOf(a, e.path) !== originOf(b, e.path) && a.origins && b.origins;
    if (originChanged) what.push("origin");
    if (what.length) entries.push({ path: e.path, change: "changed", origin: originOf(b, e.path), before: old.size, after: e.size, what });
  }
  entries.sort((x, y) => Buffer.compare(Buffer.from(x.path), Buffer.from(y.path)));
  const totals = new Map<string, OriginTotal>();
  const t = (o: string) => {
    let x = totals.get(o);
    if (!x) {
      x = { origin: o, added: 0, removed: 0, changed: 0, before: 0, after: 0 };
      totals.set(o, x);
    }
    return x;
  };
  for (const e of a.entries) t(originOf(a, e.path)).before += e.size;
  for (const e of b.entries) t(originOf(b, e.path)).after += e.size;
  for (const e of entries) t(e.origin)[e.change]++;
  const origins = [...totals.values()].sort((x, y) => Math.abs(y.after - y.before) - Math.abs(x.after - x.before) || (x.origin < y.origin ? -1 : 1));
  return { entries, origins };
}

export interface DuNode {
  path: string;
  /** Bytes of this entry and everything under it. */
  size: number;
  /** Entries under it, itself included. */
  entries: number;
  type: string;
}

/** `du -ab` for an image: every entry with its cumulative size, in path order. */
export function duTree(entries: SizedEntry[]): DuNode[] {
  const nodes = new Map<string, DuNode>();
  nodes.set("/", { path: "/", size: 0, entries: 0, type: "dir" });
  for (const e of entries) nodes.set(e.path, { path: e.path, size: 0, entries: 0, type: e.type });
  for (const e of entries) {
    let p = e.path;
    for (;;) {
      const n = nodes.get(p);
      if (n) {
        n.size += e.size;
        n.entries++;
      }
      if (p === "/") break;
      p = p.slice(0, p.lastIndexOf("/")) || "/";
    }
  }
  return [...nodes.values()].sort((a, b) => Buffer.compare(Buffer.from(a.path), Buffer.from(b.path)));
}

/** 1234567 → "1.2 MiB". */
export function human(n: number): string {
  const a = Math.abs(n);
  const s = a < 1024 ? `${a} B` : a < 1048576 ? `${(a / 1024).toFixed(1)} KiB` : `${(a / 1048576).toFixed(1)} MiB`;
  return n < 0 ? `-${s}` : s;
}

export const signed = (n: number) => (n > 0 ? `+${human(n)}` : n < 0 ? human(n) : "±0");
