import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { createRequire } from "node:module";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { pathToFileURL } from "node:url";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { loadPlugin, locatePlugin, PluginLoadError, resolvePluginModule } from "./load-plugins.js";
import { Builder } from "./builder.js";
import { testConfig, testManifest } from "./test-helpers.js";

let root: string;
let n = 0;
beforeAll(() => {
  root = mkdtempSync(join(tmpdir(), "fledge-load-"));
});
afterAll(() => rmSync(root, { recursive: true, force: true }));

const ZOD = pathToFileURL(createRequire(import.meta.url).resolve("zod")).href;

/** Writes a module and returns its name relative to `root`. */
function mod(source: string, ext = "mjs"): string {
  const name = `./m${++n}.${ext}`;
  writeFileSync(join(root, name), source);
  return name;
}

const load = (use: string, options?: Record<string, unknown>, keyPath = "plugins[0]") => loadPlugin({ use, ...(options ? { options } : {}), keyPath }, { rootDir: root, file: join(root, "fledge.toml") });

async function issues(p: Promise<unknown>) {
  try {
    await p;
  } catch (e) {
    if (e instanceof PluginLoadError) return e.issues.map((i) => `${i.keyPath}: ${i.message}${i.hint ? ` (hint: ${i.hint})` : ""}`);
    throw e;
  }
  throw new Error("expected a PluginLoadError");
}

/** Applies a loaded plugin to a builder and runs one tap to prove it works. */
async function motdOf(plugin: Awaited<ReturnType<typeof load>>["plugin"]): Promise<string | undefined> {
  const b = new Builder({ config: testConfig(), manifestConfig: testManifest(), options: { output: join(root, "x.cpio.gz") }, plugins: [plugin], builtins: false });
  const { RootfsTree } = await import("./tree.js");
  const tree = new RootfsTree();
  await b.hooks.beforeArchive.promise(tree, b.context);
  const node = tree.get("/etc/motd");
  return node?.type === "file" && "data" in node ? Buffer.from(node.data).toString() : undefined;
}

const MOTD_CLASS = `export default class MotdPlugin {
  name = "motd";
  constructor(options = {}) { this.text = options.text ?? "default"; }
  apply(builder) { builder.hooks.beforeArchive.tap(this.name, (tree) => { tree.addFile("/etc/motd", this.text); }); }
}`;

