import { rmSync } from "node:fs";
import { rename, rm, writeFile, mkdir } from "node:fs/promises";
import { basename, dirname, join, resolve } from "node:path";
import { randomBytes } from "node:crypto";
import type { FledgeConfig, ManifestConfig } from "@fledge/config";
import { Fetcher } from "@fledge/fetch";
import { checkManifest, ManifestError, mergeManifest } from "@fledge/manifest";
import { formatIssue } from "@fledge/config";
import { FledgeError } from "./errors.js";
import { createHooks, type FledgeHooks } from "./hooks.js";
import { guardHooks } from "./intercept.js";
import { DEFAULT_MTIME, type BuildContext, type BuildOptions, type BuildResult, type LogLevel } from "./context.js";
import { builtinPlugins } from "./plugins/index.js";

/** A fledge plugin: an object whose `apply` taps the builder's hooks. */
export interface FledgePlugin {
  /** Used as the tap name in error messages when the plugin taps with it. */
  name?: string;
  apply(builder: Builder): void;
}

export interface BuilderInit {
  config: FledgeConfig;
  manifestConfig: ManifestConfig;
  options: BuildOptions;
  /** User plugins, applied before the built-in ones. */
  plugins?: FledgePlugin[];
  /** Apply the built-in initramfs pipeline (default true; false for tests of the bus itself). */
  builtins?: boolean;
  /** Reuse a fetcher (tests, or a CLI that wires progress itself). */
  fetcher?: Fetcher;
}

/** Plugins that provide well-known strategies, for the "unknown strategy" error. */
const STRATEGY_PLUGINS: Record<string, string> = { oci_rootfs: "@fledge/plugin-oci" };

/** mtime from SOURCE_DATE_EPOCH, else the fixed epoch. */
export function resolveMtime(env: NodeJS.ProcessEnv = process.env): number {
  const s = env.SOURCE_DATE_EPOCH;
  if (s === undefined || s === "") return DEFAULT_MTIME;
  if (!/^\d+$/.test(s) || Number(s) > 0xffffffff)
    throw new FledgeError("FLEDGE_EPOCH", `SOURCE_DATE_EPOCH=${s} is not a whole number of seconds between 0 and 4294967295`);
  return Number(s);
}

/**
 * One build. Create it, let plugins tap `hooks`, then `run()`. The hooks object is frozen:
 * its shape is the public API.
 */
export class Builder {
  readonly hooks: Readonly<FledgeHooks>;
  readonly context: BuildContext;
  readonly #temps = new Set<string>();

  constructor(init: BuilderInit) {
    const hooks = createHooks();
    guardHooks(hooks);
    this.hooks = Object.freeze(hooks);
    const options = { ...init.options, output: resolve(init.options.output), mtime: init.options.mtime ?? resolveMtime() };
    const warnings: string[] = [];
    const log = (level: LogLevel, message: string, source?: string) => this.hooks.log.call({ level, message, source });
    this.context = {
      config: init.config,
      manifestConfig: init.manifestConfig,
      options,
      fetcher:
        init.fetcher ??
        new Fetcher({
          cacheDir: init.options.cacheDir,
          offline: init.options.offline,
          env: init.options.env,
          mirrors: init.config.fetch.mirrors,
          onProgress: (e) => this.hooks.progress.call({ kind: "fetch", label: e.label, current: e.bytes, total: e.total, rate: e.rate, done: e.done }),
          onLog: (level, message) => log(level, message, "fledge:fetch"),
        }),
      warnings,
      warn: (m, s) => {
        warnings.push(m);
        log("warn", m, s);
      },
      info: (m, s) => log("info", m, s),
      debug: (m, s) => log("debug", m, s),
      trackTemp: (p) => this.#temps.add(p),
    };
    for (const p of init.plugins ?? []) p.apply(this);
    if (init.builtins !== false) for (const p of builtinPlugins()) p.apply(this);
  }

  /** Runs the build. On failure nothing is left under the output names. */
  async run(): Promise<BuildResult> {
    const started = performance.now();
    const ctx = this.context;
    try {
      for (const note of ctx.manifestConfig.notes) ctx.info(note, "fledge:manifest");
      for (const w of ctx.config.warnings ?? []) ctx.warn(formatIssue(w), "fledge:config");
      // manifest rules that need no artifact: fail before any work is done
      const { file: manifestFile, text: manifestText } = ctx.manifestConfig;
      const early = checkManifest(ctx.manifestConfig.data, { file: manifestFile, text: manifestText, baseUrl: ctx.options.baseUrl });
      if (early.problems.length) throw new ManifestError(early.problems);
      await this.hooks.beforeBuild.promise(ctx);
      const strategy = ctx.config.strategy;
      const hook = this.hooks.strategy.get(strategy);
      if (!hook || !hook.isUsed()) {
        const provider = STRATEGY_PLUGINS[strategy];
        throw new FledgeError("FLEDGE_STRATEGY", `no plugin provides the "${strategy}" strategy`, {
          hint: provider ? `add plugins = ["${provider}"] to ${basename(ctx.config.file)}` : "add a plugin that taps hooks.strategy.for(" + JSON.stringify(strategy) + ")",
        });
      }
      const artifact = await hook.promise(ctx);
      if (!artifact) throw new FledgeError("FLEDGE_STRATEGY", `the "${strategy}" strategy produced no artifact`);
      this.#temps.add(artifact.tempPath);

      const merged = mergeManifest(ctx.manifestConfig.data, {
        artifactPath: artifact.path,
        sha256: artifact.sha256,
        baseUrl: ctx.options.baseUrl,
        manifestFile,
        manifestText,
      });
      for (const w of merged.warningIssues) ctx.warn(formatIssue(w), "fledge:manifest");
      const manifest = await this.hooks.manifest.promise(merged.manifest, ctx);
      const manifestPath = ctx.options.manifestOutput
        ? resolve(ctx.options.manifestOutput)
        : join(dirname(artifact.path), `${manifest.name}.manifest.json`);
      const manifestTemp = join(dirname(manifestPath), `.fledge-tmp-${randomBytes(6).toString("hex")}-${basename(manifestPath)}`);
      await mkdir(dirname(manifestPath), { recursive: true });
      this.#temps.add(manifestTemp);
      await writeFile(manifestTemp, JSON.stringify(manifest, null, 2) + "\n");

      // Both files are complete: move them into place, artifact first (the manifest points at it).
      await rename(artifact.tempPath, artifact.path);
      this.#temps.delete(artifact.tempPath);
      await rename(manifestTemp, manifestPath);
      this.#temps.delete(manifestTemp);

      const { tempPath: _t, ...art } = artifact;
      const result: BuildResult = { artifact: art, manifestPath, manifest, warnings: ctx.warnings, durationMs: performance.now() - started };
      await this.hooks.afterBuild.promise(result, ctx);
      await this.hooks.done.promise(result);
      return result;
    } catch (err) {
      await this.cleanup();
      const error = err instanceof Error ? err : new Error(String(err));
      try {
        this.hooks.failed.call(error);
      } catch {
        /* a failing observer must not hide the build error */
      }
      throw error;
    } finally {
      await ctx.fetcher.close?.();
    }
  }

  /** Removes temp files of an unfinished build. Safe to call from a signal handler (sync). */
  cleanupSync(): void {
    for (const t of this.#temps) rmSync(t, { force: true });
    this.#temps.clear();
  }

  async cleanup(): Promise<void> {
    await Promise.all([...this.#temps].map((t) => rm(t, { force: true })));
    this.#temps.clear();
  }
}
