import { existsSync, readFileSync, statSync } from "node:fs";
import { dirname, isAbsolute, join, resolve } from "node:path";
import { fileURLToPath, pathToFileURL } from "node:url";
import type { ConfigIssue, PluginSpec } from "@fledge/config";
import { assertRegularFile } from "@fledge/safe-fs";
import type { FledgePlugin } from "./builder.js";
import { importModule } from "./import-module.js";

/**
 * A schema a plugin may publish for its options, as `static optionsSchema` on its class or
 * `optionsSchema` on its factory: any Standard Schema (zod ≥ 3.24, valibot, arktype) or an
 * object with zod's `safeParse`.
 */
export type OptionsSchema =
  | { "~standard": { validate(value: unknown): StandardResult | Promise<StandardResult> } }
  | { safeParse(value: unknown): { success: true; data: unknown } | { success: false; error: { issues: { message: string; path: PropertyKey[] }[] } } };

type StandardResult = { value: unknown; issues?: undefined } | { issues: readonly { message: string; path?: readonly (PropertyKey | { key: PropertyKey })[] }[] };

/**
 * A plugin class: constructed with the options of its fledge.toml entry — the value its
 * `optionsSchema` returned when it has one (validated from `{}` when the entry gives none), else
 * the table as written (`undefined` when there is none). A constructor that requires its options
 * fits, as does one that makes them optional.
 */
// biome-ignore lint/suspicious/noExplicitAny: the default lets a class with any options type be a PluginClass (constructor parameters are checked contravariantly)
export interface PluginClass<O = any> {
  new (options: O): FledgePlugin;
  optionsSchema?: OptionsSchema;
}

/** A plugin factory: called with the options of its fledge.toml entry, as a class is constructed. */
// biome-ignore lint/suspicious/noExplicitAny: the default lets a factory with any options type be a PluginFactory (parameters are checked contravariantly)
export interface PluginFactory<O = any> {
  (options: O): FledgePlugin | Promise<FledgePlugin>;
  optionsSchema?: OptionsSchema;
}

/** What a plugin module may export as its default. */
export type PluginExport = FledgePlugin | PluginClass | PluginFactory;

export interface LoadedPlugin {
  plugin: FledgePlugin;
  /** The module as written. */
  use: string;
  /** The file it was loaded from; absent for a plugin bundled with the program (`bundled`). */
  file?: string;
}

/**
 * Plugin packages built into the program that runs fledge, by package name: the one-file
 * executable has no node_modules, so the CLI hands its first-party plugins over as `import()`s
 * (which its bundler resolves at build time).
 */
export type BundledPlugins = Readonly<Record<string, () => Promise<Record<string, unknown>>>>;

/** Where to look for a plugin package besides the project: the CLI passes its own directory. */
export interface LoadOptions {
  /** The directory of fledge.toml: relative modules resolve against it, packages are looked up from it first. */
  rootDir: string;
  /** fledge.toml, for issues. */
  file: string;
  /** More directories to look for packages from (after `rootDir`). */
  searchPaths?: readonly string[];
  /**
   * Packages built into the program: used when `rootDir` has no installed copy (a project's
   * own install wins), before `searchPaths` and fledge's own install.
   */
  bundled?: BundledPlugins;
}

/** A plugin that could not be loaded, as one or more issues at its entry in fledge.toml. */
export class PluginLoadError extends Error {
  override name = "PluginLoadError";
  readonly code = "FLEDGE_PLUGIN_LOAD";
  constructor(readonly issues: ConfigIssue[]) {
    super(issues.map((i) => i.message).join("\n"));
  }
}

const CORE_DIR = dirname(fileURLToPath(import.meta.url));

/** Finds `<dir>/node_modules/<pkg>` walking up from `dir`. */
function findPackage(name: string, dir: string): string | undefined {
  let cur = resolve(dir);
  for (;;) {
    const candidate = join(cur, "node_modules", name);
    if (existsSync(join(candidate, "package.json"))) return candidate;
    const up = dirname(cur);
    if (up === cur) return undefined;
    cur = up;
  }
}

