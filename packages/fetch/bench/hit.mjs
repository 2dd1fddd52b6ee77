// The cost of verifying a cache hit: median of 31 hits, a baseline build of @fledge/fetch (before
// hits were re-hashed) against this one, for busybox (1.9 MiB) and a 64 MiB random file.
// Usage: node packages/fetch/bench/hit.mjs <baseline worktree> <this worktree>
import { randomBytes, createHash } from "node:crypto";
import { mkdtempSync, readFileSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { pathToFileURL } from "node:url";

const [oldDir, newDir] = process.argv.slice(2).map((d) => resolve(d));
if (!oldDir || !newDir) throw new Error("usage: node hit.mjs <baseline worktree> <this worktree>");
const load = async (d) => (await import(pathToFileURL(join(d, "packages/fetch/dist/index.js")).href)).Fetcher;
const Old = await load(oldDir);
const New = await load(newDir);
const tmp = mkdtempSync(join(tmpdir(), "fledge-hit-bench-"));
const big = join(tmp, "big.bin");
writeFileSync(big, randomBytes(64 << 20));
const med = (a) => a.sort((x, y) => x - y)[Math.floor(a.length / 2)];
for (const [name, file] of [
  ["busybox 1.9 MiB", "/bin/busybox"],
  ["64 MiB", big],
]) {
  const sha = createHash("sha256").update(readFileSync(file)).digest("hex");
  const res = {};
  for (const [label, F] of [
    ["baseline", Old],
    ["now", New],
  ]) {
    const f = new F({ cacheDir: join(tmp, label), env: {} });
    await f.cache.add(file);
    const t = [];
    for (let i = 0; i < 31; i++) {
      const t0 = performance.now();
      const r = await f.fetch({ url: "https://example.invalid/x", sha256: sha });
      t.push(performance.now() - t0);
      if (!r.fromCache) throw new Error("not a cache hit");
    }
    res[label] = med(t);
  }
  console.log(`${name}: cache hit, median of 31: baseline ${res.baseline.toFixed(2)} ms, now ${res.now.toFixed(2)} ms (+${(res.now - res.baseline).toFixed(2)} ms)`);
}
