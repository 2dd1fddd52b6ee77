import { randomBytes } from "node:crypto";
import { stat, writeFile, rename, rm } from "node:fs/promises";
import { basename, dirname, join } from "node:path";
import { AfterBuildStage, STAGE_HOOKS, type Builder, type BuildContext, type RootfsTree, type TreeNode } from "@fledge/core";

export const PLUGIN_NAME = "@fledge/plugin-origins";
export const ORIGINS_VERSION = 1;

/** Where one entry of the image came from, and what it weighs. */
export interface OriginEntry {
  path: string;
  type: TreeNode["type"];
  /** `skeleton`, `busybox`, `init`, `kestrel`, `mapping:<host path as written>`, `layer:<…>` (overlays), `plugin` (beforeArchive). */
  origin: string;
  /** Bytes of file data (0 for everything else; a symlink counts its target's length). */
  size: number;
}

/** `<artifact>.origins.json`. */
export interface OriginsRecord {
  version: number;
  /** The artifact's file name and sha256, so a stale record is noticed. */
  artifact: { name: string; sha256: string; size: number };
  entries: OriginEntry[];
  /** Bytes and entries per origin, largest first. */
  totals: { origin: string; entries: number; size: number }[];
}

/** The record's path for an artifact. */
export const originsPath = (artifact: string) => `${artifact}.origins.json`;

const STAGE_ORIGIN: Record<string, string> = { skeleton: "skeleton", overlay: "layer", busybox: "busybox", init: "init", agent: "kestrel", mappings: "mapping", beforeArchive: "plugin" };

/**
 * Records which stage (and which mapping) put each entry in the image: after every initramfs
 * stage it notes the paths that are new or replaced. Writes `<artifact>.origins.json` beside the
 * artifact once it is in place.
 */
export class OriginsPlugin {
  readonly name = PLUGIN_NAME;
  apply(builder: Builder): void {
    const seen = new WeakMap<BuildContext, { nodes: Map<string, TreeNode>; origins: Map<string, string>; tree?: RootfsTree }>();
    for (const stage of STAGE_HOOKS) {
      // last in each stage: after every other tap of it
      builder.hooks[stage].tapPromise({ name: this.name, stage: 10_000 }, async (tree, ctx) => {
        let s = seen.get(ctx);
        if (!s) seen.set(ctx, (s = { nodes: new Map(), origins: new Map() }));
        s.tree = tree;
        const next = new Map<string, TreeNode>();
        for (const [path, node] of tree.entries()) {
          next.set(path, node);
          if (s.nodes.get(path) !== node) s.origins.set(path, originFor(stage, path, ctx));
        }
        for (const p of s.origins.keys()) if (!next.has(p)) s.origins.delete(p);
        s.nodes = next;
      });
    }
    builder.hooks.afterBuild.tapPromise({ name: this.name, stage: AfterBuildStage.SBOM }, async (result, ctx) => {
      const s = seen.get(ctx);
      if (!s?.tree) return; // another strategy: nothing tracked
      const entries: OriginEntry[] = [];
      for (const [path, node] of s.nodes) {
        let size = 0;
        if (node.type === "file") size = "data" in node ? node.data.length : (node.size ?? (await stat(node.hostPath)).size);
        else if (node.type === "symlink") size = Buffer.byteLength(node.target);
        entries.push({ path, type: node.type, origin: s.origins.get(path) ?? "unknown", size });
      }
      const record: OriginsRecord = {
        version: ORIGINS_VERSION,
        artifact: { name: basename(result.artifact.path), sha256: result.artifact.sha256, size: result.artifact.size },
        entries,
        totals: totalsOf(entries),
      };
      const out = originsPath(result.artifact.path);
      const temp = join(dirname(out), `.fledge-tmp-${process.pid}-${randomBytes(6).toString("hex")}-${basename(out)}`);
      try {
        await writeFile(temp, JSON.stringify(record, null, 1) + "\n");
        await rename(temp, out);
      } catch (err) {
        await rm(temp, { force: true });
        throw err;
      }
      ctx.debug(`origins: ${out}`, this.name);
    });
  }
}

/** The origin of a path new or replaced in `stage`: for mappings, the one whose destination holds it (the longest). */
function originFor(stage: string, path: string, ctx: BuildContext): string {
  if (stage !== "mappings") return STAGE_ORIGIN[stage] ?? stage;
  let best: { written: string; dest: string } | undefined;
  for (const m of ctx.config.mappings) {
    const d = m.dest === "/" ? "/" : m.dest.replace(/\/+$/, "");
    const under = path === d || path.startsWith(d === "/" ? "/" : d + "/");
    if (under && (!best || d.length > best.dest.length)) best = { written: m.written, dest: d };
  }
  // a parent directory created for a mapping belongs to it too
  if (!best) for (const m of ctx.config.mappings) if (m.dest.startsWith(path + "/")) return `mapping:${m.written}`;
  return best ? `mapping:${best.written}` : "mapping";
}

/** Bytes and entries per origin, largest first (ties by name). */
export function totalsOf(entries: { origin: string; size: number }[]): OriginsRecord["totals"] {
  const t = new Map<string, { origin: string; entries: number; size: number }>();
  for (const e of entries) {
    const x = t.get(e.origin) ?? { origin: e.origin, entries: 0, size: 0 };
    x.entries++;
    x.size += e.size;
    t.set(e.origin, x);
  }
  return [...t.values()].sort((a, b) => b.size - a.size || (a.origin < b.origin ? -1 : 1));
}

export default OriginsPlugin;
