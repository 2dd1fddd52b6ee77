import { isAbsolute, resolve } from "node:path";
import { stat } from "node:fs/promises";
import { AfterBuildStage, FledgeError, type Builder, type BuildContext, type BuildResult, type CustomInput } from "@fledge/core";
import { fetchVolantKernel, measureBoot, selectKernel, VOLANT_REPO, type BootMeasurement, type KernelChoice, type VolantKernelPin } from "@fledge/vm";

export const PLUGIN_NAME = "@fledge/plugin-bootcheck";

/** Options, as `[check]` in fledge.toml or `{ use = "@fledge/plugin-bootcheck", options = { … } }`. */
export interface BootCheckOptions {
  /** Fail the build when VM start → ready takes longer (ms, host clock). */
  boot_budget_ms?: number;
  /** Fail the build when the artifact is larger (MiB, 1048576 bytes). */
  size_budget_mb?: number;
  /** A console line that means "ready" (workloads without HTTP); default: the manifest's health check. */
  marker?: string;
  /** Give up waiting after this long (ms; default 120000). */
  timeout_ms?: number;
  /** Kernel to boot (relative to fledge.toml); default `[run] kernel`, else Volant's release kernel, else the host's. */
  kernel?: string;
}

/** What a boot check recorded, in the build result (`fledge build --json`). */
export interface BootCheckReport extends BootMeasurement {
  kernel: { path: string; release?: string; volant: boolean; source: string };
  artifactSize: number;
  budgets: { boot_budget_ms?: number; size_budget_mb?: number };
}

function checkOptions(o: unknown): BootCheckOptions {
  const opts = (o ?? {}) as Record<string, unknown>;
  const known = ["boot_budget_ms", "size_budget_mb", "marker", "timeout_ms", "kernel"];
  const bad = (k: string, what: string) => new FledgeError("FLEDGE_PLUGIN_OPTIONS", `${PLUGIN_NAME}: option ${k} ${what}`, { hint: "see [check] in the plugin's README" });
  for (const k of Object.keys(opts)) if (!known.includes(k)) throw bad(k, `is not an option (options: ${known.join(", ")})`);
  for (const k of ["boot_budget_ms", "timeout_ms"]) if (opts[k] !== undefined && !(Number.isInteger(opts[k]) && (opts[k] as number) > 0)) throw bad(k, "must be a whole number above 0");
  if (opts.size_budget_mb !== undefined && !(typeof opts.size_budget_mb === "number" && opts.size_budget_mb > 0)) throw bad("size_budget_mb", "must be a number above 0");
  for (const k of ["marker", "kernel"]) if (opts[k] !== undefined && (typeof opts[k] !== "string" || !(opts[k] as string).trim())) throw bad(k, "must be a non-empty string");
  return opts as BootCheckOptions;
}

const mib = (bytes: number) => bytes / 1048576;

/** Volant's release kernel as an input of the build (or of `fledge run`, with its own scope): verified, cached, locked; on failure, the reason (the boot then falls back to the host's kernel). */
export function volantKernelInput(version: string, scope?: string): CustomInput<{ path?: string; pin?: VolantKernelPin; error?: string }> {
  return {
    name: "kernel",
    label: "Volant kernel",
    ...(scope ? { scope } : {}),
    request: `bzImage of release ${version} of ${VOLANT_REPO}`,
    matches: (e) => e.source === "volant-kernel" && e.version === version && !!e.tag && !!e.url && !!e.sha256,
    async resolve(entry, io) {
      const pin = entry ? { version, tag: entry.tag!, url: entry.url!, sha256: entry.sha256! } : undefined;
      try {
        const got = await fetchVolantKernel(io.fetcher, version, pin);
        return { entry: { source: "volant-kernel", version, tag: got.pin.tag, url: got.pin.url, sha256: got.pin.sha256 }, value: { path: got.path, pin: got.pin } };
      } catch (err) {
        // keep the pin: a kernel missing offline must not move the lock
        return { ...(entry ? { entry } : {}), value: { error: (err as Error).message.split("\n")[0] } };
      }
    },
  };
}

/**
 * Boots the artifact headless before the build keeps it (afterBuild, VERIFY stage, on the staged
 * file), waits until the manifest's health check answers through the forwarded port (or
 * `marker` shows on the console), records kernel → /init → ready times and peak guest memory in
 * the build result (`result.reports["@fledge/plugin-bootcheck"]`), and fails the build past
 * `boot_budget_ms` or `size_budget_mb`, leaving nothing under the output names. Options come
 * from the constructor, else from `[check]` in fledge.toml.
 */
export class BootCheckPlugin {
  readonly name = PLUGIN_NAME;
  readonly options: BootCheckOptions;

  constructor(options?: BootCheckOptions) {
    this.options = checkOptions(options);
  }

  apply(builder: Builder): void {
    builder.hooks.inputs.tap(this.name, (inputs, ctx) => {
      if (this.#explicitKernel(ctx) || ctx.config.output.arch !== "x86_64") return;
      inputs.add(volantKernelInput(ctx.config.agent?.source === "release" ? ctx.config.agent.version : "latest"));
    });
    builder.hooks.afterBuild.tapPromise({ name: this.name, stage: AfterBuildStage.VERIFY }, async (result, ctx) => {
      const report = await this.check(result, ctx);
      result.reports ??= {};
      result.reports[this.name] = report;
    });
  }

  /** Options given to the plugin, over `[check]`. */
  effective(ctx: BuildContext): BootCheckOptions {
    const fromConfig = (ctx.config as { check?: BootCheckOptions }).check ?? {};
    return { ...fromConfig, ...this.options };
  }

  #explicitKernel(ctx: BuildContext): string | undefined {
    const root = ctx.config.rootDir;
    const k = this.options.kernel ?? (ctx.config as { run?: { kernel?: string } }).run?.kernel;
    return k === undefined ? undefined : isAbsolute(k) ? k : resolve(root, k);
  }

