import { randomBytes } from "node:crypto";
import { rmSync, statSync } from "node:fs";
import { rm, stat } from "node:fs/promises";
import { tmpdir } from "node:os";
import { basename, dirname, join, resolve } from "node:path";
import { byPosition, didYouMean, dropEchoes, formatIssue, placeIssues, type ConfigIssue, type FledgeConfig, type ManifestConfig } from "@fledge/config";
import { Fetcher } from "@fledge/fetch";
import { checkManifest, mergeManifest } from "@fledge/manifest";
import { CheckError, FledgeError, PluginError } from "./errors.js";
import { AfterBuildStage, createHooks, tappedKeys, type FledgeHooks } from "./hooks.js";
import { InputSet, type BuildInputs, type InputRegistry, type LockChange, type LockMode } from "./inputs.js";
import { COLLECT, guardHooks, SCOPE } from "./intercept.js";
import { LOCK_FILE, type Lockfile } from "./lockfile.js";
import { applyManifestDefaults, ManifestDefaultsImpl, withPromisedDefaults, type ManifestDefaults } from "./manifest-defaults.js";
import { OutputTransaction, type DiscardReason, type HostInput, type Output, type Outputs } from "./outputs.js";
import { FIRST_PARTY } from "./first-party.js";
import { removeStaleTemps } from "./temps.js";
import { removeOwnTempsSync } from "@fledge/safe-fs";
import { DEFAULT_MTIME, type ArtifactInfo, type BlobRequest, type BuildContext, type BuildOptions, type BuildResult, type Check, type FetchedFile, type LogLevel } from "./context.js";
import { builtinPlugins } from "./plugins/index.js";

/**
 * A fledge plugin: a named object whose `apply` taps the builder's hooks (and does nothing
 * else). The name appears in every error and log line of the plugin.
 */
export interface FledgePlugin {
  readonly name: string;
  apply(builder: Builder): void;
}

export interface BuilderInit {
  config: FledgeConfig;
  manifestConfig: ManifestConfig;
  options: BuildOptions;
  /** Plugins, applied in order before the built-in ones (more with `use()` before `run()`). */
  plugins?: FledgePlugin[];
  /** Apply the built-in initramfs pipeline (default true; false for tests of the bus itself). */
  builtins?: boolean;
  /** Reuse a fetcher (tests, or a CLI that wires progress itself). */
  fetcher?: Fetcher;
  /** Problems manifest.toml's schema found while it was read (reported with the manifest rules, without echoes). */
  manifestProblems?: ConfigIssue[];
  /** Host files the build reads besides those of fledge.toml (plugin modules): outputs may not overwrite them. */
  hostInputs?: HostInput[];
}

/** What pre-flight found: no problems means the build may start. */
export interface CheckReport {
  problems: ConfigIssue[];
  /** fledge.toml warnings and those of `hooks.check` taps. */
  warnings: ConfigIssue[];
  /** What Volant would drop or trip over in manifest.toml (a build reports them when it writes the manifest). */
  manifestWarnings: ConfigIssue[];
  /** The manifest defaults set in pre-flight, as the notes a build prints when it uses them. */
  notes: string[];
  /** Set when a plugin discarded the manifest output in pre-flight: no manifest.json will be written, and why. */
  manifestReasons?: DiscardReason[];
}

/** What `updateInputs()` did to fledge.lock. */
export interface UpdateResult {
  path: string;
  lock: Lockfile;
  changes: LockChange[];
  written: boolean;
}

/** The error of a build whose outputs were written before a later step (upload, report, `done`) failed. */
export class PostBuildError extends FledgeError {
  override name = "PostBuildError";
  /** The outputs written and kept. */
  readonly kept: string[];
  readonly hook?: string;
  readonly plugin?: string;
  constructor(cause: Error & { hook?: string; plugin?: string }, kept: string[]) {
    super("FLEDGE_POST_BUILD", `${cause.message}\nthe build itself succeeded: ${listOf(kept.map((k) => basename(k)))} ${kept.length === 1 ? "was" : "were"} written and ${kept.length === 1 ? "is" : "are"} kept`, {
      cause,
      hint: (cause as { hint?: string }).hint,
    });
    this.kept = kept;
    if (cause.hook) this.hook = cause.hook;
    if (cause.plugin) this.plugin = cause.plugin;
  }
}

