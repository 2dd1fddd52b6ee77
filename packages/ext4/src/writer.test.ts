import { execFileSync, spawnSync } from "node:child_process";
import { createHash } from "node:crypto";
import { appendFileSync, mkdtempSync, readFileSync, rmSync, statSync, truncateSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { Ext4Error, writeExt4, type Ext4Entry, type Ext4Options } from "./index.js";

// Real parts: e2fsprogs' e2fsck and debugfs read what the writer wrote.
const E2FSCK = "/usr/sbin/e2fsck";
const DEBUGFS = "/usr/sbin/debugfs";

let dir: string;
beforeAll(() => {
  dir = mkdtempSync(join(tmpdir(), "fledge-ext4-"));
});
afterAll(() => rmSync(dir, { recursive: true, force: true }));

let n = 0;
const img = () => join(dir, `img-${n++}.ext4`);

function fsck(path: string): { status: number | null; out: string } {
  const r = spawnSync(E2FSCK, ["-fn", path], { encoding: "utf8" });
  return { status: r.status, out: r.stdout + r.stderr };
}

function debugfs(path: string, cmd: string): string {
  return execFileSync(DEBUGFS, ["-R", cmd, path], { encoding: "utf8", stdio: ["ignore", "pipe", "ignore"] });
}

function dumpFile(path: string, inside: string): Buffer {
  const to = join(dir, `dump-${n++}`);
  execFileSync(DEBUGFS, ["-R", `dump ${inside} ${to}`, path], { stdio: "ignore" });
  return readFileSync(to);
}

const T = 1704067200;

function sample(): Ext4Entry[] {
  const host = join(dir, "host-file");
  writeFileSync(host, Buffer.alloc(70_000, 0x5a));
  return [
    { path: "bin", type: "dir", mode: 0o755 },
    { path: "bin/tool", type: "file", mode: 0o755, file: host },
    { path: "bin/sh", type: "symlink", mode: 0o777, target: "tool" },
    { path: "etc/motd", type: "file", mode: 0o644, data: Buffer.from("hello\n"), uid: 1000, gid: 100 },
    { path: "etc/motd-link", type: "file", mode: 0o644, linkTo: "etc/motd" },
    { path: "etc/far", type: "symlink", mode: 0o777, target: "/" + "long/".repeat(30) + "target" },
    { path: "dev/console", type: "char", mode: 0o600, major: 5, minor: 1 },
    { path: "dev/nvme", type: "block", mode: 0o660, major: 259, minor: 70000, gid: 6 },
    { path: "run/fifo", type: "fifo", mode: 0o644 },
    { path: "run/sock", type: "socket", mode: 0o755 },
    { path: "tmp", type: "dir", mode: 0o1777 },
    { path: "usr/bin/su", type: "file", mode: 0o4755, data: Buffer.from("#!/bin/sh\n") },
    { path: "home/big-ids", type: "file", mode: 0o600, data: Buffer.from("x"), uid: 100000, gid: 200000 },
    { path: "empty", type: "file", mode: 0o644, data: new Uint8Array(0) },
    {
      path: "streamed",
      type: "file",
      mode: 0o644,
      size: 10,
      stream: async function* () {
        yield Buffer.from("01234");
        yield Buffer.from("56789");
      },
    },
  ];
}

describe("writeExt4", () => {
  for (const opts of [
    { name: "journal and metadata_csum (the default)", o: {} },
    { name: "no journal", o: { journal: false } },
    { name: "no metadata_csum", o: { metadataCsum: false } },
  ] as { name: string; o: Partial<Ext4Options> }[]) {
    it(`writes an image e2fsck finds clean: ${opts.name}`, async () => {
      const out = img();
      const r = await writeExt4(sample(), out, { mtime: T, freeBytes: 4 << 20, ...opts.o });
      const f = fsck(out);
      expect(f.out).toContain("Pass 5");
      expect(f.status, f.out).toBe(0);
      expect(statSync(out).size).toBe(r.size);
      expect(r.sha256).toBe(createHash("sha256").update(readFileSync(out)).digest("hex"));
    });
  }

  it("keeps owners, modes, devices, symlinks, hardlinks and times from the entries, not from host files", async () => {
    const out = img();
    await writeExt4(sample(), out, { mtime: T });
    const root = debugfs(out, "ls -l /");
    expect(root).toMatch(/\s11\s+40700 \(2\)\s+0\s+0\s+16384 .* lost\+found/);
    const motd = debugfs(out, "stat /etc/motd");
    expect(motd).toContain("User:  1000   Group:   100");
    expect(motd).toContain("Links: 2");
    expect(motd).toMatch(/mtime: 0x65920080:00000000/);
    expect(debugfs(out, "stat /etc/motd-link")).toContain(motd.match(/Inode: (\d+)/)![0]);
    expect(debugfs(out, "stat /home/big-ids")).toMatch(/User: 100000\s+Group: 200000/);
    expect(debugfs(out, "stat /usr/bin/su")).toContain("Mode:  04755");
    expect(debugfs(out, "stat /tmp")).toContain("Mode:  01777");
    expect(debugfs(out, "stat /dev/console")).toContain("Device major/minor number: 05:01");
    expect(debugfs(out, "stat /dev/nvme")).toContain("(New-style) Device major/minor number: 259:70000");
    expect(debugfs(out, "stat /run/fifo")).toContain("Type: FIFO");
    expect(debugfs(out, "stat /run/sock")).toContain("Type: socket");
    expect(debugfs(out, "stat /bin/sh")).toContain('Fast link dest: "tool"');
    expect(debugfs(out, "stat /bin/tool")).toContain("User:     0   Group:     0");
    expect(dumpFile(out, "/bin/tool").equals(Buffer.alloc(70_000, 0x5a))).toBe(true);
    expect(dumpFile(out, "/etc/far").toString()).toBe("/" + "long/".repeat(30) + "target");
    expect(debugfs(out, "stat /etc/far")).toMatch(/Size: 157/);
    expect(dumpFile(out, "/streamed").toString()).toBe("0123456789");
    expect(dumpFile(out, "/empty").length).toBe(0);
  });

  it("gives the same bytes for the same entries, in any order, and other bytes when anything changes", async () => {
    const a = await writeExt4(sample(), img(), { mtime: T, freeBytes: 1 << 20 });
    const b = await writeExt4(sample().reverse(), img(), { mtime: T, freeBytes: 1 << 20 });
    expect(b.sha256).toBe(a.sha256);
    expect(b.uuid).toBe(a.uuid);
    const later = await writeExt4(sample(), img(), { mtime: T + 1, freeBytes: 1 << 20 });
    expect(later.sha256).not.toBe(a.sha256);
    expect(later.uuid).not.toBe(a.uuid);
    const edited = sample();
    edited[3] = { ...edited[3]!, data: Buffer.from("hellO\n") };
    const c = await writeExt4(edited, img(), { mtime: T, freeBytes: 1 << 20 });
    expect(c.uuid).not.toBe(a.uuid);
    const pinned = await writeExt4(sample(), img(), { mtime: T, freeBytes: 1 << 20, uuid: "01234567-89ab-cdef-0123-456789abcdef" });
    expect(pinned.uuid).toBe("01234567-89ab-cdef-0123-456789abcdef");
  });

  it("leaves the free space and inodes asked for, and holes instead of zeros unless preallocate", async () => {
    const out = img();
    const r = await writeExt4(sample(), out, { mtime: T, freeBytes: 64 << 20, freeInodes: 5000 });
    expect(r.freeBlocks * 4096).toBeGreaterThanOrEqual(64 << 20);
    expect(r.freeInodes).toBeGreaterThanOrEqual(5000);
    expect(debugfs(out, "stats")).toContain(`Free blocks:              ${r.freeBlocks}`);
    expect(statSync(out).blocks * 512).toBeLessThan(r.size / 4);
    const full = img();
    const p = await writeExt4(sample(), full, { mtime: T, freeBytes: 64 << 20, freeInodes: 5000, preallocate: true });
    expect(p.sha256).toBe(r.sha256);
    expect(statSync(full).blocks * 512).toBeGreaterThanOrEqual(p.size);
  });

  it("writes many groups, superblock copies and extent trees deeper than the inode", async () => {
    const out = img();
    const entries: Ext4Entry[] = [{ path: "frag", type: "file", mode: 0o644, data: Buffer.alloc(400 * 4096 + 5, 1) }];
    for (let i = 0; i < 2000; i++) entries.push({ path: `d${i % 7}/file-${i}-${"n".repeat(i % 200)}`, type: "file", mode: 0o644, data: Buffer.from(String(i)) });
    const r = await writeExt4(entries, out, { mtime: T, freeBytes: 140 << 20, maxExtentBlocks: 1 });
    expect(r.blocks).toBeGreaterThan(32768);
    const f = fsck(out);
    expect(f.status, f.out).toBe(0);
    expect(debugfs(out, "stat /frag")).toMatch(/\(ETB0\)/);
    expect(dumpFile(out, "/frag").equals(Buffer.alloc(400 * 4096 + 5, 1))).toBe(true);
    expect(execFileSync("/usr/sbin/dumpe2fs", [out], { encoding: "utf8", stdio: ["ignore", "pipe", "ignore"] })).toContain("Backup superblock at 32768, Group descriptors at 32769-32769");
    expect(
      debugfs(out, "ls /d3")
        .split(/\s+/)
        .filter((s) => s.startsWith("file-")).length,
    ).toBe(286); // i % 7 === 3 for i < 2000
  }, 60_000);

  it("creates missing parents, and refuses what ext4 cannot hold, naming the entry", async () => {
    const out = img();
    await writeExt4([{ path: "/a/b/c", type: "file", mode: 0o644, data: Buffer.from("c") }], out, { mtime: T });
    expect(debugfs(out, "stat /a/b")).toContain("Mode:  0755");
    const bad = async (entries: Ext4Entry[], code: string, msg: RegExp, o: Partial<Ext4Options> = {}) => {
      const p = img();
      const err = await writeExt4(entries, p, { mtime: T, ...o }).catch((e) => e);
      expect(err).toBeInstanceOf(Ext4Error);
      expect(err.code).toBe(code);
      expect(err.message).toMatch(msg);
    };
    await bad(
      [
        { path: "x", type: "file", mode: 0o644, data: Buffer.from("") },
        { path: "/x/", type: "dir", mode: 0o755 },
      ],
      "EDUP",
      /same path: \/x/,
    );
    await bad(
      [
        { path: "f", type: "file", mode: 0o644, data: Buffer.from("") },
        { path: "f/g", type: "file", mode: 0o644, data: Buffer.from("") },
      ],
      "ENOTDIR",
      /\/f is a file/,
    );
    await bad([{ path: "n".repeat(256), type: "dir", mode: 0o755 }], "ENAMETOOLONG", /256 bytes/);
    await bad([{ path: "a/../b", type: "dir", mode: 0o755 }], "EPATH", /"\." or "\.\."/);
    await bad([{ path: "lost+found", type: "file", mode: 0o644, data: Buffer.from("") }], "ETYPE", /lost\+found must be a directory/);
    await bad([{ path: "l", type: "file", mode: 0o644, linkTo: "nowhere" }], "ELINK", /not a regular file/);
    await bad([{ path: "d", type: "char", mode: 0o600, major: 5 }], "EDEV", /device numbers/);
    await bad([{ path: "m", type: "file", mode: 0o10000, data: Buffer.from("") }], "EMODE", /permission bits/);
    await bad([{ path: "gone", type: "file", mode: 0o644, file: join(dir, "does-not-exist") }], "EREAD", /cannot read .*does-not-exist/);
    await bad([{ path: "s", type: "symlink", mode: 0o777, target: "t".repeat(4096) }], "ETARGET", /at most 4095/);
    await bad([], "EOPTION", /label is at most 16 bytes/, { label: "a-very-long-volume-label" });
  });

  it("fails, naming the file, when a host file changes size while the image is written", async () => {
    const grows = join(dir, "grows");
    writeFileSync(grows, "1234");
    const e: Ext4Entry = { path: "g", type: "file", mode: 0o644, file: grows, size: 4 };
    appendFileSync(grows, "5");
    const err = await writeExt4([e], img(), { mtime: T }).catch((x) => x);
    expect(err.code).toBe("ECHANGED");
    expect(err.message).toContain(`${grows} (for /g) changed size`);
    truncateSync(grows, 2);
    const err2 = await writeExt4([e], img(), { mtime: T }).catch((x) => x);
    expect(err2.message).toContain("4 → 2 bytes");
  });

  it("reads a byte range of a host file (offset + size), as layer tars are read in place", async () => {
    const layer = join(dir, "layer.tar");
    writeFileSync(layer, "HEADER....payload-bytes....TRAILER");
    const out = img();
    await writeExt4([{ path: "p", type: "file", mode: 0o644, file: layer, offset: 10, size: 13 }], out, { mtime: T });
    expect(dumpFile(out, "/p").toString()).toBe("payload-bytes");
    const err = await writeExt4([{ path: "p", type: "file", mode: 0o644, file: layer, offset: 30, size: 13 }], img(), { mtime: T }).catch((e) => e);
    expect(err.code).toBe("ECHANGED");
  });

  it("refuses a FIFO where a regular file was listed, without hanging", async () => {
    const fifo = join(dir, "fifo");
    execFileSync("mkfifo", [fifo]);
    const err = await writeExt4([{ path: "f", type: "file", mode: 0o644, file: fifo, size: 10 }], img(), { mtime: T }).catch((e) => e);
    expect(err.code).toBe("EREAD");
    expect(err.message).toContain("is not a regular file");
  });

  it("never overwrites an existing file", async () => {
    const out = img();
    writeFileSync(out, "precious");
    await expect(writeExt4([], out, { mtime: T })).rejects.toThrow(/EEXIST/);
    expect(readFileSync(out, "utf8")).toBe("precious");
  });

  it("stores times past 2038 (SOURCE_DATE_EPOCH up to 2^32 - 1)", async () => {
    const out = img();
    await writeExt4([{ path: "f", type: "file", mode: 0o644, data: Buffer.from("") }], out, { mtime: 0xffffffff });
    expect(debugfs(out, "stat /f")).toMatch(/mtime: 0xffffffff:00000001 -- .*2106/);
  });
});