/** The ESM entry of a package for `subpath` (`.` or `./x`), by its `exports` (import, node, default) or `main`. */
function packageEntry(pkgDir: string, subpath: string): string | undefined {
  const pkg = JSON.parse(readFileSync(join(pkgDir, "package.json"), "utf8")) as { exports?: unknown; main?: string };
  const pick = (target: unknown): string | undefined => {
    if (typeof target === "string") return target;
    if (Array.isArray(target)) {
      for (const t of target) {
        const r = pick(t);
        if (r) return r;
      }
      return undefined;
    }
    if (target && typeof target === "object") {
      for (const cond of ["import", "node", "default"]) if (cond in target) return pick((target as Record<string, unknown>)[cond]);
    }
    return undefined;
  };
  if (pkg.exports !== undefined) {
    const exp = pkg.exports as Record<string, unknown> | string;
    const isMap = typeof exp === "object" && !Array.isArray(exp) && Object.keys(exp).some((k) => k.startsWith("."));
    const target = isMap ? (exp as Record<string, unknown>)[subpath] : subpath === "." ? exp : undefined;
    const rel = pick(target);
    return rel ? join(pkgDir, rel) : undefined;
  }
  if (subpath !== ".") return join(pkgDir, subpath);
  const main = pkg.main ?? "index.js";
  const file = join(pkgDir, main);
  if (existsSync(file) && statSync(file).isFile()) return file;
  return existsSync(file + ".js") ? file + ".js" : join(file, "index.js");
}

/** The file a plugin module resolves to, or undefined when it cannot be found. */
export function resolvePluginModule(use: string, opts: Pick<LoadOptions, "rootDir" | "searchPaths">): string | undefined {
  const found = locatePlugin(use, opts);
  return found && "file" in found ? found.file : undefined;
}

/** Where a plugin module comes from: a file, a package bundled with the program, or nowhere. */
export function locatePlugin(use: string, opts: Pick<LoadOptions, "rootDir" | "searchPaths" | "bundled">): { file: string } | { bundled: () => Promise<Record<string, unknown>> } | undefined {
  if (use.startsWith(".") || isAbsolute(use)) {
    const file = resolve(opts.rootDir, use);
    return existsSync(file) ? { file } : undefined;
  }
  const m = /^((?:@[^/]+\/)?[^/]+)(\/.*)?$/.exec(use);
  if (!m) return undefined;
  const inPackage = (dir: string) => {
    const pkgDir = findPackage(m[1]!, dir);
    const entry = pkgDir && packageEntry(pkgDir, m[2] ? `.${m[2]}` : ".");
    return entry && existsSync(entry) ? { file: entry } : undefined;
  };
  const own = inPackage(opts.rootDir);
  if (own) return own;
  const bundled = opts.bundled && Object.hasOwn(opts.bundled, use) ? opts.bundled[use] : undefined;
  if (bundled) return { bundled };
  for (const dir of [...(opts.searchPaths ?? []), CORE_DIR]) {
    const found = inPackage(dir);
    if (found) return found;
  }
  return undefined;
}

const describe = (x: unknown): string => {
  if (x === undefined) return "nothing";
  if (x === null) return "null";
  if (typeof x === "function") return `a function (${x.name || "anonymous"})`;
  if (Array.isArray(x)) return "an array";
  if (typeof x === "object") return `an object without apply() (keys: ${Object.keys(x).join(", ") || "none"})`;
  return `${typeof x} ${JSON.stringify(x)}`;
};

const isPluginObject = (x: unknown): x is FledgePlugin => !!x && typeof x === "object" && typeof (x as FledgePlugin).apply === "function";

