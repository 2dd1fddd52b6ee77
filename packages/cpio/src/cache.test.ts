import { mkdtemp, readdir, readFile, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { archiveToBuffer, type ArchiveStats } from "./archive.js";
import type { CpioEntry } from "./entry.js";
import { rng, sha256 } from "./test/helpers.js";

const MTIME = 1704067200;
const dirs: string[] = [];
afterAll(async () => {
  for (const d of dirs) await rm(d, { recursive: true, force: true });
});

async function hostTree(dir: string, files: number): Promise<CpioEntry[]> {
  const r = rng(1);
  const entries: CpioEntry[] = [];
  for (let i = 0; i < files; i++) {
    const p = join(dir, `f${i}`);
    const data = Buffer.alloc(20000 + Math.floor(r() * 20000));
    for (let j = 0; j < data.length; j++) data[j] = (j * 31 + i) % 251;
    await writeFile(p, data);
    entries.push({ path: `usr/lib/f${i}`, type: "file", mode: 0o644, file: p });
  }
  // One large host file takes the streaming path (its own segment).
  const big = join(dir, "big");
  await writeFile(big, Buffer.alloc(300000, 9));
  entries.push({ path: "usr/bin/big", type: "file", mode: 0o755, file: big });
  return entries;
}

async function files(d: string): Promise<string[]> {
  const out: string[] = [];
  for (const sub of await readdir(d, { withFileTypes: true })) {
    if (sub.isDirectory() && sub.name !== "tmp") for (const f of await readdir(join(d, sub.name))) out.push(join(d, sub.name, f));
  }
  return out;
}

describe("segment cache", () => {
  for (const compressor of ["gzip", "zstd", "lz4"]) {
    it(`${compressor}: a rebuild after one file changed recompresses only that file's segment, and gives the bytes a cold build gives`, async () => {
      const dir = await mkdtemp(join(tmpdir(), "fledge-cache-"));
      dirs.push(dir);
      const cacheDir = join(dir, "segments");
      const entries = await hostTree(dir, 120);
      const opts = { mtime: MTIME, compressor, workers: 2, cacheDir, segment: { min: 32 << 10, max: 128 << 10 } };
      const cold = {} as ArchiveStats;
      const a = await archiveToBuffer(entries, opts, cold);
      expect(cold.cached).toBe(0);
      expect(cold.segments).toBeGreaterThan(10);
      const warm = {} as ArchiveStats;
      expect(sha256(await archiveToBuffer(entries, opts, warm))).toBe(sha256(a));
      expect(warm.compressed).toBe(0);
      expect(warm.cached).toBe(warm.segments);
      // Change one file, same size.
      const f = join(dir, "f60");
      const data = await readFile(f);
      data[100] ^= 0xff;
      await writeFile(f, data);
      const after = {} as ArchiveStats;
      const b = await archiveToBuffer(entries, opts, after);
      expect(after.compressed).toBe(1);
      const fresh = await archiveToBuffer(entries, { ...opts, cacheDir: undefined });
      expect(sha256(b)).toBe(sha256(fresh));
      expect(sha256(b)).not.toBe(sha256(a));
    }, 30000);
  }

  it("a cache directory that cannot be created is skipped: the build still succeeds with the same bytes", async () => {
    const dir = await mkdtemp(join(tmpdir(), "fledge-cache-"));
    dirs.push(dir);
    const entries = await hostTree(dir, 20);
    await writeFile(join(dir, "not-a-dir"), "x");
    const opts = { mtime: MTIME, compressor: "gzip", workers: 1, segment: { min: 32 << 10, max: 128 << 10 } };
    const st = {} as ArchiveStats;
    const a = await archiveToBuffer(entries, { ...opts, cacheDir: join(dir, "not-a-dir", "segments") }, st);
    expect(st.cached).toBe(0);
    expect(sha256(a)).toBe(sha256(await archiveToBuffer(entries, opts)));
  });

  it("a damaged or truncated cache entry is ignored and replaced, never copied into the artifact", async () => {
    const dir = await mkdtemp(join(tmpdir(), "fledge-cache-"));
    dirs.push(dir);
    const cacheDir = join(dir, "segments");
    const entries = await hostTree(dir, 60);
    const opts = { mtime: MTIME, compressor: "gzip", workers: 1, cacheDir, segment: { min: 32 << 10, max: 128 << 10 } };
    const good = sha256(await archiveToBuffer(entries, opts));
    const all = await files(cacheDir);
    expect(all.length).toBeGreaterThan(5);
    // Flip a byte in one entry, truncate another, empty a third (the big file's among them).
    const big = (await Promise.all(all.map(async (p) => [p, (await readFile(p)).length] as const))).sort((x, y) => y[1] - x[1])[0]![0];
    const flip = await readFile(all[0]!);
    flip[flip.length - 1] ^= 1;
    await writeFile(all[0]!, flip);
    await writeFile(all[1]!, (await readFile(all[1]!)).subarray(0, 40));
    await writeFile(big, Buffer.alloc(0));
    const st = {} as ArchiveStats;
    expect(sha256(await archiveToBuffer(entries, opts, st))).toBe(good);
    expect(st.compressed).toBeGreaterThanOrEqual(3);
    const again = {} as ArchiveStats;
    expect(sha256(await archiveToBuffer(entries, opts, again))).toBe(good);
    expect(again.compressed).toBe(0);
    expect(await readdir(join(cacheDir, "tmp"))).toEqual([]);
  }, 30000);
});