  /** Runs the check on the staged artifact; throws when a budget is exceeded or the guest never gets ready. */
  async check(result: BuildResult, ctx: BuildContext): Promise<BootCheckReport> {
    const o = this.effective(ctx);
    const artifact = result.committed ? result.artifact.path : result.artifact.stagedPath;
    if (result.artifact.kind !== "initramfs")
      throw new FledgeError("FLEDGE_BOOTCHECK", `boot check: a ${result.artifact.kind} artifact needs Volant's kernel and its built-in initramfs, which the boot check does not boot yet`, {
        hint: "remove [check] for this strategy",
      });
    const size = (await stat(artifact)).size;
    if (o.size_budget_mb !== undefined && mib(size) > o.size_budget_mb)
      throw new FledgeError("FLEDGE_SIZE_BUDGET", `the artifact is ${mib(size).toFixed(2)} MiB, over the size budget of ${o.size_budget_mb} MiB ([check] size_budget_mb)`, {
        hint: 'see where the bytes go with "fledge inspect --sizes", or raise size_budget_mb',
      });
    if (!result.manifest)
      throw new FledgeError(
        "FLEDGE_BOOTCHECK",
        `the boot check needs the manifest Volant passes to the guest, and none is written: ${(result.manifestReasons ?? []).map((r) => r.message).join("; ") || "a plugin discarded it"}`,
        {
          hint: result.manifestReasons?.find((r) => r.fix) ? `write manifest.toml:\n${result.manifestReasons.find((r) => r.fix)!.fix}` : undefined,
        },
      );
    const choice = await this.kernel(ctx);
    if (choice.notice) ctx.warn(`boot check: ${choice.notice}`, this.name);
    ctx.info(`boot check: booting ${result.manifest.name} headless with ${choice.description}`, this.name);
    let m: BootMeasurement;
    try {
      m = await measureBoot({
        initramfs: artifact,
        manifest: result.manifest as never,
        kernel: choice.kernel,
        marker: o.marker,
        timeoutMs: o.timeout_ms,
        env: ctx.options.env,
        cacheDir: ctx.options.cacheDir,
        onLine: (line) => ctx.debug(`console: ${line}`, this.name),
      });
    } catch (err) {
      const e = err as Error & { code?: string; hint?: string };
      throw new FledgeError(e.code ?? "FLEDGE_BOOTCHECK", e.message, { cause: err, ...(e.hint ? { hint: e.hint } : {}) });
    }
    const report: BootCheckReport = {
      ...m,
      kernel: { path: choice.kernel.path, release: choice.kernel.release, volant: choice.volant, source: choice.source },
      artifactSize: size,
      budgets: { ...(o.boot_budget_ms !== undefined ? { boot_budget_ms: o.boot_budget_ms } : {}), ...(o.size_budget_mb !== undefined ? { size_budget_mb: o.size_budget_mb } : {}) },
    };
    const ready = m.readyBy.kind === "health" ? `healthy (${m.readyBy.url} answered ${m.readyBy.status})` : `ready ("${m.readyBy.marker}" on the console)`;
    ctx.info(
      `boot check: ${ready} ${m.totalMs} ms after the VM started: kernel → /init ${m.kernelToInitMs} ms (guest clock), /init → ${m.readyBy.kind === "health" ? "healthy" : "ready"} ${m.initToReadyMs} ms ` +
        `(${m.accel === "kvm" ? "KVM" : "TCG"}); peak guest memory ${mib(m.peakGuestMemoryKb * 1024).toFixed(1)} of ${m.memoryMb} MiB; artifact ${mib(size).toFixed(2)} MiB`,
      this.name,
    );
    // The budget is on the host's clock, VM start → ready: the guest's own clock (kernel → /init)
    // is what the guest says, and under emulation on a loaded host its TSC calibration can be off.
    if (o.boot_budget_ms !== undefined && m.totalMs > o.boot_budget_ms)
      throw new FledgeError("FLEDGE_BOOT_BUDGET", `boot check: ready ${m.totalMs} ms after the VM started, over the boot budget of ${o.boot_budget_ms} ms ([check] boot_budget_ms)`, {
        hint:
          m.accel === "tcg"
            ? "this machine boots without KVM (software emulation is several times slower than a Volant host): budget for it, or check on a KVM host"
            : "make /init start the workload sooner, or raise boot_budget_ms",
      });
    return report;
  }

  /** The kernel: the plugin's `kernel` option (--kernel), `[run] kernel`, Volant's release kernel (the build's input), else the host's. */
  async kernel(ctx: BuildContext): Promise<KernelChoice> {
    const arch = ctx.config.output.arch;
    const explicit = this.#explicitKernel(ctx);
    if (explicit) return selectKernel({ arch, ...(this.options.kernel ? { flag: explicit } : { config: explicit }) });
    let why = arch === "x86_64" ? "Volant's kernel was not resolved" : `Volant publishes no ${arch} kernel`;
    if (arch === "x86_64" && ctx.inputs.names().includes("kernel")) {
      const k = (await ctx.inputs.get<{ path?: string; pin?: VolantKernelPin; error?: string }>("kernel")).value;
      if (k.path && k.pin) return selectKernel({ arch, volantFile: k.path, pin: k.pin });
      why = `Volant's kernel is not available: ${k.error}`;
    }
    return selectKernel({ arch, unavailable: why });
  }
}

export default BootCheckPlugin;
