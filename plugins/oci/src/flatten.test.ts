import { describe, expect, it } from "vitest";
import { ImageFs, type FsNode } from "./flatten.js";
import { indexTar } from "./tar.js";
import { makeTar, type TestMember } from "./test/tar.js";

/** Applies test layers and returns path → short description, plus file contents. */
async function flatten(...layers: TestMember[][]) {
  const fs = new ImageFs();
  const tars: Buffer[] = [];
  for (const [i, members] of layers.entries()) {
    const tar = await makeTar(members);
    tars.push(tar);
    fs.apply(i, { name: `L${i}`, entries: await indexTar(tar) });
  }
  const content = (n: FsNode) => (n.type === "file" ? tars[n.inode.data.layer]!.subarray(n.inode.data.offset, n.inode.data.offset + n.inode.data.size).toString() : undefined);
  const paths: Record<string, string> = {};
  for (const [p, n] of fs.walk()) paths[p] = n.type === "file" ? `file:${content(n)}` : n.type === "symlink" ? `-> ${n.target}` : n.type;
  return { fs, paths };
}

describe("ImageFs: the OCI changeset rules", () => {
  it("a whiteout deletes a lower file or directory tree; the same layer can put a new one there", async () => {
    const { paths } = await flatten(
      [
        { name: "etc/", type: "directory" },
        { name: "etc/a", data: "a0" },
        { name: "etc/b", data: "b0" },
        { name: "opt/", type: "directory" },
        { name: "opt/tree/", type: "directory" },
        { name: "opt/tree/x", data: "x" },
      ],
      [
        { name: "etc/.wh.a", data: "" },
        { name: "opt/.wh.tree", data: "" },
        // stream order does not matter: the new file comes *before* its whiteout
        { name: "etc/b", data: "b1" },
        { name: "etc/.wh.b", data: "" },
      ],
    );
    expect(paths).toEqual({ "/etc": "dir", "/opt": "dir", "/etc/b": "file:b1" });
  });

  it("an opaque directory hides every lower child and keeps the layer's own, whatever their order", async () => {
    const { paths } = await flatten(
      [
        { name: "app/", type: "directory" },
        { name: "app/old1", data: "1" },
        { name: "app/sub/", type: "directory" },
        { name: "app/sub/old2", data: "2" },
        { name: "keep", data: "k" },
      ],
      [
        { name: "app/", type: "directory", mode: 0o700 },
        { name: "app/new", data: "n" },
        { name: "app/.wh..wh..opq", data: "" },
      ],
    );
    expect(paths).toEqual({ "/app": "dir", "/keep": "file:k", "/app/new": "file:n" });
  });

  it("whiteouts never apply to their own layer's entries, and aufs bookkeeping is ignored", async () => {
    const { paths } = await flatten([
      { name: "x", data: "x" },
      { name: ".wh.x", data: "" },
      { name: ".wh..wh.plnk/", type: "directory" },
    ]);
    expect(paths).toEqual({ "/x": "file:x" });
  });

  it("directories merge (new metadata, children kept); a different type replaces the whole tree", async () => {
    const { fs, paths } = await flatten(
      [
        { name: "d/", type: "directory", mode: 0o755 },
        { name: "d/f", data: "f" },
        { name: "e/", type: "directory" },
        { name: "e/g", data: "g" },
      ],
      [
        { name: "d/", type: "directory", mode: 0o1777, uid: 5 },
        { name: "e", type: "symlink", linkname: "d" },
      ],
    );
    expect(paths).toEqual({ "/d": "dir", "/e": "-> d", "/d/f": "file:f" });
    expect(fs.lookup(["d"])).toMatchObject({ type: "dir", mode: 0o1777, uid: 5 });
  });

  it("hardlinks share one inode; replacing one name later leaves the other with the old content", async () => {
    const { fs, paths } = await flatten(
      [
        { name: "bin/", type: "directory" },
        { name: "bin/busybox", data: "BB", mode: 0o4755 },
        { name: "bin/sh", type: "link", linkname: "bin/busybox" },
        { name: "bin/ls", type: "link", linkname: "./bin/busybox" },
      ],
      [{ name: "bin/busybox", data: "NEW" }],
    );
    expect(paths).toEqual({ "/bin": "dir", "/bin/busybox": "file:NEW", "/bin/ls": "file:BB", "/bin/sh": "file:BB" });
    const sh = fs.lookup(["bin", "sh"]) as Extract<FsNode, { type: "file" }>;
    const ls = fs.lookup(["bin", "ls"]) as Extract<FsNode, { type: "file" }>;
    expect(sh.inode).toBe(ls.inode);
    expect(sh.inode.mode).toBe(0o4755);
    const groups = fs.linkGroups();
    expect(groups.get(sh.inode)).toBe(0);
    expect(groups.size).toBe(1);
  });

  it("keeps device nodes, fifos, setuid bits and owners as the layer has them", async () => {
    const { fs } = await flatten([
      { name: "dev/", type: "directory" },
      { name: "dev/tty", type: "character-device", devmajor: 5, devminor: 0, mode: 0o666, uid: 0, gid: 5 },
      { name: "dev/loop0", type: "block-device", devmajor: 7, devminor: 0, mode: 0o660, gid: 6 },
      { name: "run/", type: "directory" },
      { name: "run/ctl", type: "fifo", mode: 0o620, uid: 1000, gid: 1000 },
      { name: "usr/bin/", type: "directory" },
      { name: "usr/bin/su", data: "su", mode: 0o4755 },
      { name: "home/u/", type: "directory", uid: 1000, gid: 1000, mode: 0o700 },
    ]);
    expect(fs.lookup(["dev", "tty"])).toMatchObject({ type: "char", major: 5, minor: 0, mode: 0o666, gid: 5 });
    expect(fs.lookup(["dev", "loop0"])).toMatchObject({ type: "block", major: 7, minor: 0, gid: 6 });
    expect(fs.lookup(["run", "ctl"])).toMatchObject({ type: "fifo", mode: 0o620, uid: 1000 });
    expect((fs.lookup(["usr", "bin", "su"]) as Extract<FsNode, { type: "file" }>).inode.mode).toBe(0o4755);
    expect(fs.lookup(["home", "u"])).toMatchObject({ uid: 1000, gid: 1000, mode: 0o700 });
  });

  it("refuses every way out of the root: '..', absolute names, writes and hardlinks through a symlink", async () => {
    await expect(flatten([{ name: "../escape", data: "x" }])).rejects.toMatchObject({ name: "OciError", code: "FLEDGE_OCI_ESCAPE", message: /"\.\.\/escape"/ });
    await expect(flatten([{ name: "a/../../escape", data: "x" }])).rejects.toMatchObject({ code: "FLEDGE_OCI_ESCAPE" });
    await expect(flatten([{ name: "/etc/passwd", data: "x" }])).rejects.toMatchObject({ code: "FLEDGE_OCI_ESCAPE", message: /absolute/ });
    await expect(flatten([{ name: "evil", type: "symlink", linkname: "/etc" }], [{ name: "evil/passwd", data: "x" }])).rejects.toMatchObject({
      code: "FLEDGE_OCI_ESCAPE",
      message: /through the symlink \/evil -> \/etc/,
    });
    await expect(
      flatten([
        { name: "evil", type: "symlink", linkname: "../../.." },
        { name: "evil/x", data: "x" },
      ]),
    ).rejects.toMatchObject({ code: "FLEDGE_OCI_ESCAPE" });
    await expect(flatten([{ name: "h", type: "link", linkname: "../../etc/shadow" }])).rejects.toMatchObject({ code: "FLEDGE_OCI_ESCAPE" });
    await expect(
      flatten([
        { name: "l", type: "symlink", linkname: "/" },
        { name: "h", type: "link", linkname: "l/etc/shadow" },
      ]),
    ).rejects.toMatchObject({ code: "FLEDGE_OCI_ESCAPE" });
  });

  it("symlinks are data: any target is kept and never followed", async () => {
    const { paths } = await flatten([
      { name: "abs", type: "symlink", linkname: "/etc/passwd" },
      { name: "up", type: "symlink", linkname: "../../../../host" },
    ]);
    expect(paths).toEqual({ "/abs": "-> /etc/passwd", "/up": "-> ../../../../host" });
  });

  it("notes extended attributes, caps the number of members, refuses hardlinks to nothing", async () => {
    const { fs } = await flatten([{ name: "ping", data: "p", pax: { "SCHILY.xattr.security.capability": "\u0001" } }]);
    expect(fs.report.xattrs).toEqual(["/ping"]);
    const small = new ImageFs({ maxEntries: 2 });
    expect(() =>
      small.apply(0, { name: "L0", entries: [1, 2, 3].map((i) => ({ name: `f${i}`, type: "file" as const, mode: 0o644, uid: 0, gid: 0, size: 0, offset: 0, linkname: "", devmajor: 0, devminor: 0 })) }),
    ).toThrow(expect.objectContaining({ code: "FLEDGE_OCI_TOO_BIG" }));
    await expect(flatten([{ name: "h", type: "link", linkname: "nowhere" }])).rejects.toMatchObject({ code: "FLEDGE_OCI_FORMAT" });
  });
});
