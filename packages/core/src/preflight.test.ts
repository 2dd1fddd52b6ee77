import { mkdirSync, mkdtempSync, readdirSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { build, preflight } from "./build.js";

let dir: string;
beforeEach(() => {
  dir = mkdtempSync(join(tmpdir(), "fledge-preflight-"));
  writeFileSync(join(dir, "init.sh"), "#!/bin/sh\n", { mode: 0o755 });
  writeFileSync(join(dir, "manifest.toml"), 'name = "demo"\nversion = "1.0.0"\n[workload]\nentrypoint = "/init"\nbase_url = "http://127.0.0.1:8000"\n');
});
afterEach(() => rmSync(dir, { recursive: true, force: true }));

const HEAD = 'version = "1"\n[init]\nnone = true\n[source]\nbusybox = false\n[mappings]\n"./init.sh" = "/init"\n';
const where = (i: { file: string; keyPath: string; line?: number; column?: number; message: string }) => `${i.file.replace(dir + "/", "")}:${i.line ?? "-"}:${i.column ?? "-"} ${i.keyPath}: ${i.message}`;

async function check(toml: string, extra: Parameters<typeof preflight>[0] extends infer R ? Partial<R> : never = {}) {
  writeFileSync(join(dir, "fledge.toml"), toml);
  return preflight({ config: join(dir, "fledge.toml"), output: join(dir, "out", "plugin.cpio.gz"), ...extra });
}

describe("one pre-flight for build, validate and update (everything knowable before fetching)", () => {
  it("compressor, level, plugin modules, mapping sources, init rules and manifest rules: every problem at once, each with file, key and line:column", async () => {
    writeFileSync(join(dir, "manifest.toml"), 'name = "demo"\n[workload]\nentrypoint = "/init"\n');
    const toml = [
      'version = "1"',
      'plugins = ["./missing-plugin.mjs"]',
      "[init]",
      "none = true",
      "[source]",
      "busybox = false",
      "[mappings]",
      '"./gone" = "/srv/gone"',
      "[output]",
      'compression = "brotli"',
      "level = 99",
    ].join("\n");
    const pf = await check(toml);
    expect(pf.ok).toBe(false);
    // The plugin must load before the rest can be checked against what it provides.
    expect(pf.problems.map(where)).toEqual([
      `fledge.toml:2:1 plugins[0]: plugin "./missing-plugin.mjs": ${join(dir, "missing-plugin.mjs")} does not exist`,
      "manifest.toml:2:1 workload.base_url: Volant needs the workload's base_url (where it answers HTTP in the guest)",
    ]);
    writeFileSync(join(dir, "missing-plugin.mjs"), 'export default { name: "ok", apply() {} };');
    const pf2 = await check(toml);
    expect(pf2.problems.map(where)).toEqual([
      "fledge.toml:4:1 init.none: [init] none = true, but no mapping puts anything at /init",
      `fledge.toml:8:1 mappings."./gone": ${join(dir, "gone")} does not exist`,
      'fledge.toml:10:1 output.compression: unknown compression "brotli"',
      "manifest.toml:2:1 workload.base_url: Volant needs the workload's base_url (where it answers HTTP in the guest)",
    ]);
    const pf3 = await check(toml.replace('"brotli"', '"zstd"'));
    expect(pf3.problems.map(where)).toContainEqual(expect.stringMatching(/^fledge\.toml:11:1 output\.level: zstd level 99 is out of range \d+–\d+$/));
  });

  it("--compression and --level are checked as the command line's", async () => {
    const pf = await check(HEAD, { compression: "gzip", level: 42 });
    expect(pf.problems.map((i) => `${i.file} ${i.keyPath}: ${i.message}`)).toEqual([expect.stringMatching(/^\(command line\) --level: gzip level 42 is out of range \d+–9$/)]);
  });

  it("a build refuses exactly what pre-flight finds, before any work", async () => {
    writeFileSync(join(dir, "fledge.toml"), HEAD + '[output]\ncompression = "brotli"\n');
    await expect(build({ config: join(dir, "fledge.toml"), output: join(dir, "out", "plugin.cpio.gz") })).rejects.toMatchObject({
      code: "FLEDGE_CONFIG",
      issues: [expect.objectContaining({ keyPath: "output.compression", line: 9, column: 1 })],
    });
    expect(readdirSync(dir).sort()).toEqual(["fledge.toml", "init.sh", "manifest.toml"]);
  });
});

describe("strategies and overlay kinds, checked once the plugins are loaded", () => {
  it("strategy = <a plugin's strategy> builds with the plugin listed, and fails clearly without it", async () => {
    writeFileSync(
      join(dir, "disk.mjs"),
      `export default class Disk {
        name = "disk";
        apply(b) {
          b.hooks.strategy.for("disk").tapPromise(this.name, async (ctx) => {
            const out = ctx.outputs.artifact;
            await out.write("disk image");
            return { kind: "rootfs", format: "raw", path: out.path, stagedPath: out.stagedPath, sha256: "${"c".repeat(64)}", size: 10 };
          });
        }
      }`,
    );
    const without = await check(HEAD.replace('version = "1"\n', 'version = "1"\nstrategy = "disk"\n'));
    expect(without.problems.map(where)).toEqual(['fledge.toml:2:1 strategy: no plugin provides the "disk" strategy; on offer: initramfs']);
    writeFileSync(join(dir, "fledge.toml"), HEAD.replace('version = "1"\n', 'version = "1"\nstrategy = "disk"\nplugins = ["./disk.mjs"]\n'));
    const r = await build({ config: join(dir, "fledge.toml"), output: join(dir, "out", "rootfs.img") });
    expect(r.manifest!.rootfs).toMatchObject({ url: join(dir, "out", "rootfs.img"), format: "raw" });
  });

  it("a first-party plugin behind a Go key is loaded by itself when installed: [source] image and nothing else", async () => {
    const pkg = join(dir, "node_modules", "@fledge", "plugin-oci");
    mkdirSync(join(pkg, "dist"), { recursive: true });
    writeFileSync(join(pkg, "package.json"), JSON.stringify({ name: "@fledge/plugin-oci", type: "module", exports: { ".": { import: "./dist/index.js" } } }));
    writeFileSync(
      join(pkg, "dist", "index.js"),
      `export default class OciPlugin {
        name = "@fledge/plugin-oci";
        apply(b) {
          b.hooks.resolveSource.for("image").tapPromise(this.name, async (req, tree) => {
            tree.addFile("/etc/image-ref", req.options.ref, { origin: "layer:sha256:feed" });
            return true;
          });
        }
      }`,
    );
    writeFileSync(join(dir, "fledge.toml"), HEAD.replace("busybox = false\n", 'busybox = false\nimage = "nginx:alpine"\n'));
    const pf = await preflight({ config: join(dir, "fledge.toml"), output: join(dir, "out", "p.cpio.gz") });
    expect(pf.problems).toEqual([]);
    expect(pf.notes).toContain("source.image uses @fledge/plugin-oci (loaded by itself)");
    const r = await pf.builder!.run();
    expect(r.tree?.get("/etc/image-ref")).toMatchObject({ origin: "layer:sha256:feed" });
  });

  // Every first-party plugin is part of this workspace now, so pre-flight finds each one from core's
  // own directory (as it finds them from the CLI's where fledge is installed); the "not installed"
  // problem for each kind and strategy is in builder.test.ts.
  it("a first-party kind is loaded by itself from where fledge is installed, and its own checks run in pre-flight", async () => {
    const pf = await check(HEAD + '[[overlay]]\nkind = "tarball"\nurl = "https://example.test/a.tar"\n');
    expect(pf.problems).toEqual([]);
    expect(pf.notes).toContain("overlay[0] uses @fledge/plugin-tarball (loaded by itself)");
    expect(pf.builder!.plugins).toContain("@fledge/plugin-tarball");
    const bad = await check(HEAD + '[[overlay]]\nkind = "tarball"\nurl = "ftp://example.test/a.tar"\n');
    expect(bad.problems.map(where)).toEqual(['fledge.toml:10:1 overlay[0].url: "ftp://example.test/a.tar" is not an http(s) URL']);
  });

  it("[[overlay]] kind = <a plugin's kind> reaches that plugin's tap with the rest of the table", async () => {
    writeFileSync(
      join(dir, "zips.mjs"),
      `export default (opts) => ({
        name: "zips",
        apply(b) {
          b.hooks.resolveSource.for("zip").tapPromise("zips", async (req, tree) => {
            tree.addFile("/etc/zip-request", JSON.stringify({ ...req.options, prefix: opts.prefix }));
            return true;
          });
        },
      });`,
    );
    writeFileSync(join(dir, "fledge.toml"), HEAD + "plugins_placeholder = 1\n".replace("plugins_placeholder = 1\n", "") + '[[overlay]]\nkind = "zip"\npath = "./a.zip"\nstrip = 1\n');
    const bad = await preflight({ config: join(dir, "fledge.toml"), output: join(dir, "out", "p.cpio.gz") });
    expect(bad.problems.map(where)).toEqual(['fledge.toml:8:1 overlay[0]: no plugin provides "zip" sources']);
    writeFileSync(
      join(dir, "fledge.toml"),
      HEAD.replace('version = "1"\n', 'version = "1"\nplugins = [{ use = "./zips.mjs", options = { prefix = "p" } }]\n') + '[[overlay]]\nkind = "zip"\npath = "./a.zip"\nstrip = 1\n',
    );
    const r = await build({ config: join(dir, "fledge.toml"), output: join(dir, "out", "p.cpio.gz") });
    const node = r.tree!.get("/etc/zip-request");
    expect(node?.type === "file" && "data" in node && JSON.parse(Buffer.from(node.data).toString())).toEqual({ path: "./a.zip", strip: 1, prefix: "p" });
  });
});

describe("the artifact's default name follows the strategy (no -o)", () => {
  it("plugin.cpio.gz for initramfs, rootfs.img for oci_rootfs (rootfs.squashfs with squashfs), plugin.img for any other, in outputDir; the manifest goes beside it", async () => {
    const { defaultArtifactName } = await import("./artifact-name.js");
    expect(defaultArtifactName({ strategy: "initramfs" })).toBe("plugin.cpio.gz");
    expect(defaultArtifactName({ strategy: "oci_rootfs" })).toBe("rootfs.img");
    expect(defaultArtifactName({ strategy: "oci_rootfs", filesystem: { type: "ext4" } })).toBe("rootfs.img");
    expect(defaultArtifactName({ strategy: "oci_rootfs", filesystem: { type: "squashfs" } })).toBe("rootfs.squashfs");
    expect(defaultArtifactName({ strategy: "../../etc/passwd" })).toBe("plugin.img");
    writeFileSync(join(dir, "fledge.toml"), HEAD);
    const init = await preflight({ config: join(dir, "fledge.toml"), outputDir: join(dir, "o") });
    expect(init.builder?.context.options.output).toBe(join(dir, "o", "plugin.cpio.gz"));
    writeFileSync(
      join(dir, "listing.mjs"),
      'export default { name: "listing", apply(b) { b.hooks.strategy.for("oci_rootfs").tapPromise("listing", async () => undefined); b.hooks.resolveSource.for("image").tapPromise("listing", async () => true); } };',
    );
    writeFileSync(join(dir, "fledge.toml"), 'version = "1"\nstrategy = "oci_rootfs"\nplugins = ["./listing.mjs"]\n[source]\nimage = "stand-in"\nbusybox_url = "./init.sh"\n[filesystem]\nsize_buffer_mb = 8\n');
    const disk = await preflight({ config: join(dir, "fledge.toml"), outputDir: join(dir, "o") });
    expect(disk.problems.map(where)).toEqual([]);
    expect(disk.builder?.context.options.output).toBe(join(dir, "o", "rootfs.img"));
    expect(disk.builder?.context.outputs.artifact.path).toBe(join(dir, "o", "rootfs.img"));
    expect(disk.builder?.context.outputs.manifest.path).toBe(join(dir, "o", "demo.manifest.json"));
    const named = await preflight({ config: join(dir, "fledge.toml"), outputDir: join(dir, "o"), output: join(dir, "x.img") });
    expect(named.builder?.context.options.output).toBe(join(dir, "x.img"));
  });
});
