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
