import { createRequire } from "node:module";
import { isAbsolute, join, resolve } from "node:path";
import { pathToFileURL } from "node:url";
import type { FledgePlugin } from "./builder.js";
import { FledgeError } from "./errors.js";
import { importModule } from "./import-module.js";

function isPlugin(x: unknown): x is FledgePlugin {
  return !!x && typeof (x as FledgePlugin).apply === "function";
}

/**
 * Loads `plugins = [...]` from fledge.toml. Each entry is a module (package name, or a path
 * relative to fledge.toml) whose default export is a plugin object, a plugin class, or a
 * function returning a plugin.
 */
export async function loadPlugins(specs: string[], rootDir: string): Promise<FledgePlugin[]> {
  const out: FledgePlugin[] = [];
  const require = createRequire(join(rootDir, "fledge.toml"));
  for (const spec of specs) {
    let url: string;
    try {
      url = spec.startsWith(".") || isAbsolute(spec) ? pathToFileURL(resolve(rootDir, spec)).href : pathToFileURL(require.resolve(spec)).href;
    } catch (err) {
      throw new FledgeError("FLEDGE_PLUGIN_LOAD", `cannot find plugin "${spec}" (from ${rootDir})`, { cause: err, hint: `npm install ${spec}` });
    }
    let mod: Record<string, unknown>;
    try {
      mod = await importModule(url);
    } catch (err) {
      throw new FledgeError("FLEDGE_PLUGIN_LOAD", `plugin "${spec}" failed to load: ${(err as Error).message}`, { cause: err });
    }
    const exp: unknown = mod.default ?? mod.plugin;
    let plugin: unknown = exp;
    if (typeof exp === "function" && !isPlugin(exp)) {
      const fn = exp as { prototype?: { apply?: unknown } } & (() => unknown);
      plugin = typeof fn.prototype?.apply === "function" ? new (fn as unknown as new () => FledgePlugin)() : fn();
    }
    if (!isPlugin(plugin)) throw new FledgeError("FLEDGE_PLUGIN_LOAD", `plugin "${spec}" does not export a plugin (an object with apply(builder))`);
    out.push(plugin);
  }
  return out;
}
