import { mkdirSync, mkdtempSync, readFileSync, readdirSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { gunzipSync } from "node:zlib";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { AfterBuildStage, Builder, type FledgePlugin } from "./index.js";
import { testConfig, testManifest } from "./test-helpers.js";

let root: string;
/** The output directory: only the build's outputs may ever appear here. */
let dir: string;
let initFile: string;
beforeEach(() => {
  root = mkdtempSync(join(tmpdir(), "fledge-core-"));
  dir = join(root, "out");
  mkdirSync(dir);
  initFile = join(root, "init.sh");
  writeFileSync(initFile, "#!/bin/sh\n", { mode: 0o755 });
});
afterEach(() => rmSync(root, { recursive: true, force: true }));

/** A none-mode config whose /init is mapped from a host file. */
function cfg(overrides: Parameters<typeof testConfig>[0] = {}) {
  return testConfig({ mappings: [{ source: initFile, written: "./init.sh", dest: "/init" }], ...overrides });
}

function builder(plugins: FledgePlugin[], config = cfg()) {
  return new Builder({ config, manifestConfig: testManifest(), options: { output: join(dir, "out.cpio.gz"), cacheDir: join(root, "cache") }, plugins });
}

/** Names in a gzip'd newc archive, in order. */
function names(file: string): string[] {
  const buf = gunzipSync(readFileSync(file));
  const out: string[] = [];
  let off = 0;
  while (off < buf.length) {
    const h = buf.subarray(off, off + 110).toString("latin1");
    const size = parseInt(h.slice(54, 62), 16);
    const nameSize = parseInt(h.slice(94, 102), 16);
    const name = buf.subarray(off + 110, off + 110 + nameSize - 1).toString("utf8");
    if (name === "TRAILER!!!") break;
    out.push(name);
    off = Math.ceil((off + 110 + nameSize) / 4) * 4;
    off = Math.ceil((off + size) / 4) * 4;
  }
  return out;
}

describe("Builder hooks", () => {
  it("is frozen: plugins tap hooks, they cannot replace them", () => {
    const b = builder([]);
    expect(Object.isFrozen(b.hooks)).toBe(true);
    expect(() => {
      (b.hooks as any).archive = null;
    }).toThrow();
  });

  it("(a) a plugin adds a strategy through hooks.strategy.for(name)", async () => {
    const seen: string[] = [];
    const plugin: FledgePlugin = {
      apply(b) {
        b.hooks.strategy.for("tarball").tapPromise("test:tarball", async (ctx) => {
          seen.push(ctx.config.strategy);
          const tempPath = join(dir, ".tmp-art");
          (await import("node:fs")).writeFileSync(tempPath, "artifact");
          return { path: join(dir, "out.tar"), tempPath, sha256: "a".repeat(64), size: 8, compression: "none", entries: 0 };
        });
      },
    };
    const result = await builder([plugin], cfg({ strategy: "tarball" })).run();
    expect(seen).toEqual(["tarball"]);
    expect(readFileSync(join(dir, "out.tar"), "utf8")).toBe("artifact");
    expect(result.manifest.initramfs?.url).toBe(join(dir, "out.tar"));
  });

  it("an unknown strategy is an error naming the plugin that would provide it", async () => {
    await expect(builder([], cfg({ strategy: "oci_rootfs" })).run()).rejects.toMatchObject({
      code: "FLEDGE_STRATEGY",
      message: 'no plugin provides the "oci_rootfs" strategy',
      hint: expect.stringContaining("@fledge/plugin-oci"),
    });
  });

  it("(b) a plugin adds a file to the tree in beforeArchive", async () => {
    const plugin: FledgePlugin = {
      apply(b) {
        b.hooks.beforeArchive.tap("test:release", (tree) => {
          tree.addFile("/etc/release", "fledge-test\n");
        });
      },
    };
    const r = await builder([plugin]).run();
    expect(names(r.artifact.path)).toContain("etc/release");
  });

  it("(c) post-build steps run after the files are in place, ordered by stage", async () => {
    const order: string[] = [];
    const plugin: FledgePlugin = {
      apply(b) {
        b.hooks.afterBuild.tapPromise({ name: "test:upload", stage: AfterBuildStage.UPLOAD }, async (result) => {
          order.push(`upload ${readdirSync(dir).includes("t.manifest.json")}`);
          expect(result.artifact.sha256).toMatch(/^[0-9a-f]{64}$/);
        });
        b.hooks.afterBuild.tapPromise({ name: "test:sign", stage: AfterBuildStage.SIGN }, async () => {
          order.push("sign");
        });
        b.hooks.done.tap("test:done", () => {
          order.push("done");
        });
      },
    };
    await builder([plugin]).run();
    expect(order).toEqual(["sign", "upload true", "done"]);
  });

  it("user plugins run before the built-in stage taps", async () => {
    const order: string[] = [];
    const plugin: FledgePlugin = {
      apply(b) {
        b.hooks.skeleton.tap("test:first", (tree) => {
          order.push(`user sees /dev ${tree.has("/dev")}`);
        });
      },
    };
    await builder([plugin]).run();
    expect(order).toEqual(["user sees /dev false"]);
  });

  it("the manifest hook is a waterfall that plugins can edit", async () => {
    const plugin: FledgePlugin = {
      apply(b) {
        b.hooks.manifest.tap("test:labels", (m) => ({ ...m, labels: { built: "yes" } }));
      },
    };
    const r = await builder([plugin]).run();
    expect(JSON.parse(readFileSync(r.manifestPath, "utf8")).labels).toEqual({ built: "yes" });
  });

  it("a failure inside a tap names the hook and the plugin, and leaves nothing behind", async () => {
    const plugin: FledgePlugin = {
      apply(b) {
        b.hooks.beforeArchive.tapPromise("acme-sbom", async () => {
          throw new Error("disk full");
        });
      },
    };
    const failed: Error[] = [];
    const b = builder([plugin]);
    b.hooks.failed.tap("test:observer", (e) => {
      failed.push(e);
    });
    await expect(b.run()).rejects.toMatchObject({
      name: "PluginError",
      hook: "beforeArchive",
      plugin: "acme-sbom",
      message: 'plugin "acme-sbom" failed in hooks.beforeArchive: disk full',
    });
    expect(failed).toHaveLength(1);
    expect(readdirSync(dir)).toEqual([]);
  });

  it("a failure in a keyed hook names the key", async () => {
    const plugin: FledgePlugin = {
      apply(b) {
        b.hooks.strategy.for("boom").tapPromise("acme-boom", async () => {
          throw new Error("nope");
        });
      },
    };
    await expect(builder([plugin], cfg({ strategy: "boom" })).run()).rejects.toMatchObject({
      hook: 'strategy.for("boom")',
      plugin: "acme-boom",
    });
  });

  it("an async function tapped on a synchronous hook is refused instead of losing its error", async () => {
    const plugin: FledgePlugin = {
      apply(b) {
        b.hooks.compressor.for("async-gz").tap("acme-async", (async () => undefined) as any);
      },
    };
    const b = builder([plugin], cfg({ output: { compression: "async-gz", arch: "x86_64" } }));
    await expect(b.run()).rejects.toThrow(/synchronous but the tap returned a promise/);
  });

  it("a plugin can add a compressor by name", async () => {
    const { PassThrough } = await import("node:stream");
    const plugin: FledgePlugin = {
      apply(b) {
        b.hooks.compressor.for("identity").tap("acme-identity", () => ({ name: "identity", extension: "", createStream: () => new PassThrough() }));
      },
    };
    const r = await builder([plugin], cfg({ output: { compression: "identity", arch: "x86_64" } })).run();
    expect(readFileSync(r.artifact.path).subarray(0, 6).toString()).toBe("070701");
  });

  it("an unknown compression fails before anything is built, listing the known ones", async () => {
    await expect(builder([], cfg({ output: { compression: "brotli", arch: "x86_64" } })).run()).rejects.toMatchObject({
      message: 'unknown compression "brotli"',
      hint: expect.stringContaining("gzip"),
    });
  });

  it("progress and logs are observable through interceptors and hooks, core prints nothing", async () => {
    const calls: string[] = [];
    const b = builder([]);
    b.hooks.archive.intercept({ call: () => calls.push("archive:start") });
    b.hooks.progress.tap("test", (p) => {
      if (p.kind === "archive" && p.current === p.total) calls.push("archive:100%");
    });
    await b.run();
    expect(calls).toEqual(["archive:start", "archive:100%"]);
  });
});
