import { describe, expect, it } from "vitest";
import { gzipSync } from "node:zlib";
import { archiveToBuffer } from "./archive.js";
import { readArchive, scanArchive, type ReadEntry } from "./reader.js";
import { createHash } from "node:crypto";
import { mkdtemp, open, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { CpioError } from "./errors.js";
import { lz4CompressBlock, lz4DecompressBlock } from "./lz4.js";
import { writeNewc } from "./writer.js";
import { randomTree, rng, run } from "./test/helpers.js";

const MTIME = 1704067200;

async function raw(entries: Parameters<typeof writeNewc>[0]): Promise<Buffer> {
  const parts: Uint8Array[] = [];
  for await (const c of writeNewc(entries, { mtime: MTIME })) parts.push(c);
  return Buffer.concat(parts);
}

describe("reader", () => {
  it("refuses odc (070707) archives and says the kernel would too", async () => {
    const odc = run("sh", ["-c", "cd /etc && printf 'hostname\\n' | cpio -o -H odc --quiet"]).stdout;
    expect(odc.toString("latin1", 0, 6)).toBe("070707");
    await expect(readArchive(odc)).rejects.toThrow(/kernel only unpacks newc.*-H newc/);
  });

  it("reads what GNU cpio -H newc writes, including its hardlink convention (data on the last name)", async () => {
    const r = run("sh", ["-c", "d=$(mktemp -d) && cd $d && echo data > a && ln a b && mkdir c && ln -s a s && find . | LC_ALL=C sort | cpio -o -H newc --quiet; rm -rf $d"]);
    const { entries } = await readArchive(r.stdout);
    const byPath = Object.fromEntries(entries.map((e) => [e.path, e]));
    expect(Buffer.from(byPath.a!.data!).toString()).toBe("data\n");
    expect(Buffer.from(byPath.b!.data!).toString()).toBe("data\n");
    expect(byPath.b!.linkTo).toBe("a");
    expect(byPath.s!.target).toBe("a");
  });

  it("reads concatenated members as the kernel does: raw newc, then gzip, zstd, xz and lz4 members, zero padding between", async () => {
    const parts: Buffer[] = [await raw([{ path: "early/microcode", type: "file", mode: 0o644, data: Buffer.from("ucode") }]), Buffer.alloc(512)];
    for (const c of ["gzip", "zstd", "xz", "lz4"])
      parts.push(await archiveToBuffer([{ path: `${c}/file`, type: "file", mode: 0o644, data: Buffer.from(c) }], { mtime: MTIME, compressor: c, workers: 0 }), Buffer.alloc(4));
    const { entries, members } = await readArchive(Buffer.concat(parts));
    expect(members.map((m) => m.kind)).toEqual(["cpio", "gzip", "zstd", "xz", "lz4"]);
    expect(entries.filter((e) => e.type === "file").map((e) => e.path)).toEqual(["early/microcode", "gzip/file", "zstd/file", "xz/file", "lz4/file"]);
  });

  it('refuses a compressed member that ends inside an entry (the kernel\'s "junk at the end")', async () => {
    const whole = await raw([{ path: "f", type: "file", mode: 0o644, data: Buffer.alloc(1000, 7) }]);
    const split = Buffer.concat([gzipSync(whole.subarray(0, 200)), gzipSync(whole.subarray(200))]);
    await expect(readArchive(split)).rejects.toThrow(/ends inside an entry/);
  });

  it("refuses the modern lz4 frame, which the kernel cannot read", async () => {
    const modern = run("sh", ["-c", "printf hello | lz4 -c"]).stdout;
    await expect(readArchive(modern)).rejects.toThrow(/legacy format \(lz4 -l\)/);
  });

  it("gives clear errors for truncated and corrupt input", async () => {
    const good = await archiveToBuffer(randomTree(5), { mtime: MTIME, compressor: "none", workers: 0 });
    await expect(readArchive(good.subarray(0, 50))).rejects.toThrow(/archive ends inside a header/);
    await expect(readArchive(good.subarray(0, good.length - 130))).rejects.toThrow(CpioError);
    const bad = Buffer.from(good);
    bad.write("X", 20, "latin1");
    await expect(readArchive(bad)).rejects.toThrow(/not hexadecimal/);
    const gz = await archiveToBuffer(randomTree(5), { mtime: MTIME, compressor: "gzip", workers: 0 });
    await expect(readArchive(gz.subarray(0, gz.length - 3))).rejects.toThrow(/gzip member .* truncated/);
  });

  it("fuzz: thousands of mutated archives give a CpioError or a result, never a crash or a hang", async () => {
    const r = rng(42);
    const bases: Buffer[] = [];
    for (const c of ["none", "gzip", "zstd", "xz", "lz4"]) {
      bases.push(
        await archiveToBuffer(randomTree(100 + c.length, 12), { mtime: MTIME, compressor: c, workers: 0, format: c === "none" ? "crc" : "newc", level: c === "xz" ? 0 : undefined, segment: { min: 256, max: 1024 } }),
      );
    }
    let rounds = 0;
    let errors = 0;
    // A fixed number of rounds (never a time box: the machine may be loaded); a hang fails the
    // test's timeout.
    while (rounds < 1500) {
      const base = bases[rounds % bases.length]!;
      const m = Buffer.from(base);
      const kind = r();
      if (kind < 0.6) {
        for (let i = 0, n = 1 + Math.floor(r() * 4); i < n; i++) m[Math.floor(r() * m.length)] = Math.floor(r() * 256);
      } else if (kind < 0.8) {
        const cut = Math.floor(r() * m.length);
        m.fill(0, cut, Math.min(m.length, cut + 1 + Math.floor(r() * 16)));
      }
      const input = kind >= 0.8 ? m.subarray(0, Math.floor(r() * m.length)) : m;
      try {
        await readArchive(input, { maxOutput: 1 << 24 });
      } catch (err) {
        if (!(err instanceof CpioError)) throw new Error(`round ${rounds}: non-CpioError ${(err as Error).stack}`);
        expect(err.message.length).toBeGreaterThan(10);
        errors++;
      }
      rounds++;
    }
    expect(errors).toBeGreaterThan(rounds / 10);
  }, 120_000);
});

describe("lz4 legacy", () => {
  it("block codec round-trips random and repetitive data", () => {
    const r = rng(7);
    for (const n of [0, 1, 12, 13, 100, 70000, 300000]) {
      const d = new Uint8Array(n);
      for (let i = 0; i < n; i++) d[i] = i % 3 === 0 ? Math.floor(r() * 256) : i % 50;
      expect(Buffer.from(lz4DecompressBlock(lz4CompressBlock(d), n)).equals(Buffer.from(d))).toBe(true);
    }
  });

  it("the lz4 CLI decodes fledge's frames, and fledge decodes lz4 -l's", async () => {
    const data = Buffer.from("initramfs ".repeat(100000));
    const ours = await archiveToBuffer([{ path: "f", type: "file", mode: 0o644, data }], { mtime: MTIME, compressor: "lz4", workers: 0 });
    expect(ours.subarray(0, 4).toString("hex")).toBe("02214c18");
    const cli = run("lz4", ["-dc"], { input: ours });
    expect(cli.status).toBe(0);
    expect(cli.stdout.equals(await raw([{ path: "f", type: "file", mode: 0o644, data }]))).toBe(true);
    const theirs = run("lz4", ["-l", "-c"], { input: await raw([{ path: "g", type: "file", mode: 0o644, data }]) }).stdout;
    const { entries } = await readArchive(theirs);
    expect(Buffer.from(entries[0]!.data!).equals(data)).toBe(true);
  });
});

describe("scanArchive (streaming, issue 11)", () => {
  it("streams large members of every kind from a file, hashing entries without keeping them, and caps the output", async () => {
    const r = rng(11);
    const big = Buffer.alloc(24 << 20);
    for (let i = 0; i < big.length; i += 4096) big[i] = Math.floor(r() * 256); // compressible, not trivial
    const sha = createHash("sha256").update(big).digest("hex");
    const dir = await mkdtemp(join(tmpdir(), "scan-"));
    for (const c of ["gzip", "xz", "lz4", "none"]) {
      const buf = await archiveToBuffer(
        [
          { path: "big", type: "file", mode: 0o644, data: big },
          { path: "link", type: "symlink", mode: 0o777, target: "big" },
        ],
        { mtime: MTIME, compressor: c, workers: 0 },
      );
      const file = join(dir, `a.${c}`);
      await writeFile(file, buf);
      const fh = await open(file, "r");
      try {
        const seen: ReadEntry[] = [];
        const res = await scanArchive(fh, { onEntry: (e) => void seen.push(e) });
        expect(
          seen.map((e) => [e.path, e.sha256 ?? e.target, e.data]),
          c,
        ).toEqual([
          ["big", sha, undefined],
          ["link", "big", undefined],
        ]);
        expect(res.entries).toBe(2);
        expect(res.uncompressedSize).toBeGreaterThan(big.length);
        await expect(scanArchive(fh, { maxOutput: 8 << 20 }), c).rejects.toMatchObject({ code: "FLEDGE_TOOBIG" });
      } finally {
        await fh.close();
      }
    }
  }, 60_000);

  it("gives a hardlink group's names the link and each its own stored data's hash", async () => {
    const r = run("sh", ["-c", "d=$(mktemp -d) && cd $d && echo data > a && ln a b && find . | LC_ALL=C sort | cpio -o -H newc --quiet; rm -rf $d"]);
    const seen: ReadEntry[] = [];
    await scanArchive(r.stdout, { onEntry: (e) => void seen.push(e) });
    const byPath = Object.fromEntries(seen.map((e) => [e.path, e]));
    expect(byPath.b!.linkTo).toBe("a");
    expect(byPath.b!.sha256).toBe(createHash("sha256").update("data\n").digest("hex"));
    expect(byPath.a!.sha256).toBe(createHash("sha256").digest("hex"));
  });
});
