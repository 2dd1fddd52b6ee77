import { UsageError, colors, type CliIO } from "./io.js";
import { duTree, human, originOf, readArtifact } from "./sizes.js";
import type { GlobalFlags } from "./index.js";

/** `fledge inspect --sizes`: a du-like tree of one artifact and its bytes by origin. */
export async function runSizes(path: string, depthArg: string | undefined, io: CliIO, flags: GlobalFlags, maxOutput?: number): Promise<number> {
  if (depthArg !== undefined && !/^\d+$/.test(depthArg)) throw new UsageError(`--depth must be a whole number, got "${depthArg}"`);
  const depth = depthArg === undefined ? 2 : Number(depthArg);
  const v = await readArtifact(path, maxOutput);
  const tree = duTree(v.entries);
  const byOrigin = new Map<string, { origin: string; entries: number; size: number }>();
  for (const e of v.entries) {
    const o = originOf(v, e.path);
    const t = byOrigin.get(o) ?? { origin: o, entries: 0, size: 0 };
    t.entries++;
    t.size += e.size;
    byOrigin.set(o, t);
  }
  const origins = [...byOrigin.values()].sort((a, b) => b.size - a.size || (a.origin < b.origin ? -1 : 1));
  const total = tree[0]!.size;
  if (flags.json) {
    const entries = tree.map((n) => ({ ...n, ...(n.path !== "/" ? { origin: originOf(v, n.path) } : {}) }));
    io.stdout.write(JSON.stringify({ ok: true, artifact: { path, size: v.size, sha256: v.sha256, origins: v.originsNote }, total, tree: entries, origins }, null, 2) + "\n");
    return 0;
  }
  const c = colors(io, io.stdout);
  const lines: string[] = [];
  const level = (p: string) => (p === "/" ? 0 : p.split("/").length - 1);
  for (const n of tree) {
    const l = level(n.path);
    // directories down to --depth; files only when they are big (≥ 1% of the image) at that depth or above
    if (l > depth) continue;
    if (n.type !== "dir" && n.size < total / 100) continue;
    const pct = total ? ((n.size / total) * 100).toFixed(1).padStart(5) + "%" : "";
    lines.push(
      `${human(n.size).padStart(10)} ${c.dim(pct)}  ${"  ".repeat(l)}${n.path}${n.type === "dir" && n.path !== "/" ? "/" : ""}${n.type === "dir" ? c.dim(` (${n.entries - (n.path === "/" ? 0 : 1)} entries)`) : ""}`,
    );
  }
  lines.push("", c.bold("by origin:"));
  const w = Math.max(...origins.map((o) => o.origin.length));
  for (const o of origins) lines.push(`  ${o.origin.padEnd(w)}  ${human(o.size).padStart(10)}  ${c.dim(`${o.entries} entries`)}`);
  lines.push("", c.dim(`${human(total)} of data in ${v.entries.length} entries, ${human(v.size)} compressed; origins: ${v.originsNote}`));
  io.stdout.write(lines.join("\n") + "\n");
  return 0;
}
