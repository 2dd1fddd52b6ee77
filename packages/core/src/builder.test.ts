import { existsSync, mkdirSync, mkdtempSync, readFileSync, readdirSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { gunzipSync } from "node:zlib";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { AfterBuildStage, Builder, runTreeStages, Stage, type FledgePlugin, type LogEvent } from "./index.js";
import { testConfig, testManifest } from "./test-helpers.js";
import type { FledgeConfig, ManifestConfig } from "@fledge/config";

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
function cfg(overrides: Partial<FledgeConfig> = {}): FledgeConfig {
  return testConfig({ file: join(root, "fledge.toml"), rootDir: root, mappings: [{ source: initFile, written: "./init.sh", dest: "/init" }], ...overrides });
}

function builder(plugins: FledgePlugin[], config = cfg(), manifestConfig: ManifestConfig = testManifest()) {
  return new Builder({ config, manifestConfig, options: { output: join(dir, "out.cpio.gz"), cacheDir: join(root, "cache") }, plugins });
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

async function failure(p: Promise<unknown>): Promise<Error & { code?: string; hint?: string; issues?: { keyPath: string; message: string; hint?: string }[]; kept?: string[] }> {
  try {
    await p;
  } catch (e) {
    return e as Error;
  }
  throw new Error("expected a failure");
}

describe("Builder hooks", () => {
  it("is frozen: plugins tap hooks, they cannot replace them", () => {
    const b = builder([]);
    expect(Object.isFrozen(b.hooks)).toBe(true);
    expect(() => {
      (b.hooks as unknown as Record<string, unknown>).archive = null;
    }).toThrow();
  });

  it("(a) a plugin adds a strategy through hooks.strategy.for(name), writing the staged artifact", async () => {
    const seen: string[] = [];
    const plugin: FledgePlugin = {
      name: "test:tarball",
      apply(b) {
        b.hooks.strategy.for("tarball").tapPromise("test:tarball", async (ctx) => {
          seen.push(ctx.config.strategy);
          const out = ctx.outputs.artifact;
          await out.write("artifact");
          return { kind: "initramfs", path: out.path, stagedPath: out.stagedPath, sha256: "a".repeat(64), size: 8 };
        });
      },
    };
    const result = await builder([plugin], cfg({ strategy: "tarball" })).run();
    expect(seen).toEqual(["tarball"]);
    expect(readFileSync(join(dir, "out.cpio.gz"), "utf8")).toBe("artifact");
    expect(result.manifest!.initramfs?.url).toBe(join(dir, "out.cpio.gz"));
  });

  it("a strategy that writes a disk image reuses the tree stages, and the manifest gets rootfs {url, checksum, format}", async () => {
    const plugin: FledgePlugin = {
      name: "test:disk",
      apply(b) {
        b.hooks.strategy.for("disk").tapPromise("test:disk", async (ctx) => {
          const tree = await runTreeStages(b, ctx);
          const out = ctx.outputs.artifact;
          await out.write(tree.paths().join("\n"));
          return { kind: "rootfs", format: "raw", path: out.path, stagedPath: out.stagedPath, sha256: "b".repeat(64), size: 1, tree };
        });
      },
    };
    const result = await builder([plugin], cfg({ strategy: "disk" })).run();
    expect(result.manifest!.rootfs).toEqual({ url: join(dir, "out.cpio.gz"), checksum: `sha256:${"b".repeat(64)}`, format: "raw" });
    expect(result.manifest!.initramfs).toBeUndefined();
    // skeleton, init (none mode: nothing) and mappings ran over the tree
    expect(readFileSync(join(dir, "out.cpio.gz"), "utf8").split("\n")).toEqual(expect.arrayContaining(["/dev/console", "/tmp", "/init"]));
    expect(result.tree?.get("/init")).toMatchObject({ origin: "mapping:./init.sh" });
  });

  it("an unknown strategy fails before any work, listing the strategies on offer", async () => {
    const e = await failure(builder([], cfg({ strategy: "squashy" })).run());
    expect(e).toMatchObject({ code: "FLEDGE_CONFIG" });
    expect(e.issues).toEqual([expect.objectContaining({ keyPath: "strategy", message: 'no plugin provides the "squashy" strategy; on offer: initramfs' })]);
    expect(readdirSync(dir)).toEqual([]);
  });

  it("a first-party strategy that is not installed names its package", async () => {
    const e = await failure(builder([], cfg({ strategy: "oci_rootfs" })).run());
    expect(e.issues).toEqual([
      expect.objectContaining({
        keyPath: "strategy",
        message: 'the "oci_rootfs" strategy is provided by @fledge/plugin-rootfs, which is not installed',
        hint: expect.stringContaining("npm install @fledge/plugin-rootfs"),
      }),
    ]);
  });

  it("(b) a plugin adds a file to the tree in beforeArchive", async () => {
    const plugin: FledgePlugin = {
      name: "test:release",
      apply(b) {
        b.hooks.beforeArchive.tap("test:release", (tree) => {
          tree.addFile("/etc/release", "fledge-test\n");
        });
      },
    };
    const r = await builder([plugin]).run();
    expect(names(r.artifact.path)).toContain("etc/release");
    expect(r.tree?.get("/etc/release")).toMatchObject({ origin: "plugin:test:release" });
  });

  it("an async function given to .tap() on an async hook is an error naming the plugin and the hook, never lost work", async () => {
    const plugin: FledgePlugin = {
      name: "late-writer",
      apply(b) {
        b.hooks.beforeArchive.tap("late-writer", (async (tree: { addFile(p: string, c: string): void }) => {
          await new Promise((r) => setTimeout(r, 5));
          tree.addFile("/etc/late", "x");
        }) as never);
      },
    };
    const e = await failure(builder([plugin]).run());
    expect(e).toMatchObject({ name: "PluginError", hook: "beforeArchive", plugin: "late-writer" });
    expect(e.message).toBe('plugin "late-writer" failed in hooks.beforeArchive: the tap on hooks.beforeArchive was made with .tap() but returned a promise, which would not be awaited: use tapPromise');
    expect(readdirSync(dir)).toEqual([]);
  });

  it("an error thrown in apply() names the plugin", () => {
    const plugin: FledgePlugin = {
      name: "acme-broken",
      apply(b) {
        // biome-ignore lint/suspicious/noExplicitAny: a JavaScript plugin's mistake, which the types rule out
        (b.hooks as any).nosuchhook.tap("acme-broken", () => {});
      },
    };
    let err: (Error & { plugin?: string; hook?: string }) | undefined;
    try {
      builder([plugin]);
    } catch (e) {
      err = e as Error;
    }
    expect(err).toMatchObject({ name: "PluginError", plugin: "acme-broken", hook: "apply" });
    expect(err!.message).toMatch(/^plugin "acme-broken" failed in apply\(\): Cannot read properties of undefined/);
  });

  it("a plugin without a name is refused", () => {
    expect(() => builder([{ apply() {} } as unknown as FledgePlugin])).toThrow(/a plugin has no name/);
  });

  it("every log line of a plugin names it", async () => {
    const logs: LogEvent[] = [];
    const plugin: FledgePlugin = {
      name: "chatty",
      apply(b) {
        b.hooks.beforeArchive.tap({ name: "whatever-tap" }, (_tree, ctx) => {
          ctx.warn("something odd");
          ctx.info("fyi");
        });
      },
    };
    const b = builder([plugin]);
    b.hooks.log.tap("test", (e) => void logs.push(e));
    const r = await b.run();
    expect(logs.filter((l) => l.message === "something odd" || l.message === "fyi")).toEqual([
      { level: "warn", message: "something odd", source: "chatty" },
      { level: "info", message: "fyi", source: "chatty" },
    ]);
    expect(r.warnings).toContain("something odd");
  });

  it("ordering: enforce pre runs before fledge's built-in tap, a plain tap after it, enforce post after both", async () => {
    const order: string[] = [];
    const plugin: FledgePlugin = {
      name: "order",
      apply(b) {
        b.hooks.skeleton.tap({ name: "order", enforce: "post" }, (tree) => void order.push(`post sees /dev ${tree.has("/dev")}`));
        b.hooks.skeleton.tap("order", (tree) => void order.push(`plain sees /dev ${tree.has("/dev")}`));
        b.hooks.skeleton.tap({ name: "order", enforce: "pre" }, (tree) => void order.push(`pre sees /dev ${tree.has("/dev")}`));
        b.hooks.skeleton.tap({ name: "order", stage: Stage.POST + 1 }, () => void order.push("last"));
      },
    };
    await builder([plugin]).run();
    expect(order).toEqual(["pre sees /dev false", "plain sees /dev true", "post sees /dev true", "last"]);
  });

  it("ordering: `before` names a built-in tap", async () => {
    const order: string[] = [];
    const b = builder([
      {
        name: "before-skeleton",
        apply(b) {
          b.hooks.skeleton.tap({ name: "before-skeleton", before: "fledge:skeleton", enforce: "post" }, (tree) => void order.push(`sees /dev ${tree.has("/dev")}`));
        },
      },
    ]);
    await b.run();
    expect(order).toEqual(["sees /dev false"]);
  });

  it("the manifest hook is a waterfall that plugins can edit", async () => {
    const plugin: FledgePlugin = {
      name: "test:labels",
      apply(b) {
        b.hooks.manifest.tap("test:labels", (m) => ({ ...m, labels: { built: "yes" } }));
      },
    };
    const r = await builder([plugin]).run();
    expect(JSON.parse(readFileSync(r.manifestPath!, "utf8")).labels).toEqual({ built: "yes" });
  });

  it("a failure inside a tap names the hook and the plugin, and leaves nothing behind", async () => {
    const plugin: FledgePlugin = {
      name: "acme-sbom",
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
      name: "acme-boom",
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
      name: "acme-async",
      apply(b) {
        // biome-ignore lint/suspicious/noExplicitAny: a JavaScript plugin's mistake, which the types rule out
        b.hooks.compressor.for("async-gz").tap("acme-async", (async () => undefined) as any);
      },
    };
    const b = builder([plugin], cfg({ output: { compression: "async-gz", arch: "x86_64" } }));
    const e = await failure(b.run());
    expect(e.issues?.[0]?.message).toMatch(/hooks.compressor.for\("async-gz"\) is synchronous, but the tap returned a promise/);
  });

  it("a plugin can add a compressor by name", async () => {
    const { PassThrough } = await import("node:stream");
    const plugin: FledgePlugin = {
      name: "acme-identity",
      apply(b) {
        b.hooks.compressor.for("identity").tap("acme-identity", () => ({ name: "identity", extension: "", createStream: () => new PassThrough() }));
      },
    };
    const r = await builder([plugin], cfg({ output: { compression: "identity", arch: "x86_64" } })).run();
    expect(readFileSync(r.artifact.path).subarray(0, 6).toString()).toBe("070701");
  });

  it("an unknown compression fails before anything is built, listing the known ones", async () => {
    const e = await failure(builder([], cfg({ output: { compression: "brotli", arch: "x86_64" } })).run());
    expect(e.issues).toEqual([expect.objectContaining({ keyPath: "output.compression", message: 'unknown compression "brotli"', hint: expect.stringContaining("gzip") })]);
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

describe("afterBuild: before the commit on staged files, after it on the written ones", () => {
  const artifact = () => join(dir, "out.cpio.gz");
  const manifest = () => join(dir, "t.manifest.json");

  it("(c) VERIFY, SBOM and SIGN see the staged artifact and nothing under the output names; UPLOAD and REPORT see the files in place", async () => {
    const order: string[] = [];
    const plugin: FledgePlugin = {
      name: "steps",
      apply(b) {
        for (const [label, stage] of Object.entries(AfterBuildStage)) {
          if (label === "COMMIT") continue;
          b.hooks.afterBuild.tapPromise({ name: "steps", stage }, async (result) => {
            const staged = existsSync(result.artifact.stagedPath);
            order.push(`${label} committed=${result.committed} staged=${staged} final=${existsSync(artifact())} manifest=${existsSync(manifest())}`);
          });
        }
        b.hooks.done.tap("steps", () => void order.push("done"));
      },
    };
    await builder([plugin]).run();
    expect(order).toEqual([
      "VERIFY committed=false staged=true final=false manifest=false",
      "SBOM committed=false staged=true final=false manifest=false",
      "SIGN committed=false staged=true final=false manifest=false",
      "UPLOAD committed=true staged=false final=true manifest=true",
      "REPORT committed=true staged=false final=true manifest=true",
      "done",
    ]);
  });

  for (const stage of ["VERIFY", "SBOM", "SIGN"] as const) {
    it(`a failure in ${stage} leaves nothing under the output names, and what was there before untouched`, async () => {
      writeFileSync(artifact(), "previous artifact");
      const plugin: FledgePlugin = {
        name: `failing-${stage.toLowerCase()}`,
        apply(b) {
          b.hooks.afterBuild.tapPromise({ name: "x", stage: AfterBuildStage[stage] }, async () => {
            throw new Error("does not boot");
          });
        },
      };
      const e = await failure(builder([plugin]).run());
      expect(e).toMatchObject({ name: "PluginError", message: `plugin "failing-${stage.toLowerCase()}" failed in hooks.afterBuild: does not boot` });
      expect(readdirSync(dir)).toEqual(["out.cpio.gz"]);
      expect(readFileSync(artifact(), "utf8")).toBe("previous artifact");
    });
  }

  for (const stage of ["UPLOAD", "REPORT"] as const) {
    it(`a failure in ${stage} keeps the artifact and the manifest and says so`, async () => {
      const plugin: FledgePlugin = {
        name: "publisher",
        apply(b) {
          b.hooks.afterBuild.tapPromise({ name: "publisher", stage: AfterBuildStage[stage] }, async () => {
            throw new Error("registry said 503");
          });
        },
      };
      const e = await failure(builder([plugin]).run());
      expect(e).toMatchObject({ name: "PostBuildError", code: "FLEDGE_POST_BUILD", plugin: "publisher", hook: "afterBuild", kept: [artifact(), manifest()] });
      expect(e.message).toBe('plugin "publisher" failed in hooks.afterBuild: registry said 503\nthe build itself succeeded: out.cpio.gz and t.manifest.json were written and are kept');
      expect(readdirSync(dir).sort()).toEqual(["out.cpio.gz", "t.manifest.json"]);
    });
  }

  it("a plugin's output is written with the others, all moved into place together", async () => {
    const seen: string[] = [];
    const plugin: FledgePlugin = {
      name: "sbom",
      apply(b) {
        b.hooks.check.tap("sbom", (_check, ctx) => {
          ctx.outputs.add(`${ctx.options.output}.spdx.json`, { label: "sbom" });
        });
        b.hooks.afterBuild.tapPromise({ name: "sbom", stage: AfterBuildStage.SBOM }, async (result, ctx) => {
          const out = ctx.outputs.list().find((o) => o.label === "sbom")!;
          expect(out.stagedPath).toMatch(new RegExp(`/\\.fledge-tmp-${process.pid}-[0-9a-f]{8}-[0-9a-f]{12}-out\\.cpio\\.gz\\.spdx\\.json$`));
          await out.write(JSON.stringify({ artifact: result.artifact.sha256 }));
          seen.push(...readdirSync(dir).filter((f) => !f.startsWith(".fledge-tmp")));
        });
      },
    };
    const r = await builder([plugin]).run();
    expect(seen).toEqual([]);
    expect(readdirSync(dir).sort()).toEqual(["out.cpio.gz", "out.cpio.gz.spdx.json", "t.manifest.json"]);
    expect(r.outputs.map((o) => [o.label, o.plugin])).toEqual([
      ["artifact", "fledge"],
      ["manifest", "fledge"],
      ["sbom", "sbom"],
    ]);
  });

  it("an output a plugin added but never wrote fails the build before anything is moved", async () => {
    const plugin: FledgePlugin = {
      name: "forgetful",
      apply(b) {
        b.hooks.check.tap("forgetful", (_c, ctx) => void ctx.outputs.add(join(dir, "extra.txt"), { label: "extra" }));
      },
    };
    const e = await failure(builder([plugin]).run());
    expect(e.message).toContain(`forgetful added the output extra (${join(dir, "extra.txt")}) but it was never written`);
    expect(readdirSync(dir)).toEqual([]);
  });
});

describe("overlays: [source] image, [source] dockerfile and [[overlay]] go to hooks.resolveSource.for(kind), in order", () => {
  const overlays = [
    { kind: "image", options: { ref: "nginx:alpine" }, keyPath: "source.image" },
    { kind: "zip", options: { path: "./a.zip", strip: 1 }, keyPath: "overlay[0]" },
    { kind: "zip", options: { path: "./b.zip" }, keyPath: "overlay[1]" },
  ];
  const provider = (kinds: string[], seen: string[]): FledgePlugin => ({
    name: "acme-sources",
    apply(b) {
      for (const kind of kinds)
        b.hooks.resolveSource.for(kind).tapPromise("acme-sources", async (req, tree) => {
          seen.push(`${req.kind} ${req.keyPath} ${JSON.stringify(req.options)} ${req.baseDir === root}`);
          tree.addFile(`/from/${req.keyPath}`, "x");
          return true;
        });
    },
  });

  it("each request reaches its plugin's tap in the overlay stage, in order, and its files are in the image", async () => {
    const seen: string[] = [];
    const r = await builder([provider(["image", "zip"], seen)], cfg({ overlays })).run();
    expect(seen).toEqual(['image source.image {"ref":"nginx:alpine"} true', 'zip overlay[0] {"path":"./a.zip","strip":1} true', 'zip overlay[1] {"path":"./b.zip"} true']);
    expect(names(r.artifact.path)).toEqual(expect.arrayContaining(["from/source.image", "from/overlay[0]", "from/overlay[1]"]));
  });

  it("a kind no plugin provides fails before anything is fetched or written, naming the first-party plugin for a first-party kind", async () => {
    const fetched: string[] = [];
    const watch: FledgePlugin = {
      name: "watch",
      apply(b) {
        b.hooks.inputs.tap("watch", () => void fetched.push("inputs"));
      },
    };
    const e = await failure(builder([watch], cfg({ overlays: [...overlays, { kind: "tarball", options: { url: "http://x/y.tar" }, keyPath: "overlay[2]" }] })).run());
    expect(e.issues).toEqual([
      expect.objectContaining({ keyPath: "source.image", message: '[source] image needs @fledge/plugin-oci, which provides "image" sources, and it is not installed' }),
      expect.objectContaining({ keyPath: "overlay[0]", message: 'no plugin provides "zip" sources' }),
      expect.objectContaining({ keyPath: "overlay[1]", message: 'no plugin provides "zip" sources' }),
      expect.objectContaining({ keyPath: "overlay[2]", message: 'an [[overlay]] of kind "tarball" needs @fledge/plugin-tarball, which provides "tarball" sources, and it is not installed' }),
    ]);
    expect(fetched).toEqual([]);
    expect(readdirSync(dir)).toEqual([]);
  });

  it("a Dockerfile source needs an image source too (its plugin overlays what it builds as an image)", async () => {
    const dockerfile = { kind: "dockerfile", options: { dockerfile: "./Dockerfile" }, keyPath: "source.dockerfile" };
    const e = await failure(builder([provider(["dockerfile"], [])], cfg({ overlays: [dockerfile] })).run());
    expect(e.issues).toEqual([
      expect.objectContaining({ keyPath: "source.dockerfile", message: '"dockerfile" sources are overlaid as "image" sources, and no plugin provides those: @fledge/plugin-oci is not installed' }),
    ]);
    await expect(builder([provider(["dockerfile", "image"], [])], cfg({ overlays: [dockerfile] })).run()).resolves.toBeTruthy();
  });

  it("a tap that does not return true is an error naming the source", async () => {
    const lazy: FledgePlugin = {
      name: "lazy",
      apply(b) {
        b.hooks.resolveSource.for("image").tapPromise("lazy", async () => undefined);
      },
    };
    const e = await failure(builder([lazy], cfg({ overlays: [overlays[0]!] })).run());
    expect(e.message).toBe('source.image: no plugin handled the "image" source');
  });
});

describe("manifest defaults from plugins", () => {
  // A manifest.toml the user wrote, with only a name and version (without one, fledge derives the workload).
  const bare: ManifestConfig = { file: "/nonexistent/manifest.toml", text: 'name = "t"\nversion = "0.1.0"\n', data: { name: "t", version: "0.1.0" }, notes: [] };
  const imagePlugin = (expect_: boolean): FledgePlugin => ({
    name: "image-config",
    apply(b) {
      if (expect_)
        b.hooks.check.tap("image-config", (_c, ctx) => {
          ctx.manifestDefaults.expect("workload.entrypoint", "the image");
          ctx.manifestDefaults.expect("workload.base_url", "the image");
        });
      b.hooks.overlay.tap("image-config", (_t, ctx) => {
        ctx.manifestDefaults.set("workload.entrypoint", ["/docker-entrypoint.sh", "nginx"], "image nginx@sha256:abc");
        ctx.manifestDefaults.set("workload.env", { PATH: "/usr/bin", NGINX_VERSION: "1.27" }, "image nginx@sha256:abc");
        ctx.manifestDefaults.set("workload.base_url", "http://127.0.0.1:80", "image nginx@sha256:abc");
        ctx.manifestDefaults.set("workload.workdir", "/srv", "image nginx@sha256:abc");
      });
    },
  });

  it("fill what manifest.toml leaves out, each with a note saying where it came from", async () => {
    const logs: LogEvent[] = [];
    const b = builder([imagePlugin(true)], cfg(), bare);
    b.hooks.log.tap("t", (e) => void logs.push(e));
    const r = await b.run();
    expect(r.manifest!.workload).toEqual({ type: "http", base_url: "http://127.0.0.1:80", entrypoint: ["/docker-entrypoint.sh", "nginx"], env: { PATH: "/usr/bin", NGINX_VERSION: "1.27" }, workdir: "/srv" });
    expect(logs.filter((l) => l.source === "fledge:manifest").map((l) => l.message)).toEqual([
      'manifest: workload.entrypoint = ["/docker-entrypoint.sh","nginx"] from image nginx@sha256:abc (manifest.toml does not set it)',
      "manifest: workload.env PATH, NGINX_VERSION from image nginx@sha256:abc",
      'manifest: workload.base_url = "http://127.0.0.1:80" from image nginx@sha256:abc (manifest.toml does not set it)',
      'manifest: workload.workdir = "/srv" from image nginx@sha256:abc (manifest.toml does not set it)',
    ]);
  });

  it("manifest.toml always wins, variable by variable for env", async () => {
    const mine: ManifestConfig = { data: { name: "t", version: "0.1.0", env: { PATH: "/mine" }, workload: { entrypoint: "/app", base_url: "http://127.0.0.1:8000" } }, notes: [] };
    const r = await builder([imagePlugin(false)], cfg(), mine).run();
    expect(r.manifest!.workload).toEqual({ type: "http", base_url: "http://127.0.0.1:8000", entrypoint: ["/app"], env: { PATH: "/mine", NGINX_VERSION: "1.27" }, workdir: "/srv" });
  });

  it("pre-flight does not demand of manifest.toml what a plugin promised to provide", async () => {
    const e = await failure(builder([], cfg(), bare).run());
    expect(e.issues?.[0]?.message).toContain("needs a [workload] with an entrypoint");
    await expect(builder([imagePlugin(true)], cfg(), bare).run()).resolves.toBeTruthy();
  });
});
