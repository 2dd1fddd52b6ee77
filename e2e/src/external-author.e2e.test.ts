/**
 * The external-author check (issue 10): a project outside the workspace installs @fledge/core
 * and @fledge/cli from `npm pack` tarballs, writes a class plugin with options in TypeScript,
 * type-checks it against the packed `.d.ts` (strict, skipLibCheck off; a wrong option type and a
 * misused API fail the check), tests it with `@fledge/core/testing`, and builds with it through
 * the installed `fledge`, loaded from fledge.toml as `{ use = "./dist/motd.mjs", options = { … } }`.
 *
 * No network: every package the project installs is a local tarball — the @fledge packages from
 * `npm pack --workspaces`, their third-party runtime dependencies packed from the workspace's
 * node_modules (the versions the lock file pins) — pinned by `overrides`, installed with
 * `--offline`, an empty cache of its own and a registry that is a closed port on 127.0.0.1.
 * TypeScript and @types/node are the workspace's.
 */
import { execFileSync, spawnSync } from "node:child_process";
import { existsSync, mkdirSync, mkdtempSync, readFileSync, realpathSync, rmSync, writeFileSync } from "node:fs";
import { createRequire } from "node:module";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { afterAll, beforeAll, describe, expect, it } from "vitest";

const ROOT = fileURLToPath(new URL("../..", import.meta.url));
const TSC = createRequire(import.meta.url).resolve("typescript/bin/tsc");

let dir: string;
let project: string;
const npmEnv = { ...process.env, npm_config_update_notifier: "false", npm_config_fund: "false", npm_config_audit: "false" };
const npm = (args: string[], cwd: string) => spawnSync("npm", args, { cwd, encoding: "utf8", env: npmEnv, timeout: 300_000 });

/** Where Node would find the package `name` from `from` (the nearest node_modules upwards), real path. */
function findInstalled(name: string, from: string): string | undefined {
  for (let d = from; ; d = dirname(d)) {
    const candidate = join(d, "node_modules", name);
    if (existsSync(join(candidate, "package.json"))) return realpathSync(candidate);
    if (dirname(d) === d) return undefined;
  }
}

beforeAll(() => {
  dir = mkdtempSync(join(tmpdir(), "fledge-external-"));
  project = join(dir, "acme-motd");
  mkdirSync(join(project, "src"), { recursive: true });
});
afterAll(() => rmSync(dir, { recursive: true, force: true }));

const PLUGIN = `import type { Builder, FledgePlugin, OptionsSchema, PluginClass } from "@fledge/core";

export interface MotdOptions {
  /** The message of the day. */
  text: string;
  /** Where it goes in the image (default /etc/motd). */
  path?: string;
}

const optionsSchema: OptionsSchema = {
  "~standard": {
    validate(value) {
      const o = (value ?? {}) as Partial<MotdOptions>;
      if (typeof o.text !== "string" || !o.text) return { issues: [{ message: "must be a non-empty string", path: [{ key: "text" }] }] };
      if (o.path !== undefined && (typeof o.path !== "string" || !o.path.startsWith("/"))) return { issues: [{ message: "must be an absolute path in the image", path: [{ key: "path" }] }] };
      return { value: o };
    },
  },
};

export default class MotdPlugin implements FledgePlugin {
  static optionsSchema = optionsSchema;
  readonly name = "acme-motd";
  readonly #options: MotdOptions;
  constructor(options: MotdOptions) {
    this.#options = options;
  }
  apply(builder: Builder): void {
    builder.hooks.beforeArchive.tap(this.name, (tree, ctx) => {
      tree.addFile(this.#options.path ?? "/etc/motd", this.#options.text, { mode: 0o644, origin: "acme" });
      ctx.info(\`motd added at \${this.#options.path ?? "/etc/motd"}\`);
    });
  }
}

// what fledge constructs from fledge.toml: the class fits @fledge/core's PluginClass with these options
export const plugin: PluginClass<MotdOptions> = MotdPlugin;
`;

const PLUGIN_TEST = `import { testBuild } from "@fledge/core/testing";
import MotdPlugin from "./motd.mjs";

const t = await testBuild({ plugins: [new MotdPlugin({ text: "from the testing kit\\n" })] });
try {
  const text = await t.text("/etc/motd");
  const entry = t.entry("/etc/motd");
  if (text !== "from the testing kit\\n" || entry?.origin !== "acme" || entry.mode !== 0o644) throw new Error(\`unexpected: \${JSON.stringify({ text, entry })}\`);
  console.log("testing kit ok");
} finally {
  await t.cleanup();
}
`;