describe("plugin modules: the default export", () => {
  it("a class is constructed with the options (the form plugins/README.md prescribes)", async () => {
    const l = await load(mod(MOTD_CLASS), { text: "hello from options" });
    expect(l.plugin.name).toBe("motd");
    expect(await motdOf(l.plugin)).toBe("hello from options");
  });

  it("a factory function is called with the options", async () => {
    const use = mod(`export default function motd(options) {
      return { name: "motd-factory", apply(b) { b.hooks.beforeArchive.tap("motd-factory", (t) => { t.addFile("/etc/motd", options.text); }); } };
    }`);
    const l = await load(use, { text: "from a factory" });
    expect(l.plugin.name).toBe("motd-factory");
    expect(await motdOf(l.plugin)).toBe("from a factory");
  });

  it("an async factory is awaited", async () => {
    const use = mod(`export default async (o) => ({ name: "async-factory", apply(b) { b.hooks.beforeArchive.tap("a", (t) => { t.addFile("/etc/motd", o?.text ?? "none"); }); } });`);
    expect(await motdOf((await load(use)).plugin)).toBe("none");
  });

  it("a plugin object is used as it is, and refuses options", async () => {
    const use = mod(`export default { name: "obj", apply(b) { b.hooks.beforeArchive.tap("obj", (t) => { t.addFile("/etc/motd", "obj"); }); } };`);
    expect(await motdOf((await load(use)).plugin)).toBe("obj");
    expect(await issues(load(use, { x: 1 }))).toEqual([`plugins[0].options: plugin "${use}" exports a plugin object, which takes no options (hint: export a class or a factory function to take options)`]);
  });

  it("a CommonJS module.exports class works too", async () => {
    const use = mod(`module.exports = class { constructor(o) { this.name = "cjs"; this.o = o; } apply(b) { b.hooks.beforeArchive.tap("cjs", (t) => { t.addFile("/etc/motd", this.o.text); }); } };`, "cjs");
    expect(await motdOf((await load(use, { text: "cjs" })).plugin)).toBe("cjs");
  });

  it("anything else is an error naming the module and what it exported", async () => {
    const expected = "export default a plugin class (constructed with the options), a factory function (called with them), or a plugin object { name, apply(builder) }";
    const num = mod("export default 42;");
    expect(await issues(load(num))).toEqual([`plugins[0]: plugin "${num}" exports number 42, not a plugin (hint: ${expected})`]);
    const obj = mod("export default { name: 'x' };");
    expect(await issues(load(obj))).toEqual([`plugins[0]: plugin "${obj}" exports an object without apply() (keys: name), not a plugin (hint: ${expected})`]);
    const named = mod("export const plugin = {};\nexport function helper() {}");
    expect(await issues(load(named))).toEqual([`plugins[0]: plugin "${named}" has no default export (it exports helper, plugin) (hint: ${expected})`]);
    const badFactory = mod("export default () => 'nope';");
    expect(await issues(load(badFactory))).toEqual([`plugins[0]: plugin "${badFactory}": its factory gave string "nope", not a plugin (hint: ${expected})`]);
  });

  it("a plugin without a name, a throwing constructor, a module that fails to load: each named", async () => {
    const nameless = mod("export default class { apply() {} }");
    expect(await issues(load(nameless))).toEqual([`plugins[0]: plugin "${nameless}" has no name (hint: give it one (readonly name = "my-plugin"): it appears in its errors and log lines)`]);
    const throwing = mod("export default class { constructor() { throw new Error('needs a token'); } }");
    expect(await issues(load(throwing))).toEqual([`plugins[0]: plugin "${throwing}" could not be created from its options: needs a token`]);
    const broken = mod("export default (;");
    expect((await issues(load(broken)))[0]).toMatch(new RegExp(`^plugins\\[0\\]: plugin "\\${broken}" failed to load: `));
  });

  it("a plugin module that is a FIFO is refused before it is opened (an import would hang)", async () => {
    const { execFileSync } = await import("node:child_process");
    execFileSync("mkfifo", [join(root, "fifo.mjs")]);
    const msg = (await issues(load("./fifo.mjs")))[0]!;
    expect(msg).toMatch(/^plugins\[0\]: plugin "\.\/fifo\.mjs" failed to load: .*fifo\.mjs is a FIFO/);
  });

  it("a missing module: a path names the file looked for, a package says to install it", async () => {
    expect(await issues(load("./nope.mjs"))).toEqual([`plugins[0]: plugin "./nope.mjs": ${join(root, "nope.mjs")} does not exist (hint: module paths are relative to fledge.toml)`]);
    expect(await issues(load("@acme/fledge-nothing"))).toEqual([`plugins[0]: plugin "@acme/fledge-nothing" is not installed (looked from ${root}) (hint: npm install @acme/fledge-nothing)`]);
  });
});

describe("plugin options are checked by the plugin's optionsSchema", () => {
  it("a zod schema: problems at plugins[i].options.<key>, defaults applied", async () => {
    const use = mod(`import { z } from "${ZOD}";
export default class Motd {
  static optionsSchema = z.strictObject({ text: z.string().min(1), repeat: z.number().int().default(1) });
  name = "motd";
  constructor(o) { this.o = o; }
  apply(b) { b.hooks.beforeArchive.tap("motd", (t) => { t.addFile("/etc/motd", this.o.text.repeat(this.o.repeat)); }); }
}`);
    expect(await motdOf((await load(use, { text: "ab" })).plugin)).toBe("ab");
    expect(await motdOf((await load(use, { text: "ab", repeat: 3 })).plugin)).toBe("ababab");
    const bad = await issues(load(use, { text: "", colour: "red" }, "plugins[2]"));
    expect(bad).toHaveLength(2);
    expect(bad).toEqual(expect.arrayContaining([expect.stringMatching(/^plugins\[2\]\.options\.text: (?!text:)/), expect.stringMatching(/^plugins\[2\]\.options: .*colour/)]));
  });

  it("any Standard Schema works, and a factory can carry one", async () => {
    const use =
      mod(`const schema = { "~standard": { version: 1, vendor: "test", validate: (v) => typeof v.port === "number" ? { value: v } : { issues: [{ message: "port must be a number", path: [{ key: "port" }] }] } } };
export default Object.assign((o) => ({ name: "std", apply() {} }), { optionsSchema: schema });`);
    expect((await load(use, { port: 1 })).plugin.name).toBe("std");
    expect(await issues(load(use, { port: "x" }))).toEqual(["plugins[0].options.port: port must be a number"]);
  });
});

