import { dirname, join, resolve } from "node:path";
import { checkFledgeConfig, checkManifestTomlData, ConfigError, defaultPluginName, placeIssues, readToml, type ConfigIssue, type FledgeConfig, type ManifestConfig } from "@fledge/config";
import type { Fetcher } from "@fledge/fetch";
import { Builder, manifestRules, type CheckReport, type FledgePlugin, type UpdateResult } from "./builder.js";
import type { BuildOptions, BuildResult } from "./context.js";
import { CheckError } from "./errors.js";
import { defaultArtifactName } from "./artifact-name.js";
import { FIRST_PARTY } from "./first-party.js";
import { tappedKeys } from "./hooks.js";
import { loadPlugin, locatePlugin, PluginLoadError, type BundledPlugins } from "./load-plugins.js";
import type { HostInput } from "./outputs.js";

export interface PreflightRequest extends Omit<BuildOptions, "output"> {
  /** fledge.toml path. */
  config: string;
  /** manifest.toml path; default: manifest.toml beside fledge.toml (optional file). */
  manifest?: string;
  /** Artifact path; default `defaultArtifactName(config)` (plugin.cpio.gz, rootfs.img for oci_rootfs) in `outputDir`. */
  output?: string;
  /** Where the artifact goes when `output` is not given (default: the current directory). */
  outputDir?: string;
  /** Plugins given in code, applied before those of fledge.toml. */
  plugins?: FledgePlugin[];
  /** Directories to look for plugin packages from, after the project (the CLI passes its own). */
  pluginSearchPaths?: string[];
  /**
   * Plugin packages built into the program, by name (the CLI's first-party plugins, so that the
   * one-file executable, which has no node_modules, has them): used when the project has no
   * installed copy, before `pluginSearchPaths`.
   */
  bundledPlugins?: BundledPlugins;
  /** Check the output paths too (default true; `fledge update` writes no outputs). */
  checkOutputs?: boolean;
  /** Check manifest.toml too (default true; `fledge update` does not need it). */
  checkManifest?: boolean;
  /** Reuse a fetcher. */
  fetcher?: Fetcher;
  /** Called with the builder once every plugin is applied, before pre-flight runs, e.g. to attach observers. */
  onBuilder?: (builder: Builder) => void;
}

export interface BuildRequest extends PreflightRequest {}

/** Everything pre-flight found, and the builder ready to run when there are no problems. */
export interface Preflight extends CheckReport {
  ok: boolean;
  /** Notes for the user (the defaults used without a manifest.toml, plugins loaded by themselves). */
  notes: string[];
  /** Of those, the first-party plugins loaded by themselves (a build logs them; the rest it logs itself). */
  pluginNotes: string[];
  config?: FledgeConfig;
  manifestConfig?: ManifestConfig;
  /** Present when fledge.toml is valid and every plugin loaded. */
  builder?: Builder;
}

async function readConfig(file: string): Promise<{ config?: FledgeConfig; problems: ConfigIssue[]; warnings: ConfigIssue[] }> {
  let text: string;
  try {
    ({ text } = await readToml(file));
  } catch (err) {
    if (err instanceof ConfigError) return { problems: err.issues, warnings: [] };
    throw err;
  }
  const r = checkFledgeConfig(text, file);
  if (r.config) r.config.warnings = r.warnings;
  return r;
}

async function readManifest(file: string, required: boolean): Promise<{ manifest?: ManifestConfig; problems: ConfigIssue[] }> {
  let data: Record<string, unknown>;
  let text: string;
  try {
    ({ data, text } = await readToml(file));
  } catch (err) {
    if (!(err instanceof ConfigError)) throw err;
    if (!required && err.issues[0]?.message === "file not found") {
      const name = defaultPluginName(dirname(file));
      return {
        manifest: { data: { name, runtime: name, version: "0.1.0" }, notes: [`no manifest.toml at ${file}: using name "${name}", runtime "${name}", version 0.1.0`] },
        problems: [],
      };
    }
    return { problems: err.issues };
  }
  const r = checkManifestTomlData(data, file, text);
  return { manifest: { file, text, data: r.data ?? r.partial, notes: [] }, problems: r.problems };
}

/**
 * Pre-flight, the one check `fledge build`, `fledge validate` and `fledge update` share: reads
 * both files, loads and applies the plugins (fledge.toml's, then the first-party plugins the
 * config needs, when installed), then runs `Builder.check()` — strategy and overlay kinds,
 * every plugin's `hooks.check`, manifest.toml as Volant will read it, the output paths.
 * Nothing is fetched or written. Never throws for bad input: every problem is in the result,
 * with its file, key and, where it is written, line and column.
 */
