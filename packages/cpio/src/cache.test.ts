import { createHash, createHmac, randomBytes } from "node:crypto";
import { execFileSync } from "node:child_process";
import { chmod, chown, mkdtemp, readdir, readFile, rm, stat, symlink, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { archiveToBuffer, writeArchive, writeArchiveFile, type ArchiveStats } from "./archive.js";
import { parseTempName } from "@fledge/safe-fs";
import { basename } from "node:path";
import { SegmentCache } from "./cache.js";
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
      data.writeUInt8(data.readUInt8(100) ^ 0xff, 100);
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
    flip.writeUInt8(flip.readUInt8(flip.length - 1) ^ 1, flip.length - 1);
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

/** A tree whose files were last changed well before the build (so the racy rule lets the stat cache remember them). */
async function settledTree(dir: string, files: number): Promise<CpioEntry[]> {
  const entries = await hostTree(dir, files);
  // ctime cannot be set back, so wait out the racy margin (2 s) once.
  await new Promise((r) => setTimeout(r, 2100));
  return entries;
}

async function segFiles(cacheDir: string): Promise<string[]> {
  return (await files(cacheDir)).filter((f) => f.endsWith(".seg"));
}

describe("segment cache bound to its key", () => {
  it("a forged entry (payload replaced, self-hash and length recomputed) or a swapped one (another key's valid entry) is rejected, counted and recomputed", async () => {
    const dir = await mkdtemp(join(tmpdir(), "fledge-cache-"));
    dirs.push(dir);
    const cacheDir = join(dir, "segments");
    const entries = await hostTree(dir, 60);
    const opts = { mtime: MTIME, compressor: "gzip", workers: 1, cacheDir, segment: { min: 32 << 10, max: 128 << 10 } };
    const good = await archiveToBuffer(entries, opts);
    const all = (await segFiles(cacheDir)).sort();
    expect(all.length).toBeGreaterThan(4);
    // Forge: a valid gzip member of other bytes, with the header's sha256 and length fixed up as a forger would.
    const { gzipSync } = await import("node:zlib");
    const forgedPayload = gzipSync(Buffer.from("070701 forged content"));
    const orig = await readFile(all[0]!);
    const head = Buffer.from(orig.subarray(0, 112));
    head.writeBigUInt64LE(BigInt(forgedPayload.length), 40);
    createHash("sha256").update(forgedPayload).digest().copy(head, 48);
    await writeFile(all[0]!, Buffer.concat([head, forgedPayload]));
    // Swap: entry 2's valid file copied over entry 1 and entry 3 (the big file's) over entry 4.
    await writeFile(all[1]!, await readFile(all[2]!));
    const big = (await Promise.all(all.map(async (p) => [p, (await readFile(p)).length] as const))).sort((x, y) => y[1] - x[1])[0]![0];
    const other = all.find((p) => p !== big && p !== all[0] && p !== all[1] && p !== all[2])!;
    await writeFile(big, await readFile(other));
    const st = {} as ArchiveStats;
    const again = await archiveToBuffer(entries, opts, st);
    expect(sha256(again)).toBe(sha256(good));
    expect(again.includes(Buffer.from("forged content"))).toBe(false);
    expect(st.rejected).toBe(3);
    expect(st.compressed).toBe(3);
    // Recomputed entries were stored again: the next build takes everything from the cache.
    const third = {} as ArchiveStats;
    expect(sha256(await archiveToBuffer(entries, opts, third))).toBe(sha256(good));
    expect([third.rejected, third.compressed]).toEqual([0, 0]);
  }, 30000);

  it("an entry written with another user's (or a leaked) secret does not verify; a secret others can read, or that is not the user's, turns the cache off", async () => {
    const dir = await mkdtemp(join(tmpdir(), "fledge-cache-"));
    dirs.push(dir);
    const cacheDir = join(dir, "segments");
    const entries = await hostTree(dir, 30);
    const opts = { mtime: MTIME, compressor: "zstd", workers: 1, cacheDir, segment: { min: 32 << 10, max: 128 << 10 } };
    const good = sha256(await archiveToBuffer(entries, opts));
    const keyFile = (await readdir(cacheDir)).find((n) => n.startsWith("key-"))!;
    expect(((await stat(join(cacheDir, keyFile))).mode & 0o777).toString(8)).toBe("600");
    // A new secret (e.g. an attacker deleted ours and planted theirs): every old entry fails its HMAC.
    await writeFile(join(cacheDir, keyFile), randomBytes(32), { mode: 0o600 });
    const st = {} as ArchiveStats;
    expect(sha256(await archiveToBuffer(entries, opts, st))).toBe(good);
    expect(st.cached).toBe(0);
    expect(st.rejected).toBe(st.segments);
    // Readable by others: not a secret any more, so not trusted.
    await chmod(join(cacheDir, keyFile), 0o644);
    const st2 = {} as ArchiveStats;
    expect(sha256(await archiveToBuffer(entries, opts, st2))).toBe(good);
    expect(st2.cacheSkipped).toMatch(/accessible to other users/);
    expect(st2.cached).toBe(0);
    await chmod(join(cacheDir, keyFile), 0o600);
    if (process.getuid?.() === 0) {
      await chown(join(cacheDir, keyFile), 12345, 12345);
      const st3 = {} as ArchiveStats;
      expect(sha256(await archiveToBuffer(entries, opts, st3))).toBe(good);
      expect(st3.cacheSkipped).toMatch(/belongs to uid 12345/);
    }
    // A symlink in place of the secret is refused too.
    await rm(join(cacheDir, keyFile));
    await symlink(join(dir, "f0"), join(cacheDir, keyFile));
    const st4 = {} as ArchiveStats;
    expect(sha256(await archiveToBuffer(entries, opts, st4))).toBe(good);
    expect(st4.cacheSkipped).toMatch(/symlink/);
  }, 30000);

  it("temp files in the cache carry the writer's pid (safe-fs's pattern, so prune can tell stale ones)", () => {
    const t = new SegmentCache("/x", Buffer.alloc(32)).tempPath("ab".repeat(32));
    expect(parseTempName(basename(t))?.pid).toBe(process.pid);
  });
});

describe("stat cache (racy-git rule)", () => {
  const seg = { min: 32 << 10, max: 128 << 10 };

  it("a warm build reads and hashes no unchanged file; a changed file (even same size with its mtime put back) is read again; --verify re-hashes all", async () => {
    const dir = await mkdtemp(join(tmpdir(), "fledge-stat-"));
    dirs.push(dir);
    const cacheDir = join(dir, "segments");
    const entries = await settledTree(dir, 80);
    const hostFiles = entries.length;
    const opts = { mtime: MTIME, compressor: "gzip", workers: 2, cacheDir, segment: seg };
    const cold = {} as ArchiveStats;
    const a = await archiveToBuffer(entries, opts, cold);
    expect([cold.hashed, cold.statHits]).toEqual([hostFiles, 0]);
    const warm = {} as ArchiveStats;
    expect(sha256(await archiveToBuffer(entries, opts, warm))).toBe(sha256(a));
    expect([warm.hashed, warm.statHits, warm.compressed]).toEqual([0, hostFiles, 0]);

    // Same size, content changed, mtime put back exactly (touch -d): ctime still moved.
    const f = join(dir, "f40");
    const before = await stat(f, { bigint: true });
    const data = await readFile(f);
    data.writeUInt8(data.readUInt8(7) ^ 0x55, 7);
    await writeFile(f, data);
    // touch, not utimes: utimes takes milliseconds, touch -d keeps the nanoseconds.
    const ns = before.mtimeNs;
    execFileSync("touch", ["-m", "-d", `@${ns / 1_000_000_000n}.${String(ns % 1_000_000_000n).padStart(9, "0")}`, f]);
    expect((await stat(f, { bigint: true })).mtimeNs).toBe(before.mtimeNs);
    const after = {} as ArchiveStats;
    const b = await archiveToBuffer(entries, opts, after);
    // Only the changed file's segment is read (and its files hashed again: what is compressed and stored is always hashed).
    expect(after.compressed).toBe(1);
    expect(after.hashed).toBeGreaterThanOrEqual(1);
    expect(after.hashed).toBeLessThan(hostFiles / 8);
    expect(sha256(b)).toBe(sha256(await archiveToBuffer(entries, { ...opts, cacheDir: undefined })));
    expect(sha256(b)).not.toBe(sha256(a));

    const verify = {} as ArchiveStats;
    expect(sha256(await archiveToBuffer(entries, { ...opts, verify: true }, verify))).toBe(sha256(b));
    expect([verify.hashed, verify.statHits]).toEqual([hostFiles, 0]);
  }, 30000);

  it("a warm build checks each cached segment again when it writes it out: a payload damaged, an entry removed or swapped after the header check is made again, never copied", async () => {
    const dir = await mkdtemp(join(tmpdir(), "fledge-stat-"));
    dirs.push(dir);
    const cacheDir = join(dir, "segments");
    const entries = await settledTree(dir, 80);
    const opts = { mtime: MTIME, compressor: "zstd", workers: 1, cacheDir, segment: seg };
    const out = join(dir, "out.zst");
    const cold = {} as ArchiveStats;
    const good = await writeArchiveFile(entries, opts, out, cold);
    const all = (await segFiles(cacheDir)).sort();
    expect(all.length).toBeGreaterThan(5);
    // Payload damaged (its header, HMAC included, is intact), entry removed, another key's valid entry swapped in.
    const flip = await readFile(all[0]!);
    flip.writeUInt8(flip.readUInt8(flip.length - 1) ^ 1, flip.length - 1);
    await writeFile(all[0]!, flip);
    await rm(all[1]!);
    await writeFile(all[2]!, await readFile(all[3]!));
    for (const run of [0, 1]) {
      const st = {} as ArchiveStats;
      // Written to a file (cached segments go through one reused buffer) and to memory.
      const got = run === 0 ? (await writeArchiveFile(entries, opts, join(dir, "again.zst"), st)).sha256 : sha256(await archiveToBuffer(entries, opts, st));
      expect(got).toBe(good.sha256);
      // What is compressed again is read and hashed again (its files only); the rest is not read.
      if (run === 0) expect([st.rejected, st.compressed, st.cached, st.hashed > 0 && st.hashed < entries.length / 4]).toEqual([2, 3, st.segments - 3, true]);
      else expect([st.rejected, st.compressed, st.cached, st.hashed]).toEqual([0, 0, st.segments, 0]);
    }
    expect(await readFile(join(dir, "again.zst"))).toEqual(await readFile(out));
  }, 30000);

  it("a large file's cached segment rewritten in place after its check (a shared cache directory) fails the build instead of reaching the artifact", async () => {
    const dir = await mkdtemp(join(tmpdir(), "fledge-swap-"));
    dirs.push(dir);
    const cacheDir = join(dir, "segments");
    // two large, incompressible host files: each its own segment, copied out of the cache file
    const a = join(dir, "a.bin");
    const b = join(dir, "b.bin");
    await writeFile(a, randomBytes(3 << 20));
    await writeFile(b, randomBytes(2 << 20));
    const entries: CpioEntry[] = [
      { path: "a.bin", type: "file", mode: 0o644, file: a },
      { path: "b.bin", type: "file", mode: 0o644, file: b },
    ];
    const opts = { mtime: MTIME, compressor: "gzip", workers: 1, cacheDir, segment: { min: 32 << 10, max: 128 << 10 } };
    await archiveToBuffer(entries, opts);
    const bySize = await Promise.all((await segFiles(cacheDir)).map(async (p) => [p, (await stat(p)).size] as const));
    bySize.sort((x, y) => y[1] - x[1]);
    const bSeg = bySize[1]![0]; // the second largest: b.bin's
    const before = (await stat(bSeg)).mtimeMs;
    const run = async () => {
      let first = true;
      for await (const _ of writeArchive(entries, opts)) {
        if (!first) continue;
        first = false;
        // a.bin is being written out; b.bin's entry has been checked once its last-use time moves
        for (let i = 0; i < 500 && (await stat(bSeg)).mtimeMs === before; i++) await new Promise((r) => setTimeout(r, 10));
        expect((await stat(bSeg)).mtimeMs).not.toBe(before);
        const bytes = await readFile(bSeg);
        bytes.writeUInt8(bytes.readUInt8(bytes.length - 1) ^ 1, bytes.length - 1); // the payload's last byte; header and HMAC intact
        await writeFile(bSeg, bytes);
      }
    };
    await expect(run()).rejects.toThrow(/segment cache entry .* changed while it was copied into the artifact/);
  }, 30000);

  it("racy case: a file changed within the timestamp tick of the build that hashed it (same size, stat unchanged) is hashed again, never served stale", async () => {
    const dir = await mkdtemp(join(tmpdir(), "fledge-stat-"));
    dirs.push(dir);
    const cacheDir = join(dir, "segments");
    const entries = await hostTree(dir, 40);
    const f = join(dir, "f20");
    // The file system's view of f20 never moves: as if both writes fell in one timestamp tick
    // (coarse clocks, whole-second file systems). Every other file is stamped for real.
    const frozen = await stat(f, { bigint: true });
    const stampFile = async (p: string) => {
      const s = await stat(p, { bigint: true });
      const use = p === f ? frozen : s;
      return { dev: use.dev, ino: use.ino, size: use.size, mtimeNs: use.mtimeNs, ctimeNs: use.ctimeNs };
    };
    const opts = { mtime: MTIME, compressor: "gzip", workers: 1, cacheDir, segment: seg, stampFile };
    const a = await archiveToBuffer(entries, opts);
    const data = await readFile(f);
    data.writeUInt8(data.readUInt8(3) ^ 0xff, 3);
    await writeFile(f, data);
    const st = {} as ArchiveStats;
    const b = await archiveToBuffer(entries, opts, st);
    expect(st.hashed).toBeGreaterThanOrEqual(1);
    expect(sha256(b)).not.toBe(sha256(a));
    expect(sha256(b)).toBe(sha256(await archiveToBuffer(entries, { ...opts, cacheDir: undefined })));
  }, 30000);

  it("a forged stat cache (a digest pointing at an older content's cached segment) is ignored: every file is hashed and the artifact has the files' real bytes", async () => {
    const dir = await mkdtemp(join(tmpdir(), "fledge-stat-"));
    dirs.push(dir);
    const cacheDir = join(dir, "segments");
    const entries = await settledTree(dir, 30);
    const opts = { mtime: MTIME, compressor: "gzip", workers: 1, cacheDir, segment: seg };
    await archiveToBuffer(entries, opts);
    const indexFile = join(cacheDir, (await readdir(cacheDir)).find((n) => n.startsWith("stat-"))!);
    const old = await readFile(indexFile, "utf8");
    // Change f10 (its old segment stays cached), build, then put f10's old digest back into the index for its new stamp.
    const f = join(dir, "f10");
    const data = await readFile(f);
    data.writeUInt8(data.readUInt8(0) ^ 1, 0);
    await writeFile(f, data);
    await new Promise((r) => setTimeout(r, 2100));
    const good = await archiveToBuffer(entries, { ...opts, cacheDir: undefined });
    await archiveToBuffer(entries, opts);
    const cur = await readFile(indexFile, "utf8");
    const [, , body] = /^(fledge-stat-1\n)([0-9a-f]+)\n/.exec(cur) ? [null, null, cur.slice(cur.indexOf("\n", 14) + 1)] : [];
    const rows = JSON.parse(body!);
    const oldRows = JSON.parse(old.slice(old.indexOf("\n", 14) + 1));
    rows[f][5] = oldRows[f][5];
    const forgedBody = JSON.stringify(rows);
    // The forger cannot compute the HMAC: they try the old one, and one keyed with a guessed secret.
    for (const mac of [old.slice(14, 78), createHmac("sha256", Buffer.alloc(32)).update(forgedBody).digest("hex")]) {
      await writeFile(indexFile, `fledge-stat-1\n${mac}\n${forgedBody}`);
      const st = {} as ArchiveStats;
      expect(sha256(await archiveToBuffer(entries, opts, st))).toBe(sha256(good));
      expect(st.statHits).toBe(0);
      expect(st.hashed).toBe(entries.length);
    }
  }, 30000);

  it("adding a file recompresses only the segments around it, not everything after it", async () => {
    const dir = await mkdtemp(join(tmpdir(), "fledge-stat-"));
    dirs.push(dir);
    const cacheDir = join(dir, "segments");
    const entries = await hostTree(dir, 150);
    const opts = { mtime: MTIME, compressor: "lz4", workers: 1, cacheDir, segment: seg };
    const cold = {} as ArchiveStats;
    await archiveToBuffer(entries, opts, cold);
    await writeFile(join(dir, "new"), "a new file\n");
    const st = {} as ArchiveStats;
    // Sorts among the first entries ("usr/lib/f1…").
    await archiveToBuffer([...entries, { path: "usr/lib/f1a", type: "file", mode: 0o644, file: join(dir, "new") }], opts, st);
    expect(cold.segments).toBeGreaterThan(15);
    expect(st.compressed).toBeLessThanOrEqual(3);
  }, 30000);
});
