import { execFileSync } from "node:child_process";
import { createHash } from "node:crypto";
import { chmodSync, linkSync, mkdirSync, mkdtempSync, readFileSync, rmSync, symlinkSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";
import { gzipSync } from "node:zlib";
import { zstd } from "@fledge/cpio";
import { testBuild } from "@fledge/core/testing";
import { pack } from "tar-stream";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import TarballPlugin, { imageName, requestProblems } from "./index.js";

type Member = {
  name: string;
  type?: "file" | "directory" | "symlink" | "link" | "character-device" | "block-device" | "fifo";
  body?: string | Buffer;
  mode?: number;
  uid?: number;
  gid?: number;
  linkname?: string;
  devmajor?: number;
  devminor?: number;
};

/** A tar archive made with tar-stream's packer (ustar/pax, as GNU tar and bsdtar write them). */
async function tar(members: Member[]): Promise<Buffer> {
  const p = pack();
  const chunks: Buffer[] = [];
  p.on("data", (c: unknown) => void chunks.push(c as Buffer));
  const done = new Promise<void>((r) => p.on("end", () => r()));
  for (const m of members) {
    const { body, ...header } = m;
    await new Promise<void>((resolve, reject) => p.entry({ mode: 0o644, uid: 0, gid: 0, mtime: new Date(1_600_000_000_000), ...header }, body ?? "", (err) => (err ? reject(err) : resolve())));
  }
  p.finalize();
  await done;
  return Buffer.concat(chunks);
}

const HEAD = 'version = "1"\n[init]\nnone = true\n[source]\nbusybox = false\n[mappings]\n"./init" = "/init"\n';
const INIT = { content: "#!/bin/sh\n", mode: 0o755 };

const SAMPLE: Member[] = [
  { name: "./", type: "directory", mode: 0o755 },
  { name: "./usr/bin/", type: "directory", mode: 0o755 },
  { name: "./usr/bin/tool", body: "#!/bin/sh\necho tool\n", mode: 0o4755, uid: 1000, gid: 1000 },
  { name: "./usr/bin/tool-again", type: "link", linkname: "./usr/bin/tool" },
  { name: "./usr/bin/t", type: "symlink", linkname: "tool" },
  { name: "./etc/passwd-link", type: "symlink", linkname: "/etc/passwd" },
  { name: "./dev/ttyX", type: "character-device", devmajor: 4, devminor: 64, mode: 0o620 },
  { name: "./dev/sdz", type: "block-device", devmajor: 8, devminor: 0, mode: 0o660 },
  { name: "./run/pipe", type: "fifo", mode: 0o600 },
  { name: "/abs/name", body: "absolute names land under the root\n" },
  { name: "big.bin", body: Buffer.alloc(3 * 1024 * 1024, 0x5a) },
];

describe("@fledge/plugin-tarball", () => {
  for (const [what, compress] of [
    [".tar", (b: Buffer) => b],
    [".tar.gz", (b: Buffer) => gzipSync(b)],
    [".tar.zst", async (b: Buffer) => Buffer.from(await zstd.compress!(b, 3))],
  ] as const) {
    it(`${what} from a local path: files, modes with setuid, owners, hard links, symlinks kept, devices, fifos`, async () => {
      const t = await testBuild({
        plugins: [new TarballPlugin()],
        config: HEAD + '[[overlay]]\nkind = "tarball"\npath = "./rootfs' + what + '"\n',
        files: { init: INIT, [`rootfs${what}`]: await compress(await tar(SAMPLE)) },
      });
      try {
        expect(await t.text("/usr/bin/tool")).toBe("#!/bin/sh\necho tool\n");
        expect(t.entry("/usr/bin/tool")).toMatchObject({ type: "file", mode: 0o4755, uid: 1000, gid: 1000, origin: `tarball:./rootfs${what}` });
        expect(t.entry("/usr/bin/tool-again")).toMatchObject({ type: "hardlink", target: "/usr/bin/tool" });
        expect(await t.text("/usr/bin/tool-again")).toBe("#!/bin/sh\necho tool\n");
        expect(t.entry("/usr/bin/t")).toMatchObject({ type: "symlink", target: "tool" });
        expect(t.entry("/etc/passwd-link")).toMatchObject({ type: "symlink", target: "/etc/passwd" });
        expect(t.entry("/dev/ttyX")).toMatchObject({ type: "char", major: 4, minor: 64, mode: 0o620 });
        expect(t.entry("/dev/sdz")).toMatchObject({ type: "block", major: 8, minor: 0 });
        expect(t.entry("/run/pipe")).toMatchObject({ type: "fifo", mode: 0o600 });
        expect(await t.text("/abs/name")).toBe("absolute names land under the root\n");
        expect((await t.read("/big.bin")).equals(Buffer.alloc(3 * 1024 * 1024, 0x5a))).toBe(true);
        expect(t.entry("/init")).toMatchObject({ origin: "mapping:./init" });
      } finally {
        await t.cleanup();
      }
    });
  }

  it('dest, strip_components and owner = "root"', async () => {
    const t = await testBuild({
      plugins: [new TarballPlugin()],
      config: HEAD + '[[overlay]]\nkind = "tarball"\npath = "./app.tar"\ndest = "/opt/app"\nstrip_components = 1\nowner = "root"\n',
      files: {
        init: INIT,
        "app.tar": await tar([
          { name: "app-1.0/", type: "directory" },
          { name: "app-1.0/bin/app", body: "x", mode: 0o755, uid: 501, gid: 20 },
          { name: "app-1.0/lib/l.so", type: "link", linkname: "app-1.0/bin/app" },
        ]),
      },
    });
    try {
      expect(t.entry("/opt/app/bin/app")).toMatchObject({ type: "file", mode: 0o755, uid: 0, gid: 0 });
      expect(t.entry("/opt/app/lib/l.so")).toMatchObject({ type: "hardlink", target: "/opt/app/bin/app" });
      expect(t.paths().some((p) => p.includes("app-1.0"))).toBe(false);
    } finally {
      await t.cleanup();
    }
  });

  it("the artifact is byte-identical whatever the archive's timestamps (they are the build's)", async () => {
    const sha = async (when: number) => {
      const t = await testBuild({
        plugins: [new TarballPlugin()],
        mode: "build",
        config: HEAD + '[[overlay]]\nkind = "tarball"\npath = "./r.tar"\n',
        files: { init: INIT, "r.tar": await tar([{ name: "a", body: "a", mtime: new Date(when) } as Member]) },
      });
      try {
        return t.result!.artifact.sha256;
      } finally {
        await t.cleanup();
      }
    };
    expect(await sha(1_000_000_000_000)).toBe(await sha(1_700_000_000_000));
  });

  it("a member that would leave the image root is refused, and so is a write through a symlink in the archive", async () => {
    const escaping = testBuild({ plugins: [new TarballPlugin()], config: HEAD + '[[overlay]]\nkind = "tarball"\npath = "./e.tar"\n', files: { init: INIT, "e.tar": await tar([{ name: "../escape", body: "x" }]) } });
    await expect(escaping).rejects.toMatchObject({
      name: "PluginError",
      plugin: "@fledge/plugin-tarball",
      message: expect.stringContaining('overlay[0] (./e.tar): the member "../escape" would leave the image root'),
      cause: expect.objectContaining({ code: "FLEDGE_TARBALL_ESCAPE" }),
    });
    const through = testBuild({
      plugins: [new TarballPlugin()],
      config: HEAD + '[[overlay]]\nkind = "tarball"\npath = "./s.tar"\n',
      files: {
        init: INIT,
        "s.tar": await tar([
          { name: "etc", type: "symlink", linkname: "/host-etc" },
          { name: "etc/passwd", body: "pwned" },
        ]),
      },
    });
    await expect(through).rejects.toThrow(/overlay\[0\] \(\.\/s\.tar\): the member "etc\/passwd": cannot write \/etc\/passwd: \/etc is a symlink \(to \/host-etc\) in the image/);
  });

  it("xz, bzip2 and garbage are clear errors", async () => {
    const xz = Buffer.from([0xfd, 0x37, 0x7a, 0x58, 0x5a, 0x00, 1, 2, 3]);
    await expect(testBuild({ plugins: [new TarballPlugin()], config: HEAD + '[[overlay]]\nkind = "tarball"\npath = "./x.tar.xz"\n', files: { init: INIT, "x.tar.xz": xz } })).rejects.toThrow(
      "overlay[0] (./x.tar.xz) is xz-compressed",
    );
    await expect(testBuild({ plugins: [new TarballPlugin()], config: HEAD + '[[overlay]]\nkind = "tarball"\npath = "./g.tar"\n', files: { init: INIT, "g.tar": Buffer.alloc(1024, 7) } })).rejects.toThrow(
      /overlay\[0\] \(\.\/g\.tar\) is not a readable tar archive/,
    );
  });

  it("its [[overlay]] tables are checked in pre-flight, with positions", async () => {
    const bad = testBuild({
      plugins: [new TarballPlugin()],
      config: HEAD + '[[overlay]]\nkind = "tarball"\nurl = "ftp://x/y.tar"\nstrip = 1\n[[overlay]]\nkind = "tarball"\npath = "./missing.tar"\n',
      files: { init: INIT },
    });
    const e = await bad.then(
      () => undefined,
      (err: { issues: { keyPath: string; line?: number; message: string }[] }) => err,
    );
    expect(e!.issues.map((i) => `${i.line} ${i.keyPath}: ${i.message}`)).toEqual([
      '10 overlay[0].url: "ftp://x/y.tar" is not an http(s) URL',
      "11 overlay[0].strip: unknown key `strip` for a tarball source",
      expect.stringMatching(/^14 overlay\[1\]\.path: .*missing\.tar does not exist$/),
    ]);
    expect(requestProblems({ path: "a", url: "https://x" })).toContainEqual(["", "give exactly one of `path` (a host file) and `url`", expect.any(String)]);
    expect(imageName("./a/./b/", "/", 0, "x")).toBe("/a/b");
    expect(imageName("a/b", "/opt", 1, "x")).toBe("/opt/b");
    expect(imageName("a", "/", 1, "x")).toBeUndefined();
  });

  it("a URL source goes through the inputs API: verified against its sha256", async () => {
    const body = await tar([{ name: "hello", body: "from the url\n" }]);
    const sha = createHash("sha256").update(body).digest("hex");
    const t = await testBuild({
      plugins: [new TarballPlugin()],
      config: HEAD + `[[overlay]]\nkind = "tarball"\nurl = "https://example.test/r.tar"\nsha256 = "${sha}"\n`,
      files: { init: INIT },
      downloads: { "https://example.test/r.tar": body },
    });
    try {
      expect(await t.text("/hello")).toBe("from the url\n");
      expect(t.entry("/hello")?.origin).toBe("tarball:https://example.test/r.tar");
    } finally {
      await t.cleanup();
    }
    await expect(
      testBuild({
        plugins: [new TarballPlugin()],
        config: HEAD + `[[overlay]]\nkind = "tarball"\nurl = "https://example.test/r.tar"\nsha256 = "${"0".repeat(64)}"\n`,
        files: { init: INIT },
        downloads: { "https://example.test/r.tar": body },
      }),
    ).rejects.toMatchObject({ code: "FLEDGE_OFFLINE" });
  });
});

describe("archives made by GNU tar and bsdtar", () => {
  const LONG = `deep/${"d".repeat(90)}/${"n".repeat(80)}.txt`;
  let src: string;
  let work: string;
  beforeAll(() => {
    work = mkdtempSync(join(tmpdir(), "fledge-tarball-real-"));
    src = join(work, "src");
    mkdirSync(join(src, "usr/bin"), { recursive: true });
    mkdirSync(join(src, dirname(LONG)), { recursive: true });
    mkdirSync(join(src, "empty"));
    writeFileSync(join(src, "usr/bin/tool"), "#!/bin/sh\necho tool\n");
    chmodSync(join(src, "usr/bin/tool"), 0o4755);
    linkSync(join(src, "usr/bin/tool"), join(src, "usr/bin/tool-again"));
    symlinkSync("tool", join(src, "usr/bin/t"));
    symlinkSync("/etc/shadow", join(src, "shadow-link"));
    writeFileSync(join(src, LONG), "a long name\n");
    writeFileSync(join(src, "big.bin"), Buffer.alloc(3 * 1024 * 1024 + 17, 0x5a));
    // devices and a fifo without root or mknod: bsdtar reads them from an mtree spec
    writeFileSync(
      join(work, "devices.mtree"),
      "#mtree\n./dev type=dir mode=0755\n./dev/ttyX type=char device=native,4,64 mode=0620 uid=0 gid=5\n./dev/sdz type=block device=native,8,0 mode=0660\n./run type=dir mode=0755\n./run/pipe type=fifo mode=0600\n",
    );
    // GNU format (././@LongLink for the long name), numeric owner 1000:1000
    execFileSync("tar", ["--format=gnu", "--owner=1000", "--group=1000", "--numeric-owner", "-czf", join(work, "gnu.tar.gz"), "-C", src, "."]);
    execFileSync("tar", ["--format=gnu", "--owner=1000", "--group=1000", "--numeric-owner", "-cf", join(work, "gnu.tar"), "-C", src, "."]);
    // pax format (a path record for the long name), zstd, with the mtree devices
    execFileSync("bsdtar", ["--format=pax", "--uid", "1000", "--gid", "1000", "--zstd", "-cf", join(work, "bsd.tar.zst"), "-C", src, ".", `@${join(work, "devices.mtree")}`]);
  });
  afterAll(() => rmSync(work, { recursive: true, force: true }));

  for (const name of ["gnu.tar", "gnu.tar.gz", "bsd.tar.zst"]) {
    it(`${name}: files, the long name, setuid, owners, the hard link as one inode, symlinks as written`, async () => {
      const t = await testBuild({
        plugins: [new TarballPlugin()],
        mode: "build",
        config: HEAD + `[[overlay]]\nkind = "tarball"\npath = "./${name}"\n`,
        files: { init: INIT, [name]: readFileSync(join(work, name)) },
      });
      try {
        expect(await t.text("/usr/bin/tool")).toBe("#!/bin/sh\necho tool\n");
        expect(await t.text("/usr/bin/tool-again")).toBe("#!/bin/sh\necho tool\n");
        // tar stores the name it meets first as the file, the other as a link to it (directory order)
        const [data, link] = t.entry("/usr/bin/tool")!.type === "file" ? ["/usr/bin/tool", "/usr/bin/tool-again"] : ["/usr/bin/tool-again", "/usr/bin/tool"];
        expect(t.entry(data!)).toMatchObject({ type: "file", mode: 0o4755, uid: 1000, gid: 1000 });
        expect(t.entry(link!)).toMatchObject({ type: "hardlink", target: data });
        expect(await t.text(`/${LONG}`)).toBe("a long name\n");
        expect((await t.read("/big.bin")).equals(Buffer.alloc(3 * 1024 * 1024 + 17, 0x5a))).toBe(true);
        expect(t.entry("/usr/bin/t")).toMatchObject({ type: "symlink", target: "tool" });
        expect(t.entry("/shadow-link")).toMatchObject({ type: "symlink", target: "/etc/shadow" });
        expect(t.entry("/empty")).toMatchObject({ type: "dir" });
        // one of the two names is the link (tar stores the second one it met as a link)
        const a = t.archive!.find((e) => e.path === "usr/bin/tool")!;
        const b = t.archive!.find((e) => e.path === "usr/bin/tool-again")!;
        expect(a.ino).toBe(b.ino);
        expect(a.nlink).toBe(2);
        expect(a.mode & 0o7777).toBe(0o4755);
        expect(b.mode & 0o7777).toBe(0o4755);
        if (name === "bsd.tar.zst") {
          expect(t.entry("/dev/ttyX")).toMatchObject({ type: "char", major: 4, minor: 64, mode: 0o620, uid: 0, gid: 5 });
          expect(t.entry("/dev/sdz")).toMatchObject({ type: "block", major: 8, minor: 0, mode: 0o660 });
          expect(t.entry("/run/pipe")).toMatchObject({ type: "fifo", mode: 0o600 });
        }
      } finally {
        await t.cleanup();
      }
    });
  }

  it("GNU tar -P with absolute and .. names: absolute names land under the root, .. is refused", async () => {
    execFileSync("tar", ["-P", "--transform", "s,^usr,/abs,", "-cf", join(work, "abs.tar"), "-C", src, "usr/bin/tool"]);
    const t = await testBuild({ plugins: [new TarballPlugin()], config: HEAD + '[[overlay]]\nkind = "tarball"\npath = "./abs.tar"\n', files: { init: INIT, "abs.tar": readFileSync(join(work, "abs.tar")) } });
    try {
      expect(execFileSync("tar", ["-tPf", join(work, "abs.tar")], { encoding: "utf8" })).toContain("/abs/bin/tool");
      expect(await t.text("/abs/bin/tool")).toBe("#!/bin/sh\necho tool\n");
    } finally {
      await t.cleanup();
    }
    execFileSync("tar", ["-P", "--transform", "s,^usr,../../usr,", "-cf", join(work, "dots.tar"), "-C", src, "usr/bin/tool"]);
    expect(execFileSync("tar", ["-tPf", join(work, "dots.tar")], { encoding: "utf8" })).toContain("../../usr/bin/tool");
    await expect(
      testBuild({ plugins: [new TarballPlugin()], config: HEAD + '[[overlay]]\nkind = "tarball"\npath = "./dots.tar"\n', files: { init: INIT, "dots.tar": readFileSync(join(work, "dots.tar")) } }),
    ).rejects.toMatchObject({
      cause: expect.objectContaining({ code: "FLEDGE_TARBALL_ESCAPE" }),
    });
  });
});