describe("resolving plugin packages", () => {
  it("finds an ESM-only package (exports with only an import condition) from the project, then from search paths", () => {
    const pkg = join(root, "elsewhere", "node_modules", "@acme", "fledge-esm");
    mkdirSync(join(pkg, "dist"), { recursive: true });
    writeFileSync(join(pkg, "package.json"), JSON.stringify({ name: "@acme/fledge-esm", type: "module", exports: { ".": { types: "./dist/index.d.ts", import: "./dist/index.js" } } }));
    writeFileSync(join(pkg, "dist", "index.js"), "export default { name: 'esm', apply() {} };");
    expect(resolvePluginModule("@acme/fledge-esm", { rootDir: root })).toBeUndefined();
    expect(resolvePluginModule("@acme/fledge-esm", { rootDir: root, searchPaths: [join(root, "elsewhere")] })).toBe(join(pkg, "dist", "index.js"));
  });
});

describe("plugins bundled with the program (the one-file executable has no node_modules)", () => {
  const plugin = (name: string) => ({ default: { name, apply() {} } });

  it("a bundled package is used when the project has none installed, before the search paths", async () => {
    const pkg = join(root, "cli-install", "node_modules", "@acme", "fledge-bundled");
    mkdirSync(pkg, { recursive: true });
    writeFileSync(join(pkg, "package.json"), JSON.stringify({ name: "@acme/fledge-bundled", type: "module", exports: "./index.js" }));
    writeFileSync(join(pkg, "index.js"), "export default { name: 'from-search-path', apply() {} };");
    let calls = 0;
    const bundled = {
      "@acme/fledge-bundled": async () => {
        calls++;
        return plugin("from-bundle");
      },
    };
    const opts = { rootDir: root, file: join(root, "fledge.toml"), searchPaths: [join(root, "cli-install")], bundled };
    expect(locatePlugin("@acme/fledge-bundled", opts)).toHaveProperty("bundled");
    expect(calls).toBe(0); // located, not loaded
    const l = await loadPlugin({ use: "@acme/fledge-bundled", keyPath: "plugins[0]" }, opts);
    expect(l.plugin.name).toBe("from-bundle");
    expect(l.file).toBeUndefined();
    expect(calls).toBe(1);
    // without the bundle, the search path finds the installed copy
    const { bundled: _b, ...noBundle } = opts;
    expect((await loadPlugin({ use: "@acme/fledge-bundled", keyPath: "plugins[0]" }, noBundle)).plugin.name).toBe("from-search-path");
  });

  it("a copy installed in the project wins over the bundled one", async () => {
    const project = join(root, "project-own");
    const pkg = join(project, "node_modules", "@acme", "fledge-own");
    mkdirSync(pkg, { recursive: true });
    writeFileSync(join(pkg, "package.json"), JSON.stringify({ name: "@acme/fledge-own", type: "module", exports: "./index.js" }));
    writeFileSync(join(pkg, "index.js"), "export default { name: 'from-project', apply() {} };");
    const l = await loadPlugin({ use: "@acme/fledge-own", keyPath: "plugins[0]" }, { rootDir: project, file: join(project, "fledge.toml"), bundled: { "@acme/fledge-own": async () => plugin("from-bundle") } });
    expect(l.plugin.name).toBe("from-project");
    expect(l.file).toBe(join(pkg, "index.js"));
  });

  it("only exact package names are bundled (no subpaths, no prototype keys), and a failing bundle is a load error", async () => {
    const bundled = {
      "@acme/b": async () => plugin("b"),
      "@acme/broken": async () => {
        throw new Error("boom");
      },
    };
    const opts = { rootDir: root, file: join(root, "fledge.toml"), bundled };
    expect(locatePlugin("@acme/b/sub", opts)).toBeUndefined();
    expect(locatePlugin("constructor", opts)).toBeUndefined();
    expect(await issues(loadPlugin({ use: "@acme/broken", keyPath: "plugins[1]" }, opts))).toEqual(['plugins[1]: plugin "@acme/broken" failed to load: boom']);
  });
});