/** `a`, `a and b`, `a, b and c`. */
const listOf = (items: string[]) => (items.length < 2 ? items.join("") : `${items.slice(0, -1).join(", ")} and ${items[items.length - 1]}`);

/** mtime from SOURCE_DATE_EPOCH, else the fixed epoch. */
export function resolveMtime(env: NodeJS.ProcessEnv = process.env): number {
  const s = env.SOURCE_DATE_EPOCH;
  if (s === undefined || s === "") return DEFAULT_MTIME;
  if (!/^\d+$/.test(s) || Number(s) > 0xffffffff) throw new FledgeError("FLEDGE_EPOCH", `SOURCE_DATE_EPOCH=${s} is not a whole number of seconds between 0 and 4294967295`);
  return Number(s);
}

const isLocal = (url: string) => !/^[a-z][a-z0-9+.-]*:\/\//i.test(url) || /^file:\/\//i.test(url);
const localPath = (url: string) => (/^file:\/\//i.test(url) ? new URL(url).pathname : url);

/**
 * One build. Create it, apply plugins (`plugins`, `use()`), then `run()`. The hooks object is
 * frozen: its shape is the public API. The built-in plugins are applied first, in the
 * constructor; `use()` is refused once `check()` or `run()` has started.
 */
export class Builder {
  readonly hooks: Readonly<FledgeHooks>;
  readonly context: BuildContext;
  readonly #init: BuilderInit;
  readonly #temps = new Set<string>();
  readonly #outputs = new OutputTransaction();
  readonly #defaults = new ManifestDefaultsImpl();
  readonly #plugins: string[] = [];
  #inputs: InputSet;
  #applying: string | undefined;
  #sealed = false;
  #checked: CheckReport | undefined;
  readonly #scratch: string;
  /** The scratch directory is the caller's (kept when the build ends). */
  readonly #ownScratch: boolean;

  constructor(init: BuilderInit) {
    this.#init = init;
    this.#ownScratch = !init.options.scratchDir;
    this.#scratch = init.options.scratchDir ? resolve(init.options.scratchDir) : join(tmpdir(), `fledge-${process.pid}-${randomBytes(6).toString("hex")}`);
    const hooks = createHooks();
    guardHooks(hooks, () => this.#applying);
    this.hooks = Object.freeze(hooks);
    const options = { ...init.options, output: resolve(init.options.output), mtime: init.options.mtime ?? resolveMtime() };
    const fetcher =
      init.fetcher ??
      new Fetcher({
        cacheDir: init.options.cacheDir,
        offline: init.options.offline,
        env: init.options.env,
        mirrors: init.config.fetch.mirrors,
        onProgress: (e) => this.hooks.progress.call({ kind: "fetch", label: e.label, current: e.bytes, total: e.total, rate: e.rate, done: e.done }),
        onLog: (level, message) => log(level, message, "fledge:fetch"),
      });
    this.#inputs = this.#newInputs(fetcher, options.locked ? "locked" : "auto");
    const warnings: string[] = [];
    const log = (level: LogLevel, message: string, source?: string) => this.hooks.log.call({ level, message, source });
    const inputs: BuildInputs = {
      get: (name) => this.#inputs.get(name),
      file: (name) => this.#inputs.file(name),
      names: () => this.#inputs.names(),
    };
    const outputs = this.#outputs;
    const defaults = this.#defaults;
    const config = init.config;
    const base: BuildContext = {
      config,
      manifestConfig: init.manifestConfig,
      options,
      fetcher,
      inputs,
      outputs,
      manifestDefaults: defaults,
      scratchDir: this.#scratch,
      warnings,
      warn: (m, s) => {
        warnings.push(m);
        log("warn", m, s);
      },
      info: (m, s) => log("info", m, s),
      debug: (m, s) => log("debug", m, s),
      fetchBlob: async (r: BlobRequest): Promise<FetchedFile> => {
        const got = await fetcher.fetch({ url: r.url, sha256: r.digest, label: r.label ?? r.url, ...(r.headers ? { headers: r.headers } : {}) });
        return { path: got.path, sha256: got.sha256, size: got.size, url: got.url, fromCache: got.fromCache, local: got.local, ...(got.data ? { data: got.data } : {}) };
      },
      configError: (keyPath, message, hint) => new CheckError(placed([{ file: config.file, keyPath, message, ...(hint ? { hint } : {}) }], config.text)),
      trackTemp: (p) => this.#temps.add(p),
    };
    const views = new Map<string, BuildContext>();
    Object.defineProperty(base, SCOPE, {
      enumerable: false,
      value: (plugin: string): BuildContext => {
        let v = views.get(plugin);
        if (!v) {
          const scopedOutputs: Outputs = {
            get artifact() {
              return outputs.artifact;
            },
            get manifest() {
              return outputs.manifest;
            },
            add: (path, o) => outputs.add(path, { ...o, plugin }),
            list: () => outputs.list(),
          };
          const scopedDefaults: ManifestDefaults = {
            set: (k, val, from) => {
              defaults.plugin = plugin;
              try {
                defaults.set(k, val, from);
              } finally {
                defaults.plugin = undefined;
              }
            },
            expect: (k, from) => defaults.expect(k, from),
            list: () => defaults.list(),
            expected: () => defaults.expected(),
          };
          v = Object.create(base, {
            warn: { value: (m: string, s?: string) => base.warn(m, s ?? plugin) },
            info: { value: (m: string, s?: string) => base.info(m, s ?? plugin) },
            debug: { value: (m: string, s?: string) => base.debug(m, s ?? plugin) },
            outputs: { value: scopedOutputs },
            manifestDefaults: { value: scopedDefaults },
          }) as BuildContext;
          views.set(plugin, v);
        }
        return v;
      },
    });
    this.context = base;
    // Built-ins first: a plain tap of a plugin runs after fledge's own tap of the same hook
    // (enforce: "pre" runs before it), and `before: "fledge:<name>"` can name them.
    if (init.builtins !== false) for (const p of builtinPlugins()) this.use(p);
    for (const p of init.plugins ?? []) this.use(p);
  }

  /** The names of the plugins applied so far, in order. */
  get plugins(): readonly string[] {
    return this.#plugins;
  }

  /** Applies a plugin. Its `apply()` may only tap hooks; an error in it names the plugin. */
  use(plugin: FledgePlugin): this {
    if (this.#sealed) throw new FledgeError("FLEDGE_PLUGIN", `plugin "${plugin?.name}" was applied after the build started`, { hint: "apply plugins before check() or run()" });
    if (!plugin || typeof plugin.apply !== "function") throw new FledgeError("FLEDGE_PLUGIN", `not a plugin (an object with apply(builder)): ${describe(plugin)}`);
    if (typeof plugin.name !== "string" || !plugin.name.trim())
      throw new FledgeError("FLEDGE_PLUGIN", `a plugin has no name (${describe(plugin)})`, { hint: 'give it a name: readonly name = "my-plugin", used in its errors and log lines' });
    this.#applying = plugin.name;
    try {
      plugin.apply(this);
    } catch (err) {
      throw err instanceof Error && err.name === "PluginError" ? err : new PluginError("apply", plugin.name, err);
    } finally {
      this.#applying = undefined;
    }
    this.#plugins.push(plugin.name);
    return this;
  }

  /** Adds fledge's own taps (once), after every plugin. */
  #seal(): void {
    if (this.#sealed) return;
    this.#applying = "fledge:outputs";
    this.hooks.afterBuild.tapPromise({ name: "fledge:outputs", stage: AfterBuildStage.COMMIT }, async (result) => {
      await this.#outputs.commit();
      result.committed = true;
      await this.#writeLock();
    });
    this.#applying = undefined;
    this.#sealed = true;
  }

  #newInputs(fetcher: Fetcher, mode: LockMode): InputSet {
    const config = this.#init.config;
    return new InputSet({
      lockFile: join(config.rootDir, LOCK_FILE),
      baseDir: config.rootDir,
      fetcher,
      mode,
      log: { warn: (m, s) => this.context.warn(m, s), info: (m, s) => this.context.info(m, s) },
    });
  }

  /**
   * Pre-flight: everything that can be known before anything is fetched or written — the
   * strategy and overlay kinds on offer, the `hooks.check` taps of every plugin (compressor and
   * level, mapping sources, init mode, …), manifest.toml as Volant will read it, and the output
   * paths. Never throws for bad input: returns every problem.
   */
  async check(opts: { outputs?: boolean; manifest?: boolean } = {}): Promise<CheckReport> {
    if (this.#checked) return this.#checked;
    this.#seal();
    const ctx = this.context;
    const { config } = this.#init;
    const problems: ConfigIssue[] = [];
    const warnings: ConfigIssue[] = [];
    const problem = (keyPath: string, message: string, hint?: string) => problems.push(...placed([{ file: config.file, keyPath, message, ...(hint ? { hint } : {}) }], config.text));

    // The strategy and the overlay kinds, now that every plugin is applied.
    const strategies = tappedKeys(this.hooks.strategy);
    if (!strategies.includes(config.strategy)) {
      const pkg = FIRST_PARTY.strategies[config.strategy];
      if (pkg) problem("strategy", `the "${config.strategy}" strategy is provided by ${pkg}, which is not installed`, `npm install ${pkg} (fledge loads it by itself once it is installed)`);
      else {
        const near = didYouMean(config.strategy, [...strategies, ...Object.keys(FIRST_PARTY.strategies)]);
        problem(
          "strategy",
          `no plugin provides the "${config.strategy}" strategy; on offer: ${strategies.join(", ") || "none"}`,
          near ? `did you mean "${near}"?` : `add the plugin that provides it to plugins = [ … ] in ${basename(config.file)}`,
        );
      }
    }
    const kinds = tappedKeys(this.hooks.resolveSource);
    for (const o of config.overlays) {
      if (kinds.includes(o.kind)) {
        for (const r of FIRST_PARTY.requires[o.kind] ?? [])
          if (!kinds.includes(r)) {
            const pkg = FIRST_PARTY.sources[r];
            problem(
              o.keyPath,
              `"${o.kind}" sources are overlaid as "${r}" sources, and no plugin provides those${pkg ? `: ${pkg} is not installed` : ""}`,
              pkg ? `npm install ${pkg} (fledge loads it by itself once it is installed)` : undefined,
            );
          }
        continue;
      }
      const pkg = FIRST_PARTY.sources[o.kind];
      const what = o.keyPath.startsWith("source.") ? `[source] ${o.keyPath.slice(7)}` : `an [[overlay]] of kind "${o.kind}"`;
      if (pkg) problem(o.keyPath, `${what} needs ${pkg}, which provides "${o.kind}" sources, and it is not installed`, `npm install ${pkg} (fledge loads it by itself once it is installed)`);
      else {
        const near = didYouMean(o.kind, [...kinds, ...Object.keys(FIRST_PARTY.sources)]);
        problem(
          o.keyPath,
          `no plugin provides "${o.kind}" sources${kinds.length ? `; on offer: ${kinds.join(", ")}` : ""}`,
          near ? `did you mean "${near}"?` : `add the plugin that provides them to plugins = [ … ] in ${basename(config.file)}`,
        );
      }
    }

    // Tables that turn a first-party plugin on ([check]): never validated and then ignored.
    for (const [table, pkg] of Object.entries(FIRST_PARTY.tables))
      if ((config as unknown as Record<string, unknown>)[table] !== undefined && !this.#plugins.includes(pkg))
        problem(table, `[${table}] needs ${pkg}, and it is not installed`, `npm install ${pkg} (fledge loads it by itself once it is installed)`);

    // The outputs: never over a device, a link, a directory, or an input of the build.
    for (const i of this.#hostInputs()) this.#outputs.addInput(i);
    if (opts.outputs !== false) {
      const manifestName = this.#init.manifestConfig.data.name || "plugin";
      const manifestPath = ctx.options.manifestOutput ? resolve(ctx.options.manifestOutput) : join(dirname(ctx.options.output), `${manifestName}.manifest.json`);
      for (const e of this.#outputs.setMain(ctx.options.output, manifestPath)) problems.push(outputIssue(e));
    }

    // The plugins' own checks: every tap runs, every problem is listed.
    const check = new CheckImpl(config.file, this.#outputs);
    await this.hooks.check.promise(check, ctx);
    problems.push(...placed(check.problemList, config.text).sort(byPosition));
    warnings.push(...placed(check.warningList, config.text), ...(config.warnings ?? []));

    // manifest.toml as Volant will read it, with the defaults plugins promised — unless a plugin
    // took the manifest output back (no manifest.json will be written: nothing to check).
    const dropped = this.#manifestOutput()?.discarded ? this.#manifestOutput()!.discardReasons : undefined;
    const early =
      opts.manifest === false || dropped
        ? { problems: [], warnings: [] }
        : manifestRules(this.#init.manifestConfig, this.#init.manifestProblems ?? [], ctx.options.baseUrl, this.#defaults.expected(), config.init.mode === "default");
    problems.push(...early.problems);
    const notes = dropped ? [] : applyManifestDefaults(this.#init.manifestConfig.data, this.#defaults.list(), this.#init.manifestConfig.file !== undefined).notes;
    this.#checked = { problems, warnings, manifestWarnings: early.warnings, notes, ...(dropped ? { manifestReasons: [...dropped] } : {}) };
    return this.#checked;
  }

  /** The manifest output, once pre-flight has set it up (not for `fledge update`, or when its path was refused). */
  #manifestOutput(): Output | undefined {
    try {
      return this.#outputs.manifest;
    } catch {
      return undefined;
    }
  }

  /** Host paths this build reads, from fledge.toml and the plugins loaded. */
  #hostInputs(): HostInput[] {
    const { config, manifestConfig } = this.#init;
    const out: HostInput[] = [
      { path: config.file, what: "fledge.toml" },
      { path: join(config.rootDir, LOCK_FILE), what: LOCK_FILE },
    ];
    if (manifestConfig.file) out.push({ path: manifestConfig.file, what: "manifest.toml" });
    for (const m of config.mappings) {
      const dir = isDir(m.source);
      out.push({ path: m.source, what: dir ? `the mapped directory "${m.written}" (→ ${m.dest})` : `the mapped file "${m.written}" (→ ${m.dest})`, dir });
    }
    if (config.init.mode === "custom-host") out.push({ path: config.init.hostPath, what: "[init] path" });
    if (config.agent?.source === "local") out.push({ path: config.agent.path, what: "[agent] path" });
    if (config.busybox.include && isLocal(config.busybox.url)) out.push({ path: localPath(config.busybox.url), what: "[source] busybox_url" });
    out.push(...(this.#init.hostInputs ?? []));
    return out;
  }

  /** Runs the build. On failure nothing is left under the output names. */
  async run(): Promise<BuildResult> {
    const started = performance.now();
    const ctx = this.context;
    const report = await this.check();
    if (report.problems.length) {
      await this.#close();
      throw new CheckError(report.problems);
    }
    try {
      for (const note of ctx.manifestConfig.notes) ctx.info(note, "fledge:manifest");
      for (const w of report.warnings) ctx.warn(formatIssue(w), "fledge:config");
      for (const dir of this.#outputs.dirs()) {
        const removed = await removeStaleTemps(dir);
        if (removed.length) ctx.info(`removed ${removed.length} temp file${removed.length === 1 ? "" : "s"} left in ${dir} by an interrupted build: ${removed.join(", ")}`, "fledge:outputs");
      }
      await this.#outputs.prepare();
      await this.hooks.beforeBuild.promise(ctx);
      await this.#resolveInputs();

      const strategy = ctx.config.strategy;
      const artifact = await this.hooks.strategy.get(strategy)!.promise(ctx);
      if (!artifact) throw new FledgeError("FLEDGE_STRATEGY", `the "${strategy}" strategy produced no artifact`);
      await this.#checkArtifact(artifact);

      const { tree, ...art } = artifact;
      // The manifest, unless a plugin took its output back in pre-flight (then there is none).
      const manifestOut = this.#outputs.manifest;
      let manifest: BuildResult["manifest"] = null;
      if (!manifestOut.discarded) {
        const m = ctx.manifestConfig;
        const withDefaults = applyManifestDefaults(m.data, this.#defaults.list(), m.file !== undefined);
        for (const n of withDefaults.notes) ctx.info(n, "fledge:manifest");
        for (const n of withDefaults.overridden) ctx.debug(n, "fledge:manifest");
        const merged = mergeManifest(withDefaults.data, {
          artifactPath: art.path,
          sha256: art.sha256,
          kind: art.kind,
          ...(art.format ? { format: art.format } : {}),
          baseUrl: ctx.options.baseUrl,
          manifestFile: m.file,
          manifestText: m.text,
          kestrel: ctx.config.init.mode === "default",
        });
        for (const w of merged.warningIssues) ctx.warn(formatIssue(w), "fledge:manifest");
        manifest = await this.hooks.manifest.promise(merged.manifest, ctx);
        await manifestOut.write(JSON.stringify(manifest, null, 2) + "\n");
      }

      const result: BuildResult = {
        artifact: art,
        manifestPath: manifestOut.discarded ? null : manifestOut.path,
        manifest,
        ...(manifestOut.discarded ? { manifestReasons: manifestOut.discardReasons.map((r) => ({ ...r })) } : {}),
        outputs: [],
        committed: false,
        warnings: ctx.warnings,
        durationMs: 0,
      };
      Object.defineProperty(result, "tree", { value: tree, enumerable: false });
      Object.defineProperty(result, "outputs", { enumerable: true, get: () => this.#outputs.list().map((o) => ({ label: o.label, path: o.path, plugin: o.plugin })) });
      await this.hooks.afterBuild.promise(result, ctx);
      result.durationMs = performance.now() - started;
      await this.hooks.done.promise(result);
      return result;
    } catch (err) {
      const error = err instanceof Error ? err : new Error(String(err));
      const thrown = this.#outputs.committed
        ? new PostBuildError(
            error,
            this.#outputs.list().map((o) => o.path),
          )
        : error;
      if (!this.#outputs.committed) await this.cleanup();
      try {
        this.hooks.failed.call(thrown);
      } catch {
        /* a failing observer must not hide the build error */
      }
      throw thrown;
    } finally {
      await this.#close();
    }
  }

  async #checkArtifact(a: ArtifactInfo): Promise<void> {
    const out = this.#outputs.artifact;
    if (a.path !== out.path || a.stagedPath !== out.stagedPath)
      throw new FledgeError("FLEDGE_STRATEGY", `the "${this.context.config.strategy}" strategy wrote its artifact to ${a.stagedPath} for ${a.path}, not to ctx.outputs.artifact`, {
        hint: "write the artifact at ctx.outputs.artifact.stagedPath and report ctx.outputs.artifact.path",
      });
    if (a.kind !== "initramfs" && a.kind !== "rootfs") throw new FledgeError("FLEDGE_STRATEGY", `artifact kind ${JSON.stringify(a.kind)} is neither "initramfs" nor "rootfs"`);
    const st = await stat(a.stagedPath).catch(() => undefined);
    if (!st?.isFile()) throw new FledgeError("FLEDGE_STRATEGY", `the "${this.context.config.strategy}" strategy reported an artifact it did not write (${a.stagedPath})`);
  }

  async #resolveInputs(): Promise<void> {
    await this.hooks.inputs.promise(this.#registry(), this.context);
    await this.#inputs.resolve();
  }

  /** The registry handed to `hooks.inputs`: each plugin's view records who declared what. */
  #registry(): InputRegistry {
    const set = this.#inputs;
    const registry = {
      add: (req: Parameters<InputSet["add"]>[0]) => set.add(req),
    } as InputRegistry;
    Object.defineProperty(registry, SCOPE, {
      enumerable: false,
      value: (plugin: string): InputRegistry =>
        ({
          add: (req: Parameters<InputSet["add"]>[0]) => {
            set.declaringPlugin = plugin;
            try {
              return set.add(req);
            } finally {
              set.declaringPlugin = undefined;
            }
          },
        }) as InputRegistry,
    });
    return registry;
  }

  async #writeLock(): Promise<void> {
    const ctx = this.context;
    try {
      const r = await this.#inputs.writeLock();
      if (r.written) ctx.info(`${this.#inputs.before ? "updated" : "wrote"} ${r.path}`, "fledge:lock");
    } catch (err) {
      ctx.warn(`could not write ${join(ctx.config.rootDir, LOCK_FILE)}: ${(err as Error).message}`, "fledge:lock");
    }
  }

  /**
   * `fledge update`: declares the inputs (`hooks.inputs`), resolves every one afresh and
   * rewrites fledge.lock. Nothing is built.
   */
  async updateInputs(): Promise<UpdateResult> {
    try {
      // Output paths and manifest.toml do not matter here; everything else does.
      const report = await this.check({ outputs: false, manifest: false });
      if (report.problems.length) throw new CheckError(report.problems);
      this.#inputs = this.#newInputs(this.context.fetcher, "update");
      await this.#resolveInputs();
      const r = await this.#inputs.writeLock();
      return { path: r.path, lock: r.lock, changes: r.changes, written: r.written };
    } finally {
      await this.#close();
    }
  }

  async #close(): Promise<void> {
    if (this.#ownScratch) await rm(this.#scratch, { recursive: true, force: true }).catch(() => {});
    await this.context.fetcher.close?.();
  }

  /** Removes the staged outputs and temp files of an unfinished build. Safe to call from a signal handler (sync). */
  cleanupSync(): void {
    this.#outputs.abortSync();
    removeOwnTempsSync(this.#outputs.dirs());
    for (const t of this.#temps) rmSync(t, { force: true });
    this.#temps.clear();
    if (this.#ownScratch) rmSync(this.#scratch, { recursive: true, force: true });
  }

  async cleanup(): Promise<void> {
    await this.#outputs.abort();
    await Promise.all([...this.#temps].map((t) => rm(t, { force: true })));
    this.#temps.clear();
  }
}

/**
 * manifest.toml's problems as a build sees them: its schema problems, then Volant's rules on
 * the data (with placeholders for what plugins promised), without echoes of the same key.
 */
export function manifestRules(
  m: ManifestConfig,
  schema: ConfigIssue[],
  baseUrl: string | undefined,
  promised: ReturnType<ManifestDefaults["expected"]> = [],
  /** Whether kestrel runs in the guest (the default init mode). */
  kestrel = true,
): { problems: ConfigIssue[]; warnings: ConfigIssue[] } {
  if (schema.some((p) => p.message.startsWith("TOML syntax error"))) return { problems: schema, warnings: [] };
  const r = checkManifest(withPromisedDefaults(m.data, promised), { file: m.file, text: m.text, baseUrl, kestrel });
  return { problems: dropEchoes([...schema, ...r.problems], schema.length).sort(byPosition), warnings: r.warnings };
}

function isDir(p: string): boolean {
  try {
    return statSync(p).isDirectory();
  } catch {
    return false;
  }
}

function describe(x: unknown): string {
  if (x === null) return "null";
  if (typeof x === "function") return `a function ${x.name || "(anonymous)"}`;
  if (typeof x === "object") return `an object with keys ${Object.keys(x as object).join(", ") || "(none)"}`;
  return `${typeof x} ${JSON.stringify(x)}`;
}

function placed(issues: ConfigIssue[], text: string | undefined): ConfigIssue[] {
  return text ? placeIssues(issues, text) : issues;
}

function outputIssue(err: unknown): ConfigIssue {
  const e = err as FledgeError & { path?: string; reason?: string };
  if (e.name !== "OutputPathError") throw err;
  return { file: e.path!, keyPath: "", message: e.reason!, ...(e.hint ? { hint: e.hint } : {}) };
}

/** The `Check` handed to `hooks.check` taps. */
class CheckImpl implements Check {
  readonly problemList: ConfigIssue[] = [];
  readonly warningList: ConfigIssue[] = [];
  constructor(
    readonly file: string,
    readonly outputs: OutputTransaction,
  ) {
    Object.defineProperty(this, COLLECT, {
      enumerable: false,
      value: (err: unknown) => {
        const issues = (err as { issues?: ConfigIssue[] }).issues;
        if (Array.isArray(issues) && issues.length) this.problemList.push(...issues);
        else {
          const e = err as Error & { hint?: string };
          this.problemList.push({ file: this.file, keyPath: "", message: e.message, ...(e.hint ? { hint: e.hint } : {}) });
        }
      },
    });
  }
  problem(keyPath: string, message: string, hint?: string): void {
    this.problemList.push({ file: this.file, keyPath, message, ...(hint ? { hint } : {}) });
  }
  warning(keyPath: string, message: string, hint?: string): void {
    this.warningList.push({ file: this.file, keyPath, message, ...(hint ? { hint } : {}) });
  }
  issue(issue: ConfigIssue): void {
    this.problemList.push(issue);
  }
  readsHostPath(path: string, what: string, opts: { dir?: boolean; keyPath?: string } = {}): void {
    for (const c of this.outputs.addInput({ path, what, dir: opts.dir })) this.problemList.push({ file: c.path, keyPath: "", message: c.reason, ...(c.hint ? { hint: c.hint } : {}) });
  }
  get problems(): readonly ConfigIssue[] {
    return this.problemList;
  }
  get warnings(): readonly ConfigIssue[] {
    return this.warningList;
  }
}

export type { Output };
