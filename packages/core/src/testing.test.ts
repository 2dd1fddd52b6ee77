import { mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
// As a plugin author's tests import it: through the package's exports map.
import type { FledgePlugin } from "@fledge/core";
import { testBuild } from "@fledge/core/testing";

class MotdPlugin implements FledgePlugin {
  readonly name = "motd";
  constructor(private readonly options: { text: string }) {}
  apply(builder: Parameters<FledgePlugin["apply"]>[0]): void {
    builder.hooks.beforeArchive.tap(this.name, (tree) => {
      tree.addFile("/etc/motd", this.options.text, { mode: 0o644, origin: "motd" });
      tree.symlink("/etc/issue", "motd");
    });
  }
}

describe("@fledge/core/testing", () => {
  it("runs a plugin against an in-memory tree, offline, without the CLI", async () => {
    const t = await testBuild({ plugins: [new MotdPlugin({ text: "hello\n" })] });
    try {
      expect(await t.text("/etc/motd")).toBe("hello\n");
      expect(t.entry("/etc/motd")).toEqual({ path: "/etc/motd", type: "file", mode: 0o644, uid: 0, gid: 0, origin: "motd" });
      expect(t.entry("/etc/issue")).toMatchObject({ type: "symlink", target: "motd", origin: "plugin:motd" });
      expect(t.entry("/init")).toMatchObject({ type: "file", mode: 0o755, origin: "mapping:./init" });
      expect(t.paths()).toContain("/dev/console");
      expect(t.result).toBeUndefined();
    } finally {
      await t.cleanup();
    }
  });

  it("mode: build writes the artifact and reads it back as the kernel would", async () => {
    const t = await testBuild({ plugins: [new MotdPlugin({ text: "built\n" })], mode: "build" });
    try {
      const motd = t.archive!.find((e) => e.path === "etc/motd")!;
      expect(Buffer.from(motd.data!).toString()).toBe("built\n");
      expect(t.result!.manifest!.name).toBe("test");
    } finally {
      await t.cleanup();
    }
  });

  it("a file node can be a byte range of a host file (hostPath + offset + size), read in place", async () => {
    const dir = await mkdtemp(join(tmpdir(), "fledge-range-"));
    const host = join(dir, "layer.tar");
    await writeFile(host, "HEADER--hello from the middle--TRAILER");
    const ranges: FledgePlugin = {
      name: "ranges",
      apply(b) {
        b.hooks.beforeArchive.tap("ranges", (tree) => {
          tree.set("/srv/middle", { type: "file", mode: 0o640, uid: 7, hostPath: host, offset: 8, size: 23, origin: "layer:test" });
          tree.set("/srv/empty", { type: "file", mode: 0o644, hostPath: host, offset: 38, size: 0 });
          tree.set("/srv/whole", { type: "file", mode: 0o644, hostPath: host, offset: 0, size: 6 });
          tree.hardlink("/srv/middle-link", "/srv/middle");
        });
      },
    };
    const t = await testBuild({ plugins: [ranges], mode: "build" });
    try {
      expect(await t.text("/srv/middle")).toBe("hello from the middle--");
      const at = (p: string) => t.archive!.find((e) => e.path === p)!;
      expect(Buffer.from(at("srv/middle").data!).toString()).toBe("hello from the middle--");
      expect(at("srv/middle")).toMatchObject({ mode: 0o640, uid: 7 });
      expect(at("srv/empty").data!.length).toBe(0);
      expect(Buffer.from(at("srv/whole").data!).toString()).toBe("HEADER");
      expect(at("srv/middle-link").ino).toBe(at("srv/middle").ino);
    } finally {
      await t.cleanup();
      await rm(dir, { recursive: true, force: true });
    }
  });

  it("serves URL inputs from fixtures, with the network off", async () => {
    const busybox = Buffer.from("\x7fELF not really busybox");
    const t = await testBuild({
      config: 'version = "1"\n[init]\nnone = true\n[source]\nbusybox_url = "https://busybox.example/busybox"\n[mappings]\n"./init" = "/init"\n',
      files: { init: { content: "#!/bin/sh\n", mode: 0o755 } },
      downloads: { "https://busybox.example/busybox": busybox },
    });
    try {
      expect((await t.read("/bin/busybox")).equals(busybox)).toBe(true);
      expect(t.entry("/bin/sh")).toMatchObject({ type: "symlink", target: "busybox", origin: "busybox" });
    } finally {
      await t.cleanup();
    }
    await expect(testBuild({ config: 'version = "1"\n[init]\nnone = true\n[source]\nbusybox_url = "https://nowhere.example/bb"\n[mappings]\n"./init" = "/init"\n', files: { init: "x" } })).rejects.toThrow(
      /not in the cache and the network is off/,
    );
  });

  it("throws pre-flight problems as a build would", async () => {
    await expect(testBuild({ config: 'version = "1"\nstrategy = "nope"\n' })).rejects.toMatchObject({ code: "FLEDGE_CONFIG" });
  });
});
