/**
 * `@fledge/core/testing`: run a plugin in a real build, in a temp directory, with no CLI and
 * no network, and assert on the image's entries. See docs/plugins.md, "Testing a plugin".
 */
import { createHash } from "node:crypto";
import { mkdir, mkdtemp, open, readFile, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";
import { ContentCache, Fetcher } from "@fledge/fetch";
import { readArchive, type ReadEntry } from "@fledge/cpio";
import { preflight } from "./build.js";
import type { Builder, FledgePlugin } from "./builder.js";
import type { BuildOptions, BuildResult, LogEvent } from "./context.js";
import { CheckError } from "./errors.js";
import { Stage, TREE_STAGES, type TreeStage } from "./hooks.js";
import { runTreeStages } from "./stages.js";
import type { RootfsTree, TreeNode } from "./tree.js";

export interface TestBuildOptions {
  /** The plugins under test, applied before those of fledge.toml. */
  plugins?: FledgePlugin[];
  /**
   * fledge.toml. Default: the none init mode with a small `/init` script, busybox left out — so
   * nothing is fetched.
   */
  config?: string;
  /** manifest.toml. Default: a minimal one that Volant accepts. */
  manifest?: string;
  /** Files of the project, by path relative to its directory (a mode with `{ content, mode }`). */
  files?: Record<string, string | Uint8Array | { content: string | Uint8Array; mode: number }>;
  /** What URL inputs download: the cache is seeded with these, and the network is off. */
  downloads?: Record<string, string | Uint8Array>;
  /**
   * `"tree"` (default): run only the tree stages (or `stages`) and return the tree. `"build"`:
   * the whole build — strategy, archive, manifest, afterBuild — and the archive read back.
   */
  mode?: "tree" | "build";
  /** The tree stages to run in `"tree"` mode (default all). */
  stages?: readonly TreeStage[];
  /** Build options (output names, compression, …). Paths are relative to the project directory. */
  options?: Partial<Omit<BuildOptions, "offline" | "cacheDir" | "scratchDir">>;
  /** Keep the project directory for inspection (default: removed by `cleanup()`). */
  keep?: boolean;
}

/** One entry of the image, as a test reads it. */
export interface TestEntry {
  path: string;
  type: TreeNode["type"];
  mode?: number;
  uid: number;
  gid: number;
  origin?: string;
  /** Symlink and hardlink targets. */
  target?: string;
  major?: number;
  minor?: number;
}

export interface TestBuild {
  /** The project directory (fledge.toml, the files, the outputs). */
  dir: string;
  /** The image's tree. */
  tree: RootfsTree;
  /** Every path in the image, sorted. */
  paths(): string[];
  /** One entry, or undefined. */
  entry(path: string): TestEntry | undefined;
  /** The bytes of a regular file (or a hard link to one) in the image. */
  read(path: string): Promise<Buffer>;
  /** The same as text. */
  text(path: string): Promise<string>;
  /** Everything logged, in order. */
  logs: LogEvent[];
  /** The warnings. */
  warnings: string[];
  /** `"build"` mode: the result, and the archive's entries as the kernel would read them. */
  result?: BuildResult;
  archive?: ReadEntry[];
  /** Removes the project directory. */
  cleanup(): Promise<void>;
}

const DEFAULT_CONFIG = `version = "1"
[init]
none = true
[source]
busybox = false
[mappings]
"./init" = "/init"
`;
const DEFAULT_INIT = "#!/bin/sh\nexec sleep 1\n";
const DEFAULT_MANIFEST = `name = "test"
version = "0.1.0"
[workload]
entrypoint = "/init"
base_url = "http://127.0.0.1:8000"
`;

/**
 * Builds a throwaway project with your plugins, offline, and returns the image to assert on.
 * Throws the same errors a build would (pre-flight problems as one error listing them all).
 */
export async function testBuild(opts: TestBuildOptions = {}): Promise<TestBuild> {
  const dir = await mkdtemp(join(tmpdir(), "fledge-test-"));
  const cacheDir = join(dir, ".cache");
  try {
    const files: NonNullable<TestBuildOptions["files"]> = { ...(opts.config === undefined ? { init: { content: DEFAULT_INIT, mode: 0o755 } } : {}), ...opts.files };
    for (const [rel, f] of Object.entries(files)) {
      const p = join(dir, rel);
      await mkdir(dirname(p), { recursive: true });
      const { content, mode } = typeof f === "object" && !(f instanceof Uint8Array) ? f : { content: f, mode: 0o644 };
      await writeFile(p, content, { mode });
    }
    await writeFile(join(dir, "fledge.toml"), opts.config ?? DEFAULT_CONFIG);
    await writeFile(join(dir, "manifest.toml"), opts.manifest ?? DEFAULT_MANIFEST);
    const cache = new ContentCache(cacheDir);
    for (const [url, content] of Object.entries(opts.downloads ?? {})) {
      const f = join(dir, ".download-" + createHash("sha256").update(url).digest("hex").slice(0, 12));
      await writeFile(f, content);
      await cache.add(f, { url });
      await rm(f);
    }
    const logs: LogEvent[] = [];
    const fetcher = new Fetcher({ cacheDir, offline: true, env: {} });
    let tree: RootfsTree | undefined;
    const mode = opts.mode ?? "tree";
    const treeOnly: FledgePlugin = {
      name: "fledge-testing:tree",
      apply(builder: Builder) {
        // Tapped once pre-flight has checked the strategy against the plugins: the strategy
        // must still be one a plugin provides, but only its tree stages run.
        builder.hooks.check.tap("fledge-testing:tree", (_check, ctx) => {
          builder.hooks.strategy.for(ctx.config.strategy).tapPromise({ name: "fledge-testing:tree", stage: Stage.PRE - 1 }, async (c) => {
            tree = await runTreeStages(builder, c, { stages: opts.stages ?? TREE_STAGES });
            const out = c.outputs.artifact;
            await out.write("");
            return { kind: "initramfs", path: out.path, stagedPath: out.stagedPath, sha256: createHash("sha256").digest("hex"), size: 0, tree };
          });
        });
      },
    };
    const at = (p: string | undefined) => (p === undefined ? undefined : join(dir, p));
    const pf = await preflight({
      ...opts.options,
      config: join(dir, "fledge.toml"),
      output: at(opts.options?.output) ?? join(dir, "out", "plugin.cpio.gz"),
      manifestOutput: at(opts.options?.manifestOutput),
      cacheDir,
      // kept until cleanup(): the tree's spilled files are read after the build
      scratchDir: join(dir, ".scratch"),
      offline: true,
      env: opts.options?.env ?? {},
      fetcher,
      plugins: [...(opts.plugins ?? []), ...(mode === "tree" ? [treeOnly] : [])],
      onBuilder: (b) => {
        b.hooks.log.tap("fledge-testing", (e) => {
          logs.push(e);
        });
      },
    });
    if (!pf.builder || !pf.ok) throw new CheckError(pf.problems);
    const result = await pf.builder.run();
    tree = result.tree ?? tree;
    if (!tree) throw new Error("the strategy gave no tree (ArtifactInfo.tree)");
    const t = tree;
    const nodeOf = (path: string): TreeNode | undefined => (t.has(path) ? t.get(path) : undefined);
    const build: TestBuild = {
      dir,
      tree: t,
      paths: () => t.paths(),
      entry(path) {
        const n = nodeOf(path);
        if (!n) return undefined;
        return {
          path,
          type: n.type,
          ...("mode" in n ? { mode: n.mode } : {}),
          uid: n.uid ?? 0,
          gid: n.gid ?? 0,
          ...(n.origin !== undefined ? { origin: n.origin } : {}),
          ...("target" in n ? { target: n.target } : {}),
          ...("major" in n ? { major: n.major, minor: n.minor } : {}),
        };
      },
      async read(path) {
        let n = nodeOf(path);
        if (n?.type === "hardlink") n = nodeOf(n.target);
        if (n?.type !== "file") throw new Error(`${path} is ${n ? `a ${n.type}` : "not in the image"}, not a regular file`);
        if ("data" in n) return Buffer.from(n.data);
        if ("hostPath" in n) {
          if (n.offset === undefined) return readFile(n.hostPath);
          const fh = await open(n.hostPath, "r");
          try {
            const buf = Buffer.alloc(n.size ?? 0);
            const { bytesRead } = await fh.read(buf, 0, buf.length, n.offset);
            return buf.subarray(0, bytesRead);
          } finally {
            await fh.close();
          }
        }
        const parts: Buffer[] = [];
        for await (const c of n.open()) parts.push(Buffer.from(c));
        return Buffer.concat(parts);
      },
      async text(path) {
        return (await build.read(path)).toString("utf8");
      },
      logs,
      warnings: result.warnings,
      cleanup: () => (opts.keep ? Promise.resolve() : rm(dir, { recursive: true, force: true })),
    };
    if (mode === "build") {
      build.result = result;
      build.archive = (await readArchive(await readFile(result.artifact.path))).entries;
    }
    return build;
  } catch (err) {
    if (!opts.keep) await rm(dir, { recursive: true, force: true });
    throw err;
  }
}
