import { spawnSync } from "node:child_process";
import { mkdirSync, mkdtempSync, readFileSync, rmSync, symlinkSync, writeFileSync, linkSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { indexTar } from "./tar.js";
import { makeTar } from "./test/tar.js";

const work = mkdtempSync(join(tmpdir(), "fledge-oci-tar-"));
afterAll(() => rmSync(work, { recursive: true, force: true }));

const dataAt = (tar: Buffer, e: { offset: number; size: number }) => tar.subarray(e.offset, e.offset + e.size).toString();

describe("TarIndexer", () => {
  it("reports every member kind with the offset of its data, long names through pax", async () => {
    const long = "d/" + "x".repeat(150) + "/file";
    const tar = await makeTar([
      { name: "d/", type: "directory", mode: 0o750, uid: 7, gid: 8 },
      { name: "d/a.txt", data: "hello" },
      { name: long, data: "long name content" },
      { name: "d/sh", type: "file", mode: 0o4755, data: "#!/bin/sh\n" },
      { name: "d/hard", type: "link", linkname: "d/a.txt" },
      { name: "d/sym", type: "symlink", linkname: "../etc/passwd" },
      { name: "dev/null", type: "character-device", devmajor: 1, devminor: 3, mode: 0o666 },
      { name: "dev/sda", type: "block-device", devmajor: 8, devminor: 0, mode: 0o660 },
      { name: "run/fifo", type: "fifo", mode: 0o600 },
      { name: "caps", data: "x", pax: { "SCHILY.xattr.security.capability": "abc" } },
    ]);
    const entries = await indexTar(tar);
    expect(entries.map((e) => [e.name, e.type])).toEqual([
      ["d/", "dir"],
      ["d/a.txt", "file"],
      [long, "file"],
      ["d/sh", "file"],
      ["d/hard", "link"],
      ["d/sym", "symlink"],
      ["dev/null", "char"],
      ["dev/sda", "block"],
      ["run/fifo", "fifo"],
      ["caps", "file"],
    ]);
    const by = Object.fromEntries(entries.map((e) => [e.name, e]));
    expect(dataAt(tar, by["d/a.txt"]!)).toBe("hello");
    expect(dataAt(tar, by[long]!)).toBe("long name content");
    expect(by["d/"]).toMatchObject({ mode: 0o750, uid: 7, gid: 8 });
    expect(by["d/sh"]!.mode).toBe(0o4755);
    expect(by["d/hard"]!.linkname).toBe("d/a.txt");
    expect(by["d/sym"]!.linkname).toBe("../etc/passwd");
    expect(by["dev/null"]).toMatchObject({ devmajor: 1, devminor: 3, mode: 0o666 });
    expect(by["dev/sda"]).toMatchObject({ devmajor: 8, devminor: 0 });
    expect(by["caps"]!.xattrs).toEqual(["security.capability"]);
  });

  it("reads GNU tar's own output (GNU long names and links, base-256 ids) like tar-stream's headers say", async () => {
    const src = join(work, "gnu");
    mkdirSync(join(src, "a".repeat(120)), { recursive: true });
    writeFileSync(join(src, "a".repeat(120), "f"), "gnu data");
    linkSync(join(src, "a".repeat(120), "f"), join(src, "h"));
    symlinkSync("b".repeat(130), join(src, "s"));
    const out = join(work, "gnu.tar");
    const r = spawnSync("tar", ["--format=gnu", "--owner=3000000", "--group=5", "--numeric-owner", "-C", src, "-cf", out, "."]);
    expect(r.status, r.stderr?.toString()).toBe(0);
    const tar = readFileSync(out);
    const entries = await indexTar(tar);
    const f = entries.find((e) => e.name.endsWith("/f"))!;
    expect(dataAt(tar, f)).toBe("gnu data");
    expect(f.uid).toBe(3000000);
    expect(f.gid).toBe(5);
    expect(entries.find((e) => e.name === "./h")).toMatchObject({ type: "link" });
    expect(entries.find((e) => e.name === "./s")).toMatchObject({ type: "symlink", linkname: "b".repeat(130) });
  });

  it("refuses a corrupt header, a truncated stream and a sparse file", async () => {
    const tar = await makeTar([{ name: "f", data: "x".repeat(2000) }]);
    const bad = Buffer.from(tar);
    bad[10] = 0x41; // the name changes, the checksum does not
    await expect(indexTar(bad)).rejects.toMatchObject({ name: "OciError", code: "FLEDGE_OCI_FORMAT" });
    await expect(indexTar(tar.subarray(0, 1024))).rejects.toMatchObject({ name: "OciError", code: "FLEDGE_OCI_FORMAT", message: /Unexpected end of data/ });
    const sparse = await makeTar([{ name: "s", data: "x", pax: { "GNU.sparse.major": "1", "GNU.sparse.minor": "0" } }]);
    await expect(indexTar(sparse)).rejects.toMatchObject({ code: "FLEDGE_OCI_UNSUPPORTED" });
  });
});
