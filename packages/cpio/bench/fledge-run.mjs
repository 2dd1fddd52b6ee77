// One fledge archive build, as the benchmark times it: walk a host tree (lstat, like the
// mappings stage), then writeArchive to a file. Prints stats as JSON on stdout.
// Usage: node fledge-run.mjs <tree> <out> <compressor> [cacheDir] [level]
// FLEDGE_WORKERS=<n> sets the number of worker threads (default: one per CPU).
import { createWriteStream } from "node:fs";
import { lstat, readdir, readlink } from "node:fs/promises";
import { join } from "node:path";
import { pipeline } from "node:stream/promises";
import { writeArchive } from "../dist/index.js";

const [tree, out, compressor, cacheDir, level] = process.argv.slice(2);
const started = performance.now();
const entries = [];
async function walk(rel) {
  for (const d of await readdir(join(tree, rel), { withFileTypes: true })) {
    const p = rel ? `${rel}/${d.name}` : d.name;
    const full = join(tree, p);
    const st = await lstat(full);
    const mode = st.mode & 0o7777;
    if (st.isDirectory()) {
      entries.push({ path: p, type: "dir", mode });
      await walk(p);
    } else if (st.isFile()) entries.push({ path: p, type: "file", mode, file: full, size: st.size });
    else if (st.isSymbolicLink()) entries.push({ path: p, type: "symlink", mode: 0o777, target: await readlink(full) });
  }
}
await walk("");
const stats = {};
await pipeline(
  writeArchive(
    entries,
    { mtime: 1704067200, compressor, cacheDir: cacheDir || undefined, level: level ? Number(level) : undefined, workers: process.env.FLEDGE_WORKERS ? Number(process.env.FLEDGE_WORKERS) : undefined },
    stats,
  ),
  createWriteStream(out),
);
stats.ms = performance.now() - started;
stats.maxRssKb = process.resourceUsage().maxRSS;
console.log(JSON.stringify(stats));