/** Type errors a plugin author must get from the packed declarations. */
const BAD_OPTIONS = `import type { PluginClass } from "@fledge/core";
import MotdPlugin from "./motd.mjs";
// a wrong option type
export const wrong = new MotdPlugin({ text: 42 });
// the class as a plugin taking other options
export const other: PluginClass<{ text: number }> = MotdPlugin;
`;
const BAD_API = `import type { FledgePlugin } from "@fledge/core";
export const bad: FledgePlugin = {
  name: "bad",
  apply(b) {
    // the tree takes bytes or a string, not a number
    b.hooks.beforeArchive.tap("bad", (tree) => { tree.addFile("/x", 42); });
    // tapPromise exists only on async hooks; a hook that does not exist
    b.hooks.noSuchHook.tap("bad", () => {});
  },
};
`;

describe("a plugin author outside the workspace", () => {
  it("installs @fledge/core and @fledge/cli from npm pack tarballs, type-checks a class plugin with options against the packed .d.ts, tests it, and builds with it", { timeout: 600_000 }, () => {
    // 1. npm pack every workspace package (the CLI depends on them; none is published).
    const packs = join(dir, "packs");
    mkdirSync(packs);
    const packed = npm(["pack", "--workspaces", "--json", "--pack-destination", packs], ROOT);
    expect(packed.status, packed.stderr).toBe(0);
    const infos = JSON.parse(packed.stdout) as { name: string; filename: string; files: { path: string }[] }[];
    const tarballs: Record<string, string> = {};
    for (const info of infos) {
      const pkg = JSON.parse(readFileSync(join(ROOT, "node_modules", info.name, "package.json"), "utf8")) as { private?: boolean };
      if (!pkg.private) tarballs[info.name] = `file:${join(packs, info.filename)}`;
    }
    expect(Object.keys(tarballs)).toEqual(
      expect.arrayContaining(["@fledge/core", "@fledge/cli", "@fledge/config", "@fledge/cpio", "@fledge/fetch", "@fledge/manifest", "@fledge/cinit", "@fledge/plugin-tarball", "@fledge/plugin-sbom"]),
    );
    expect(infos.find((i) => i.name === "@fledge/core")!.files.map((f) => f.path)).toEqual(expect.arrayContaining(["dist/index.d.ts", "dist/testing.d.ts", "dist/index.js"]));

    // Their third-party runtime dependencies, packed from the workspace's node_modules.
    const thirdParty = new Map<string, string>();
    const walk = (pkgDir: string) => {
      const pkg = JSON.parse(readFileSync(join(pkgDir, "package.json"), "utf8")) as { dependencies?: Record<string, string>; optionalDependencies?: Record<string, string> };
      for (const dep of Object.keys({ ...pkg.dependencies, ...pkg.optionalDependencies })) {
        if (dep.startsWith("@fledge/") || thirdParty.has(dep)) continue;
        const found = findInstalled(dep, pkgDir);
        expect(found, `${dep} (a dependency of ${pkgDir}) is installed in the workspace`).toBeDefined();
        thirdParty.set(dep, found!);
        walk(found!);
      }
    };
    for (const name of Object.keys(tarballs)) walk(realpathSync(join(ROOT, "node_modules", name)));
    const deps = npm(["pack", "--ignore-scripts", "--json", "--pack-destination", packs, ...thirdParty.values()], ROOT);
    expect(deps.status, deps.stderr).toBe(0);
    const pinned: Record<string, string> = { ...tarballs };
    for (const info of JSON.parse(deps.stdout) as { name: string; filename: string }[]) pinned[info.name] = `file:${join(packs, info.filename)}`;
    expect(Object.keys(pinned)).toEqual(expect.arrayContaining(["tapable", "smol-toml", "tar-stream"]));

    // 2. A project of its own, installed from those tarballs alone: `overrides` pin every
    // dependency to its tarball, the registry is a closed port and the cache starts empty, so
    // nothing comes from anywhere else.
    writeFileSync(join(project, ".npmrc"), "registry=http://127.0.0.1:9/\nfetch-retries=0\n");
    writeFileSync(join(project, "package.json"), JSON.stringify({ name: "acme-fledge-motd", version: "1.0.0", private: true, type: "module", dependencies: tarballs, overrides: pinned }, null, 2));
    const install = npm(["install", "--offline", "--cache", join(dir, "npm-cache"), "--no-audit", "--no-fund"], project);
    expect(install.status, install.stderr).toBe(0);
    const core = realpathSync(join(project, "node_modules", "@fledge", "core"));
    expect(core.startsWith(project), `@fledge/core is the installed copy, not the workspace's (${core})`).toBe(true);

    // 3. The plugin in TypeScript, type-checked strictly against the packed declarations.
    writeFileSync(join(project, "src", "motd.mts"), PLUGIN);
    writeFileSync(join(project, "src", "motd.check.mts"), PLUGIN_TEST);
    writeFileSync(
      join(project, "tsconfig.json"),
      JSON.stringify({
        compilerOptions: {
          target: "ES2022",
          module: "NodeNext",
          moduleResolution: "NodeNext",
          strict: true,
          noUncheckedIndexedAccess: true,
          skipLibCheck: false,
          declaration: true,
          outDir: "dist",
          rootDir: "src",
          typeRoots: [join(ROOT, "node_modules", "@types")],
          types: ["node"],
        },
        include: ["src"],
      }),
    );
    const tsc = (args: string[] = []) => spawnSync(process.execPath, [TSC, "-p", project, ...args], { cwd: project, encoding: "utf8" });
    const compiled = tsc();
    expect(compiled.stdout + compiled.stderr, "the plugin type-checks against the packed .d.ts").toBe("");
    expect(compiled.status).toBe(0);

    // The check can fail: a wrong option type and a misused API are type errors.
    writeFileSync(join(project, "src", "bad-options.mts"), BAD_OPTIONS);
    writeFileSync(join(project, "src", "bad-api.mts"), BAD_API);
    const failing = tsc(["--noEmit"]);
    rmSync(join(project, "src", "bad-options.mts"));
    rmSync(join(project, "src", "bad-api.mts"));
    expect(failing.status).not.toBe(0);
    const errors = failing.stdout.split("\n").filter((l) => l.includes("error TS"));
    expect(errors.filter((l) => l.startsWith("src/bad-options.mts(4,"))[0], failing.stdout).toMatch(/error TS2322: Type 'number' is not assignable to type 'string'/);
    expect(
      errors.filter((l) => l.startsWith("src/bad-options.mts(6,")),
      failing.stdout,
    ).toHaveLength(1);
    expect(errors.filter((l) => l.startsWith("src/bad-api.mts(6,"))[0], failing.stdout).toMatch(/error TS2345: Argument of type 'number'/);
    expect(errors.filter((l) => l.startsWith("src/bad-api.mts(8,"))[0], failing.stdout).toMatch(/noSuchHook/);
    expect(
      errors.filter((l) => l.startsWith("src/motd")),
      failing.stdout,
    ).toEqual([]);

    // 4. Its own test, with the testing kit from the packed @fledge/core.
    const kit = spawnSync(process.execPath, [join(project, "dist", "motd.check.mjs")], { cwd: project, encoding: "utf8" });
    expect(kit.stdout + kit.stderr).toContain("testing kit ok");
    expect(kit.status).toBe(0);

    // 5. A build with the installed fledge: the plugin from fledge.toml by a relative path, with options.
    writeFileSync(join(project, "init"), "#!/bin/sh\n", { mode: 0o755 });
    const toml = (options: string) => `version = "1"\nplugins = [{ use = "./dist/motd.mjs", options = { ${options} } }]\n[init]\nnone = true\n[source]\nbusybox = false\n[mappings]\n"./init" = "/init"\n`;
    writeFileSync(join(project, "fledge.toml"), toml('text = "hello from a third party\\n", path = "/etc/motd"'));
    writeFileSync(join(project, "manifest.toml"), 'name = "site"\nversion = "1.0.0"\n[workload]\nentrypoint = "/init"\nbase_url = "http://127.0.0.1:8000"\n');
    const fledge = join(project, "node_modules", ".bin", "fledge");
    expect(realpathSync(fledge).startsWith(project)).toBe(true);
    const env = { ...process.env, FLEDGE_CACHE_DIR: join(dir, "cache"), NO_COLOR: "1" };
    const built = spawnSync(fledge, ["build", "-v"], { cwd: project, encoding: "utf8", env });
    expect(built.status, built.stderr).toBe(0);
    expect(built.stderr).toContain("motd added at /etc/motd");
    const listing = JSON.parse(execFileSync(fledge, ["--json", "inspect", "plugin.cpio.gz"], { cwd: project, encoding: "utf8", env })) as { entries: { path: string }[] };
    expect(listing.entries.map((e) => e.path)).toContain("etc/motd");
    // the bytes in the image, as bsdtar reads the archive
    expect(execFileSync("bsdtar", ["-xOf", join(project, "plugin.cpio.gz"), "etc/motd"], { encoding: "utf8" })).toBe("hello from a third party\n");

    // Bad options are caught by the plugin's schema, at the entry of fledge.toml, and nothing is written.
    rmSync(join(project, "plugin.cpio.gz"));
    rmSync(join(project, "manifest.json"), { force: true });
    writeFileSync(join(project, "fledge.toml"), toml("text = 42"));
    const bad = spawnSync(fledge, ["build"], { cwd: project, encoding: "utf8", env });
    expect(bad.status).toBe(1);
    expect(bad.stderr).toMatch(/fledge\.toml:2:\d+ plugins\[0\]\.options\.text: .*must be a non-empty string/);
    expect(existsSync(join(project, "plugin.cpio.gz"))).toBe(false);
  });
});
