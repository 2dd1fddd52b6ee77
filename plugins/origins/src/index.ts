import { stat } from "node:fs/promises";
import { basename } from "node:path";
import { AfterBuildStage, type Builder, type TreeNode } from "@fledge/core";

export const PLUGIN_NAME = "@fledge/plugin-origins";
export const ORIGINS_VERSION = 1;

/** Where one entry of the image came from, and what it weighs. */
export interface OriginEntry {
  path: string;
  type: TreeNode["type"];
  /** The tree node's origin: `skeleton`, `busybox`, `init`, `kestrel`, `mapping:<host path as written>`, `layer:<digest>`, `tarball:<source>`, `plugin:<name>`. */
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

/**
 * Writes `<artifact>.origins.json` beside the artifact: each entry of the image with the origin
 * its tree node carries (set by whoever added it) and its size. It is an output of the build, so
 * it is committed with the artifact and never left behind by a failed build.
 */
export class OriginsPlugin {
  readonly name = PLUGIN_NAME;
  apply(builder: Builder): void {
    builder.hooks.check.tap(this.name, (_check, ctx) => {
      ctx.outputs.add(originsPath(ctx.outputs.artifact.path), { label: "origins" });
    });
    builder.hooks.afterBuild.tapPromise({ name: this.name, stage: AfterBuildStage.SBOM }, async (result, ctx) => {
      const out = ctx.outputs.list().find((o) => o.label === "origins" && o.plugin === this.name);
      if (!out) return;
      if (!result.tree) {
        out.discard(); // a strategy that gives no tree: nothing to record
        return;
      }
      const entries: OriginEntry[] = [];
      for (const [path, node] of result.tree.entries()) {
        let size = 0;
        if (node.type === "file") size = "data" in node ? node.data.length : "hostPath" in node ? (node.size ?? (await stat(node.hostPath)).size) : node.size;
        else if (node.type === "symlink") size = Buffer.byteLength(node.target);
        entries.push({ path, type: node.type, origin: node.origin ?? "unknown", size });
      }
      const record: OriginsRecord = {
        version: ORIGINS_VERSION,
        artifact: { name: basename(result.artifact.path), sha256: result.artifact.sha256, size: result.artifact.size },
        entries,
        totals: totalsOf(entries),
      };
      await out.write(JSON.stringify(record, null, 1) + "\n");
    });
  }
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
