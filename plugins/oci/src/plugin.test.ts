import { mkdtempSync, readFileSync, rmSync, writeFileSync, mkdirSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { build, rootCause, updateLock } from "@fledge/core";
import { testBuild } from "@fledge/core/testing";
import { afterAll, assert, beforeAll, describe, expect, it } from "vitest";
import OciPlugin from "./plugin.js";
import { writeLayout, type TestPlatformImage } from "./test/layout.js";
import { skopeo, startRegistry, type TestRegistry } from "./test/registry.js";

const work = mkdtempSync(join(tmpdir(), "fledge-oci-plugin-"));
const layout = join(work, "layout");
const archive = join(work, "app.tar");

const IMAGE: TestPlatformImage = {
  layers: [
    [
      { name: "bin/", type: "directory" },
      { name: "bin/sh", data: "#!not really a shell\n", mode: 0o755 },
      { name: "bin/dash", type: "link", linkname: "bin/sh" },
      { name: "etc/", type: "directory" },
      { name: "etc/gone", data: "x" },
      { name: "etc/passwd", data: "root:x:0:0::/root:/bin/sh\n" },
      { name: "usr/bin/", type: "directory" },
      { name: "usr/bin/ping", data: "ping", mode: 0o4755, pax: { "SCHILY.xattr.security.capability": "\u0001" } },
      { name: "dev/", type: "directory" },
      { name: "dev/zero", type: "character-device", devmajor: 1, devminor: 5, mode: 0o666 },
    ],
    [
      { name: "etc/.wh.gone", data: "" },
      { name: "app/", type: "directory" },
      { name: "app/entry", data: "#!/bin/sh\necho image entrypoint\n", mode: 0o755 },
    ],
  ],
  config: { Entrypoint: ["/app/entry"], Cmd: ["--serve"], Env: ["PATH=/usr/bin:/bin", "MODE=image"], WorkingDir: "/app", ExposedPorts: { "8000/tcp": {} } },
};

const NONE_MODE = (ref: string) => `version = "1"
[init]
none = true
[source]
busybox = false
image = "${ref}"
[mappings]
"./init" = "/init"
`;

beforeAll(async () => {
  await writeLayout(layout, "1", [IMAGE]);
  await skopeo([`oci:${layout}:1`, `docker-archive:${archive}:app:1`]);
}, 60_000);
afterAll(() => rmSync(work, { recursive: true, force: true }));

describe("OciPlugin in a build (the public plugin API, @fledge/core/testing)", () => {
  it("[source] image = oci:… puts the image's files in the tree with whiteouts applied and layer origins", async () => {
    // While the archive is written, image files are byte ranges of the verified layer tars, read
    // in place through the verified handle; afterwards (layers closed) they reopen and re-verify.
    const seen: Record<string, unknown>[] = [];
    const spy = { name: "spy", apply: (b: import("@fledge/core").Builder) => b.hooks.beforeArchive.tap("spy", (tree) => void seen.push({ ...tree.get("/etc/passwd") })) };
    const t = await testBuild({
      plugins: [new OciPlugin(), spy],
      config: NONE_MODE(`oci:${layout}:1`),
      files: { init: { content: "#!/bin/sh\n", mode: 0o755 } },
      mode: "build",
    });
    try {
      expect(seen[0]).toMatchObject({ type: "file", hostPath: expect.stringMatching(/^\/proc\/self\/fd\/\d+$/), offset: expect.any(Number), size: 26 });
      expect(seen[0]!.offset as number).toBeGreaterThan(0);
      expect(t.paths()).toContain("/app/entry");
      expect(t.paths()).not.toContain("/etc/gone");
      expect(await t.text("/etc/passwd")).toBe("root:x:0:0::/root:/bin/sh\n");
      expect(t.entry("/usr/bin/ping")).toMatchObject({ type: "file", mode: 0o4755 });
      expect(t.entry("/dev/zero")).toMatchObject({ type: "char", major: 1, minor: 5 });
      // the first name in sorted order holds the data, the other is a hard link to it
      expect(t.entry("/bin/sh")).toMatchObject({ type: "hardlink", target: "/bin/dash" });
      expect(t.entry("/app/entry")!.origin).toMatch(/^layer:sha256:[0-9a-f]{64}$/);
      expect(t.entry("/etc/passwd")!.origin).not.toBe(t.entry("/app/entry")!.origin);
      expect(t.warnings.join("\n")).toMatch(/extended attributes .* of 1 file\(s\) are dropped.*\/usr\/bin\/ping/);
      // the archive as the kernel reads it: one inode for the two names
      const sh = t.archive!.find((e) => e.path === "bin/sh")!;
      const dash = t.archive!.find((e) => e.path === "bin/dash")!;
      expect(sh.ino).toBe(dash.ino);
      expect(sh.nlink).toBe(2);
      // none mode: the image's Entrypoint is not used, and says so
      expect(t.logs.map((l) => l.message).join("\n")).toMatch(/Entrypoint\/Cmd is not used: in the none init mode/);
    } finally {
      await t.cleanup();
    }
  });

  it("the same image as oci: layout and as docker-archive: gives a byte-identical artifact", async () => {
    const out: Buffer[] = [];
    for (const ref of [`oci:${layout}:1`, `docker-archive:${archive}`]) {
      const t = await testBuild({ plugins: [new OciPlugin()], config: NONE_MODE(ref), files: { init: { content: "#!/bin/sh\n", mode: 0o755 } }, mode: "build" });
      try {
        out.push(readFileSync(t.result!.artifact.path));
      } finally {
        await t.cleanup();
      }
    }
    expect(out[0]!.equals(out[1]!)).toBe(true);
  });

  it("refuses a reference it cannot read in pre-flight, at its key", async () => {
    await expect(testBuild({ plugins: [new OciPlugin()], config: NONE_MODE("oci:./missing:1"), files: { init: "x" } })).rejects.toMatchObject({
      code: "FLEDGE_CONFIG",
      message: expect.stringMatching(/source\.image.*missing does not exist/s),
    });
    await expect(testBuild({ plugins: [new OciPlugin()], config: NONE_MODE("Bad/Name"), files: { init: "x" } })).rejects.toMatchObject({
      message: expect.stringMatching(/lowercase/),
    });
  });
});

describe("an image handed over by another plugin (as @fledge/plugin-dockerfile hands its build over)", () => {
  /** Provides [[overlay]] kind = "made": hands `ref` to the image source, as a Dockerfile source does with its layout. */
  const maker = (ref: string) => ({
    name: "maker",
    apply: (b: import("@fledge/core").Builder) =>
      b.hooks.resolveSource.for("made").tapPromise("maker", async (req, tree, ctx) => {
        const image = b.hooks.resolveSource.get("image")!;
        return image.promise({ kind: "image", options: { ref, name: "made:from-a-recipe" }, keyPath: req.keyPath, baseDir: req.baseDir }, tree, ctx);
      }),
  });
  const MADE = `version = "1"\n[init]\nnone = true\n[source]\nbusybox = false\n[[overlay]]\nkind = "made"\n[mappings]\n"./init" = "/init"\n`;

  it("a local layout is unpacked like [source] image (whiteouts, cache), and the manifest names what the plugin says it is", async () => {
    const t = await testBuild({ plugins: [new OciPlugin(), maker(`oci:${layout}:1`)], config: MADE, files: { init: { content: "#!/bin/sh\n", mode: 0o755 } }, mode: "build" });
    try {
      expect(t.paths()).toContain("/app/entry");
      expect(t.paths()).not.toContain("/etc/gone");
      expect(await t.text("/etc/passwd")).toBe("root:x:0:0::/root:/bin/sh\n");
      assert(t.result?.manifest, "the build wrote no manifest");
      expect(t.result.manifest.image).toBe("made:from-a-recipe");
      expect(t.result.manifest.image_digest).toMatch(/^sha256:[0-9a-f]{64}$/);
    } finally {
      await t.cleanup();
    }
  });

  it("a registry image handed over is refused: it would escape fledge.lock", async () => {
    const err = await testBuild({ plugins: [new OciPlugin(), maker("127.0.0.1:5999/app:1")], config: MADE, files: { init: { content: "#!/bin/sh\n", mode: 0o755 } }, mode: "build" }).catch((e) => e);
    expect(rootCause(err)).toMatchObject({
      code: "FLEDGE_OCI_HANDOFF",
      message: expect.stringMatching(/overlay\[0\]: 127\.0\.0\.1:5999\/app:1 was handed to the image source by a plugin, and a registry image must be named in fledge\.toml/),
      hint: 'write [source] image = "127.0.0.1:5999/app:1" (or an [[overlay]] kind = "image")',
    });
  });
});

describe("OciPlugin with a registry: lock, --offline, fledge update, manifest defaults", () => {
  let registry: TestRegistry;
  const proj = join(work, "proj");
  const cacheDir = join(work, "cache");
  const env = { ...process.env, HOME: join(work, "home"), FLEDGE_MIRRORS: "" };
  beforeAll(async () => {
    registry = await startRegistry();
    await skopeo([`oci:${layout}:1`, `docker://${registry.host}/app:1`, "--dest-tls-verify=false"]);
    mkdirSync(proj, { recursive: true });
    writeFileSync(join(proj, "kestrel"), "#!/bin/sh\necho kestrel\n", { mode: 0o755 });
    writeFileSync(join(proj, "fledge.toml"), `version = "1"\n[agent]\nsource_strategy = "local"\npath = "./kestrel"\n[source]\nbusybox = false\nimage = "${registry.host}/app:1"\n`.replace("busybox = false\n", ""));
    writeFileSync(join(proj, "manifest.toml"), `name = "app"\nversion = "1.0.0"\n[env]\nMODE = "toml"\n`);
  }, 60_000);
  afterAll(async () => registry?.stop());

  const run = (extra: Record<string, unknown> = {}) => build({ config: join(proj, "fledge.toml"), output: join(proj, "out.cpio.gz"), cacheDir, env, plugins: [new OciPlugin()], ...extra });

  it("pins the digest in fledge.lock, fills the manifest from the image config (manifest.toml wins)", async () => {
    writeFileSync(join(proj, "fledge.toml"), readFileSync(join(proj, "fledge.toml"), "utf8").replace("[source]\n", `[source]\nbusybox_url = "file:///bin/busybox"\n`));
    const r = await run();
    const lock = readFileSync(join(proj, "fledge.lock"), "utf8");
    expect(lock).toContain(`["image:${registry.host}/app:1"]`);
    expect(lock).toMatch(/source = "oci"/);
    expect(lock).toMatch(/platform = "linux\/amd64"/);
    expect(lock).toMatch(/digest = "sha256:[0-9a-f]{64}"/);
    assert(r.manifest, "the build wrote no manifest");
    expect(r.manifest.workload.entrypoint).toEqual(["/app/entry", "--serve"]);
    expect(r.manifest.workload.env).toEqual({ PATH: "/usr/bin:/bin", MODE: "toml" });
    expect(r.manifest.workload.workdir).toBe("/app");
    expect(r.manifest.workload.base_url).toBe("http://127.0.0.1:8000");
    expect((r.manifest as { image?: string }).image).toBe(`${registry.host}/app:1`);
    expect((r.manifest as { image_digest?: string }).image_digest).toMatch(/^sha256:/);
    writeFileSync(join(work, "first.cpio.gz"), readFileSync(r.artifact.path));
  });

  it("a new image under the same tag does not move a locked build until fledge update; --offline rebuilds byte-identically", async () => {
    const first = readFileSync(join(work, "first.cpio.gz"));
    await writeLayout(layout, "2", [{ ...IMAGE, layers: [...IMAGE.layers, [{ name: "new-file", data: "v2" }]] }]);
    await skopeo([`oci:${layout}:2`, `docker://${registry.host}/app:1`, "--dest-tls-verify=false"]);
    const locked = await run({ locked: true });
    expect(readFileSync(locked.artifact.path).equals(first)).toBe(true);
    const lockBefore = readFileSync(join(proj, "fledge.lock"), "utf8");
    const up = await updateLock({ config: join(proj, "fledge.toml"), cacheDir, env, plugins: [new OciPlugin()] });
    expect(up.changes.map((c) => c.key)).toEqual([`image:${registry.host}/app:1`]);
    expect(readFileSync(join(proj, "fledge.lock"), "utf8")).not.toBe(lockBefore);
    const moved = await run();
    expect(readFileSync(moved.artifact.path).equals(first)).toBe(false);
    const second = readFileSync(moved.artifact.path);
    await registry.stop();
    const offline = await run({ offline: true, locked: true });
    expect(readFileSync(offline.artifact.path).equals(second)).toBe(true);
  });
});
