import { describe, expect, it } from "vitest";
import type { Builder, FledgePlugin } from "../builder.js";
import { testBuild } from "../testing.js";
import type { RootfsTree } from "../tree.js";

const BB = "busybox-bytes";
const URL = "https://busybox.example/busybox";

/** A stand-in for an image overlay: puts nodes into the tree in the overlay stage. */
const image = (fill: (tree: RootfsTree) => void): FledgePlugin => ({
  name: "test-image",
  apply(b: Builder) {
    b.hooks.overlay.tap("test-image", (tree) => fill(tree));
  },
});

const config = (mode: "none" | "default") =>
  `version = "1"\n${mode === "none" ? "[init]\nnone = true\n" : '[agent]\nsource_strategy = "local"\npath = "./kestrel"\n'}[source]\nbusybox_url = "${URL}"\n[mappings]\n"./init" = "/init"\n`;

async function run(plugins: FledgePlugin[], mode: "none" | "default" = "none") {
  return testBuild({ plugins, config: config(mode), files: { init: { content: "#!/bin/sh\n", mode: 0o755 }, kestrel: { content: "k", mode: 0o755 } }, downloads: { [URL]: BB } });
}

describe("busybox never replaces what an overlaid image has", () => {
  it("without an image: /bin/busybox and every applet link", async () => {
    const t = await run([]);
    try {
      expect(await t.text("/bin/busybox")).toBe(BB);
      expect(t.entry("/bin/sh")).toMatchObject({ type: "symlink", target: "busybox" });
    } finally {
      await t.cleanup();
    }
  });

  it("the image's /bin/sh and commands stay; busybox links only what is missing", async () => {
    const t = await run([image((tree) => tree.addFile("/bin/sh", "dash", 0o755).symlink("/bin/ls", "/usr/bin/ls"))]);
    try {
      expect(await t.text("/bin/sh")).toBe("dash");
      expect(t.entry("/bin/ls")).toMatchObject({ type: "symlink", target: "/usr/bin/ls" });
      expect(t.entry("/bin/cat")).toMatchObject({ type: "symlink", target: "busybox" });
      expect(t.logs.map((l) => l.message).join("\n")).toMatch(/the image's own \/bin\/ls, \/bin\/sh kept/);
    } finally {
      await t.cleanup();
    }
  });

  it("an image with its own busybox keeps it and its links: fledge's is not installed", async () => {
    const t = await run([image((tree) => tree.addFile("/bin/busybox", "alpine-busybox", 0o755).symlink("/bin/sh", "/bin/busybox"))]);
    try {
      expect(await t.text("/bin/busybox")).toBe("alpine-busybox");
      expect(t.entry("/bin/cat")).toBeUndefined();
      expect(t.logs.map((l) => l.message).join("\n")).toMatch(/has its own \/bin\/busybox/);
    } finally {
      await t.cleanup();
    }
  });

  it("an image whose /bin is a link to usr/bin (merged /usr) gets busybox and kestrel in /usr/bin", async () => {
    const t = await run(
      [
        image((tree) => {
          tree.addFile("/usr/bin/sh", "dash", 0o755);
          tree.symlink("/bin", "usr/bin");
        }),
      ],
      "default",
    );
    try {
      expect(t.entry("/bin")).toMatchObject({ type: "symlink", target: "usr/bin" });
      expect(await t.text("/usr/bin/sh")).toBe("dash");
      expect(await t.text("/usr/bin/busybox")).toBe(BB);
      expect(t.entry("/usr/bin/cat")).toMatchObject({ type: "symlink", target: "busybox" });
      expect(await t.text("/usr/bin/kestrel")).toBe("k");
    } finally {
      await t.cleanup();
    }
  });
});
