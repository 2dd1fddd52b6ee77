import { mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { writeNewc } from "./writer.js";
import { archiveToBuffer } from "./archive.js";
import { readArchive } from "./reader.js";
import { CpioError } from "./errors.js";
import type { CpioEntry } from "./entry.js";

const MTIME = 1704067200;

async function collect(entries: CpioEntry[], opts: Parameters<typeof writeNewc>[1] = { mtime: MTIME }): Promise<Buffer> {
  const parts: Uint8Array[] = [];
  for await (const c of writeNewc(entries, opts)) parts.push(c);
  return Buffer.concat(parts);
}

/** Asserts the writer throws `code` before yielding a single byte. */
async function refuses(entries: CpioEntry[], code: string, msg: RegExp): Promise<void> {
  const gen = writeNewc(entries, { mtime: MTIME });
  const err = await gen.next().then(
    () => undefined,
    (e: unknown) => e,
  );
  expect(err).toBeInstanceOf(CpioError);
  expect((err as CpioError).code).toBe(code);
  expect((err as CpioError).message).toMatch(msg);
}

describe("newc writer", () => {
  it("writes the exact newc bytes for a file (header fields, NUL-counted name, 4-byte padding, trailer)", async () => {
    const buf = await collect([{ path: "hi", type: "file", mode: 0o644, data: Buffer.from("hello") }]);
    const text = buf.toString("latin1");
    // The inode number is derived from the name ("hi" → 05cbd08f): pinned, since changing it changes every artifact.
    expect(text.slice(0, 110)).toBe("070701" + "05cbd08f" + "000081a4" + "00000000" + "00000000" + "00000001" + MTIME.toString(16).padStart(8, "0") + "00000005" + "00000000".repeat(4) + "00000003" + "00000000");
    expect(text.slice(110, 113)).toBe("hi\0");
    expect(text.slice(113, 116)).toBe("\0\0\0"); // 113 → 116
    expect(text.slice(116, 121)).toBe("hello");
    expect(text.slice(121, 124)).toBe("\0\0\0");
    expect(text.slice(124, 130)).toBe("070701");
    expect(text.slice(124 + 110, 124 + 120)).toBe("TRAILER!!!");
    expect(buf.length % 4).toBe(0);
  });

  it("writes 070702 with the byte-sum checksum the kernel verifies", async () => {
    const data = Buffer.from([255, 255, 1]);
    const buf = await collect([{ path: "f", type: "file", mode: 0o600, data }], { mtime: MTIME, format: "crc" });
    expect(buf.toString("latin1", 0, 6)).toBe("070702");
    expect(buf.toString("latin1", 102, 110)).toBe((255 + 255 + 1).toString(16).padStart(8, "0"));
  });

  it("sorts bytewise, parents first, adds missing parents; inode numbers are unique, non-zero and do not shift when an entry is added", async () => {
    const entries: CpioEntry[] = [
      { path: "b/z", type: "file", mode: 0o644, data: Buffer.from("z") },
      { path: "a-b", type: "file", mode: 0o644, data: Buffer.from("1") },
      { path: "a/x", type: "symlink", mode: 0o777, target: "../b/z" },
      { path: "a", type: "dir", mode: 0o755 },
    ];
    const one = await collect(entries);
    const two = await collect([...entries].reverse());
    expect(one.equals(two)).toBe(true);
    const { entries: read } = await readArchive(one);
    expect(read.map((e) => e.path)).toEqual(["a", "a-b", "a/x", "b", "b/z"]);
    expect(read.find((e) => e.path === "b")!.mode).toBe(0o755);
    const inos = read.map((e) => e.ino);
    expect(new Set(inos).size).toBe(inos.length);
    expect(inos).not.toContain(0);
    // Adding an entry that sorts first leaves every other inode as it was (sequential numbers would shift them all).
    const { entries: more } = await readArchive(await collect([{ path: "0", type: "dir", mode: 0o755 }, ...entries]));
    const before = new Map(read.map((e) => [e.path, e.ino]));
    for (const e of more) if (e.path !== "0") expect(e.ino).toBe(before.get(e.path));
  });

  it("keeps inode numbers unique in a large tree", async () => {
    const many: CpioEntry[] = Array.from({ length: 20000 }, (_, i) => ({ path: `d${i % 37}/f${i}`, type: "file" as const, mode: 0o644, data: Buffer.alloc(0) }));
    const { entries: read } = await readArchive(await collect(many));
    expect(new Set(read.map((e) => e.ino)).size).toBe(read.length);
  });

  it("stores a hardlinked file's data once, with one inode and the right nlink for every name", async () => {
    const buf = await collect([
      { path: "bin/busybox", type: "file", mode: 0o755, data: Buffer.from("BB") },
      { path: "bin/sh", type: "file", mode: 0o755, linkTo: "bin/busybox" },
      { path: "sbin/init", type: "file", mode: 0o700, linkTo: "bin/sh" },
    ]);
    const { entries } = await readArchive(buf);
    const files = entries.filter((e) => e.type === "file");
    expect(files.map((e) => [e.path, e.nlink, e.size, e.mode])).toEqual([
      ["bin/busybox", 3, 2, 0o755],
      ["bin/sh", 3, 0, 0o755],
      ["sbin/init", 3, 0, 0o755],
    ]);
    expect(new Set(files.map((e) => e.ino)).size).toBe(1);
    expect(buf.toString("latin1").split("BB").length - 1).toBe(1);
  });

  it("refuses, before writing anything, what newc or the kernel cannot take", async () => {
    await refuses([{ path: "big", type: "file", mode: 0o644, stream: async function* () {}, size: 2 ** 32 }], "FLEDGE_TOOBIG", /4 GiB/);
    await refuses([{ path: "x".repeat(4096), type: "dir", mode: 0o755 }], "FLEDGE_NAMETOOLONG", /4095/);
    await refuses([{ path: "a/../etc", type: "dir", mode: 0o755 }], "FLEDGE_PATH", /\.\./);
    await refuses([{ path: "a\0b", type: "dir", mode: 0o755 }], "FLEDGE_PATH", /NUL/);
    await refuses([{ path: "/abs", type: "dir", mode: 0o755 }], "FLEDGE_PATH", /relative/);
    await refuses([{ path: "f", type: "file", mode: 0o644, data: new Uint8Array(1), mtime: 2 ** 32 }], "FLEDGE_MTIME", /32-bit/);
    await refuses([{ path: "f", type: "file", mode: 0o644, data: new Uint8Array(1), mtime: -1 }], "FLEDGE_MTIME", /32-bit/);
    await refuses(
      [
        { path: "p", type: "dir", mode: 0o755 },
        { path: "p", type: "file", mode: 0o644, data: new Uint8Array(1) },
      ],
      "FLEDGE_CONFLICT",
      /different types/,
    );
    await refuses(
      [
        { path: "f", type: "file", mode: 0o644, data: new Uint8Array(1) },
        { path: "f/g", type: "file", mode: 0o644, data: new Uint8Array(1) },
      ],
      "FLEDGE_CONFLICT",
      /not a directory/,
    );
    await refuses([{ path: "h", type: "file", mode: 0o644, linkTo: "nope" }], "FLEDGE_LINK", /not in the archive/);
    await refuses([{ path: "m", type: "file", mode: 0o644, file: "/nonexistent/fledge-test" }], "FLEDGE_NOENT", /nonexistent/);
  });

  it("accepts a name of exactly 4095 bytes and a file from a stream", async () => {
    const long = ("d".repeat(254) + "/").repeat(17).slice(0, 4095 - 1) + "f";
    expect(Buffer.byteLength(long)).toBe(4095);
    const buf = await collect([
      { path: long, type: "dir", mode: 0o755 },
      {
        path: "s",
        type: "file",
        mode: 0o644,
        size: 6,
        stream: async function* () {
          yield Buffer.from("abc");
          yield Buffer.from("def");
        },
      },
    ]);
    const { entries } = await readArchive(buf);
    expect(entries.find((e) => e.path === long)).toBeTruthy();
    expect(Buffer.from(entries.find((e) => e.path === "s")!.data!).toString()).toBe("abcdef");
  });

  it("fails a stream that gives fewer bytes than declared", async () => {
    await expect(
      archiveToBuffer(
        [
          {
            path: "s",
            type: "file",
            mode: 0o644,
            size: 10,
            stream: async function* () {
              yield Buffer.from("abc");
            },
          },
        ],
        { mtime: MTIME, compressor: "none", workers: 0 },
      ),
    ).rejects.toThrow(/gave 3 bytes, 10 were declared/);
  });

  it("fails a host file that is shorter or longer than when it was listed, in a segment or on its own", async () => {
    const dir = await mkdtemp(join(tmpdir(), "fledge-changed-"));
    try {
      const file = join(dir, "f");
      await writeFile(file, "0123456789");
      for (const workers of [0, 2]) {
        for (const max of [1 << 20, 100]) {
          const opts = { mtime: MTIME, compressor: "zstd", workers, segment: { min: 64, max } };
          // Small files are read into their segment, larger ones compressed from disk: both check the size.
          const grew = archiveToBuffer(
            [
              { path: "f", type: "file", mode: 0o644, file, size: 8 },
              { path: "g", type: "file", mode: 0o644, data: Buffer.alloc(300) },
            ],
            opts,
          );
          await expect(grew).rejects.toMatchObject({ code: "FLEDGE_CHANGED" });
          const shrank = archiveToBuffer(
            [
              { path: "f", type: "file", mode: 0o644, file, size: 12 },
              { path: "g", type: "file", mode: 0o644, data: Buffer.alloc(300) },
            ],
            opts,
          );
          await expect(shrank).rejects.toMatchObject({ code: "FLEDGE_CHANGED" });
        }
      }
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });
});

describe("ranges of host files (file + offset)", () => {
  it("archives byte ranges exactly like the same bytes given as data, small and larger than a segment, with and without a cache", async () => {
    const dir = await mkdtemp(join(tmpdir(), "fledge-range-"));
    try {
      const blob = Buffer.alloc(300000);
      for (let i = 0; i < blob.length; i++) blob[i] = (i * 7 + (i >> 9)) & 0xff;
      const host = join(dir, "layer.tar");
      await writeFile(host, blob);
      const ranges = [
        [0, 10],
        [513, 4000],
        [10000, 150000], // larger than a segment below: streamed on its own
        [299990, 10], // ends exactly at the end of the file
        [5, 0],
      ] as const;
      const asRanges: CpioEntry[] = ranges.map(([offset, size], i) => ({ path: `r/${i}`, type: "file", mode: 0o644, file: host, offset, size }));
      const asData: CpioEntry[] = ranges.map(([offset, size], i) => ({ path: `r/${i}`, type: "file", mode: 0o644, data: blob.subarray(offset, offset + size) }));
      for (const compressor of ["none", "gzip", "zstd"]) {
        for (const cacheDir of [undefined, join(dir, "cache")]) {
          const opts = { mtime: MTIME, compressor, workers: 1, cacheDir, segment: { min: 4096, max: 65536 } };
          const want = await archiveToBuffer(asData, { ...opts, cacheDir: undefined });
          expect((await archiveToBuffer(asRanges, opts)).equals(want)).toBe(true);
          // Twice: the second build finds the segments in the cache.
          expect((await archiveToBuffer(asRanges, opts)).equals(want)).toBe(true);
        }
      }
      // A range past the end of its file fails, naming the file and the range.
      await expect(archiveToBuffer([{ path: "x", type: "file", mode: 0o644, file: host, offset: 299000, size: 2000 }], { mtime: MTIME, compressor: "gzip" })).rejects.toThrow(/ends before its range 299000\+2000/);
      await refuses([{ path: "x", type: "file", mode: 0o644, file: host, offset: 3 }], "FLEDGE_DATA", /its size must be given/);
      await refuses([{ path: "x", type: "file", mode: 0o644, data: Buffer.alloc(1), offset: 3, size: 1 }], "FLEDGE_DATA", /offset but no host file/);
      await refuses([{ path: "x", type: "file", mode: 0o644, file: host, offset: -1, size: 1 }], "FLEDGE_DATA", /not a whole number/);
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  }, 60000);
});