/** ES classes, and compiled classes whose prototype has an apply method. */
// biome-ignore lint/complexity/noBannedTypes: what `typeof x === "function"` narrows an export to; only its source text and prototype are read
function isClass(fn: Function): boolean {
  if (/^class[\s{]/.test(Function.prototype.toString.call(fn))) return true;
  const proto = (fn as { prototype?: { apply?: unknown } }).prototype;
  return !!proto && Object.hasOwn(proto, "apply") && typeof proto.apply === "function";
}

async function validateOptions(schema: OptionsSchema, value: unknown): Promise<{ value: unknown; issues: { message: string; path: string }[] }> {
  const keyOf = (p: PropertyKey | { key: PropertyKey }) => String(typeof p === "object" && p !== null ? p.key : p);
  const joinPath = (path: readonly (PropertyKey | { key: PropertyKey })[] = []) => path.map((p) => keyOf(p)).reduce((acc, k) => (/^\d+$/.test(k) ? `${acc}[${k}]` : acc ? `${acc}.${k}` : k), "");
  if ("~standard" in schema) {
    const r = await schema["~standard"].validate(value);
    if (r.issues) return { value, issues: r.issues.map((i) => ({ message: i.message, path: joinPath(i.path) })) };
    return { value: r.value, issues: [] };
  }
  const r = schema.safeParse(value);
  if (r.success) return { value: r.data, issues: [] };
  return { value, issues: r.error.issues.map((i) => ({ message: i.message, path: joinPath(i.path) })) };
}

/**
 * Loads one `plugins` entry: resolves the module (a path relative to fledge.toml, or a package
 * looked up from the project, then `searchPaths`, then fledge's own install), imports it, and
 * makes the plugin from its default export — a class (constructed with the options), a factory
 * (called with them) or a plugin object. Options are checked against the export's
 * `optionsSchema` when it has one. Every failure is a PluginLoadError with issues at the entry.
 */
export async function loadPlugin(spec: PluginSpec, opts: LoadOptions): Promise<LoadedPlugin> {
  const at = (message: string, hint?: string, keyPath = spec.keyPath): ConfigIssue => ({ file: opts.file, keyPath, message, ...(hint ? { hint } : {}) });
  const local = spec.use.startsWith(".") || isAbsolute(spec.use);
  const found = locatePlugin(spec.use, opts);
  if (!found)
    throw new PluginLoadError([
      at(
        local ? `plugin "${spec.use}": ${resolve(opts.rootDir, spec.use)} does not exist` : `plugin "${spec.use}" is not installed (looked from ${opts.rootDir})`,
        local ? "module paths are relative to fledge.toml" : `npm install ${spec.use}`,
      ),
    ]);
  const file = "file" in found ? found.file : undefined;
  let mod: Record<string, unknown>;
  try {
    if ("bundled" in found) mod = await found.bundled();
    else {
      await assertRegularFile(found.file); // import() of a FIFO would hang the process
      mod = await importModule(pathToFileURL(found.file).href);
    }
  } catch (err) {
    throw new PluginLoadError([at(`plugin "${spec.use}" failed to load: ${(err as Error).message}`)]);
  }
  const exp = mod.default;
  const expected = "export default a plugin class (constructed with the options), a factory function (called with them), or a plugin object { name, apply(builder) }";
  if (exp === undefined) throw new PluginLoadError([at(`plugin "${spec.use}" has no default export${Object.keys(mod).length ? ` (it exports ${Object.keys(mod).sort().join(", ")})` : ""}`, expected)]);
  let plugin: unknown;
  if (typeof exp === "function") {
    const schema = (exp as { optionsSchema?: OptionsSchema }).optionsSchema;
    let options: unknown = spec.options;
    if (schema) {
      const r = await validateOptions(schema, spec.options ?? {});
      if (r.issues.length) throw new PluginLoadError(r.issues.map((i) => at(i.message, undefined, `${spec.keyPath}.options${i.path ? `.${i.path}` : ""}`)));
      options = r.value;
    }
    try {
      plugin = isClass(exp) ? new (exp as new (o: unknown) => unknown)(options) : await (exp as (o: unknown) => unknown)(options);
    } catch (err) {
      const e = err as Error & { hint?: string };
      throw new PluginLoadError([at(`plugin "${spec.use}" could not be created from its options: ${e?.message ?? String(err)}`, e?.hint)]);
    }
    if (!isPluginObject(plugin)) throw new PluginLoadError([at(`plugin "${spec.use}": its ${isClass(exp) ? "class" : "factory"} gave ${describe(plugin)}, not a plugin`, expected)]);
  } else if (isPluginObject(exp)) {
    if (spec.options !== undefined)
      throw new PluginLoadError([at(`plugin "${spec.use}" exports a plugin object, which takes no options`, "export a class or a factory function to take options", `${spec.keyPath}.options`)]);
    plugin = exp;
  } else {
    throw new PluginLoadError([at(`plugin "${spec.use}" exports ${describe(exp)}, not a plugin`, expected)]);
  }
  const p = plugin as FledgePlugin;
  if (typeof p.name !== "string" || !p.name.trim()) throw new PluginLoadError([at(`plugin "${spec.use}" has no name`, 'give it one (readonly name = "my-plugin"): it appears in its errors and log lines')]);
  return { plugin: p, use: spec.use, ...(file !== undefined ? { file } : {}) };
}

/**
 * Loads `plugins = [...]` from fledge.toml, in order. Throws a PluginLoadError listing every
 * entry that failed.
 */
export async function loadPlugins(specs: readonly PluginSpec[], opts: LoadOptions): Promise<LoadedPlugin[]> {
  const out: LoadedPlugin[] = [];
  const issues: ConfigIssue[] = [];
  for (const spec of specs) {
    try {
      out.push(await loadPlugin(spec, opts));
    } catch (err) {
      if (err instanceof PluginLoadError) issues.push(...err.issues);
      else throw err;
    }
  }
  if (issues.length) throw new PluginLoadError(issues);
  return out;
}