export async function preflight(req: PreflightRequest): Promise<Preflight> {
  const configFile = resolve(req.config);
  const manifestFile = resolve(req.manifest ?? join(dirname(configFile), "manifest.toml"));
  const problems: ConfigIssue[] = [];
  const notes: string[] = [];
  const pluginNotes: string[] = [];
  const cfg = await readConfig(configFile);
  const man = await readManifest(manifestFile, req.manifest !== undefined);
  problems.push(...cfg.problems);
  if (man.manifest) notes.push(...man.manifest.notes);
  const done = (extra: Partial<Preflight> = {}): Preflight => {
    const all = [...problems, ...(extra.problems ?? [])];
    return { ok: all.length === 0, notes, pluginNotes, warnings: cfg.warnings, manifestWarnings: [], config: cfg.config, manifestConfig: man.manifest, ...extra, problems: all };
  };
  // Without a builder (fledge.toml or a plugin failed), manifest.toml is still checked in full.
  const manifestOnly = () => {
    if (req.checkManifest === false || !man.manifest) return { problems: req.checkManifest === false ? [] : man.problems, manifestWarnings: [] };
    // Without a manifest.toml, what it would say is derived from fledge.toml once that is valid.
    if (!man.manifest.file) return { problems: [], manifestWarnings: [] };
    const r = manifestRules(man.manifest, man.problems, req.baseUrl, [], cfg.config ? cfg.config.init.mode === "default" : true);
    return { problems: r.problems, manifestWarnings: r.warnings };
  };
  if (!cfg.config || !man.manifest) return done(manifestOnly());
  const config = cfg.config;
  const { config: _c, manifest: _m, plugins: _p, output, outputDir, pluginSearchPaths, bundledPlugins: bundled, checkOutputs, checkManifest, fetcher, onBuilder, ...options } = req;
  if (checkManifest === false) man.problems.length = 0;
  const searchPaths = pluginSearchPaths ?? [];

  const hostInputs: HostInput[] = [];
  const loaded: FledgePlugin[] = [];
  for (const spec of config.plugins) {
    try {
      const l = await loadPlugin(spec, { rootDir: config.rootDir, file: config.file, searchPaths, bundled });
      loaded.push(l.plugin);
      if (l.file) hostInputs.push({ path: l.file, what: `the plugin module ${spec.use}` });
    } catch (err) {
      if (!(err instanceof PluginLoadError)) throw err;
      problems.push(...place(err.issues, config));
    }
  }
  if (problems.length) return done(manifestOnly());

  const builder = new Builder({
    config,
    manifestConfig: man.manifest,
    manifestProblems: man.problems,
    options: { ...options, output: resolve(output ?? join(outputDir ?? ".", defaultArtifactName(config))) },
    hostInputs,
    ...(fetcher ? { fetcher } : {}),
  });
  const use = (p: FledgePlugin, keyPath: string) => {
    try {
      builder.use(p);
    } catch (err) {
      const e = err as Error & { hint?: string };
      problems.push(...place([{ file: config.file, keyPath, message: e.message, ...(e.hint ? { hint: e.hint } : {}) }], config));
    }
  };
  for (const p of req.plugins ?? []) builder.use(p);
  for (const [i, p] of loaded.entries()) use(p, config.plugins[i]!.keyPath);

  // First-party plugins behind keys of fledge.toml are loaded by themselves when installed.
  const wanted: { pkg: string; keyPath: string }[] = [];
  if (!tappedKeys(builder.hooks.strategy).includes(config.strategy) && FIRST_PARTY.strategies[config.strategy]) wanted.push({ pkg: FIRST_PARTY.strategies[config.strategy]!, keyPath: "strategy" });
  for (const o of config.overlays)
    for (const kind of [o.kind, ...(FIRST_PARTY.requires[o.kind] ?? [])])
      if (!tappedKeys(builder.hooks.resolveSource).includes(kind) && FIRST_PARTY.sources[kind]) wanted.push({ pkg: FIRST_PARTY.sources[kind]!, keyPath: o.keyPath });
  // issue 15: [check] turns on the boot check (unless the plugin is already applied)
  if (config.check && !builder.plugins.includes(FIRST_PARTY.tables.check!)) wanted.push({ pkg: FIRST_PARTY.tables.check!, keyPath: "check" });
  const seen = new Set<string>();
  for (const w of wanted) {
    if (seen.has(w.pkg)) continue;
    seen.add(w.pkg);
    if (!locatePlugin(w.pkg, { rootDir: config.rootDir, searchPaths, bundled })) continue; // reported by check(): "not installed"
    try {
      const l = await loadPlugin({ use: w.pkg, keyPath: w.keyPath }, { rootDir: config.rootDir, file: config.file, searchPaths, bundled });
      use(l.plugin, w.keyPath);
      notes.push(`${w.keyPath} uses ${w.pkg} (loaded by itself)`);
      pluginNotes.push(`${w.keyPath} uses ${w.pkg} (loaded by itself)`);
    } catch (err) {
      if (!(err instanceof PluginLoadError)) throw err;
      problems.push(...place(err.issues, config));
    }
  }
  if (problems.length) return done(manifestOnly());
  onBuilder?.(builder);
  const report = await builder.check({ outputs: checkOutputs !== false, manifest: checkManifest !== false });
  return done({ ...report, notes: [...notes, ...report.notes], warnings: report.warnings, builder });
}

/** Issues at entries of fledge.toml, with their line and column. */
function place(issues: ConfigIssue[], config: FledgeConfig): ConfigIssue[] {
  return config.text ? placeIssues(issues, config.text) : issues;
}

/** Pre-flight, then the build. Throws the pre-flight problems (all of them) before any work. */
export async function build(req: BuildRequest): Promise<BuildResult> {
  const pf = await preflight(req);
  if (!pf.builder || !pf.ok) {
    throw new CheckError(pf.problems);
  }
  for (const n of pf.pluginNotes) pf.builder.context.info(n, "fledge:plugins");
  return pf.builder.run();
}

export interface UpdateRequest extends Omit<PreflightRequest, "output" | "manifestOutput" | "checkOutputs" | "checkManifest" | "locked"> {}

/** `fledge update`: pre-flight, then every input of the build (plugins' included) resolved afresh into fledge.lock. */
export async function updateLock(req: UpdateRequest): Promise<UpdateResult> {
  const pf = await preflight({ ...req, checkOutputs: false, checkManifest: false });
  if (!pf.builder || !pf.ok) throw new CheckError(pf.problems);
  return pf.builder.updateInputs();
}
