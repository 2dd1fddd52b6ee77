import { isAbsolute, resolve } from "node:path";
import { stat } from "node:fs/promises";
import { AfterBuildStage, FledgeError, type Builder, type BuildContext, type BuildResult } from "@fledge/core";
import { measureBoot, selectKernel, type BootMeasurement, type KernelChoice } from "@fledge/vm";

export const PLUGIN_NAME = "@fledge/plugin-bootcheck";

/** Options, as `[check]` in fledge.toml or `{ use = "@fledge/plugin-bootcheck", options = { … } }`. */
export interface BootCheckOptions {
  /** Fail the build when kernel start → ready takes longer (ms). */
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

/**
 * Boots the artifact headless after the build (afterBuild, VERIFY stage), waits until the
 * manifest's health check answers through the forwarded port (or `marker` shows on the
 * console), records kernel → /init → ready times and peak guest memory in the build result,
 * and fails the build past `boot_budget_ms` or `size_budget_mb`.
 */
export class BootCheckPlugin {
  readonly name = PLUGIN_NAME;
  readonly options: BootCheckOptions;

  constructor(options?: BootCheckOptions) {
    this.options = checkOptions(options);
  }

  apply(builder: Builder): void {
    builder.hooks.afterBuild.tapPromise({ name: this.name, stage: AfterBuildStage.VERIFY }, async (result, ctx) => {
      const report = await this.check(result, ctx);
      (result as BuildResult & { bootCheck?: BootCheckReport }).bootCheck = report;
    });
  }

  /**
   * Runs the check on the built artifact — staged, before it is moved into place (a failure
   * leaves nothing under the output names); throws when a budget is exceeded or the guest never
   * gets ready.
   */
  async check(result: BuildResult, ctx: BuildContext): Promise<BootCheckReport> {
    const o = this.options;
    const artifact = result.committed ? result.artifact.path : result.artifact.stagedPath;
    const size = (await stat(artifact)).size;
    if (o.size_budget_mb !== undefined && mib(size) > o.size_budget_mb)
      throw new FledgeError("FLEDGE_SIZE_BUDGET", `the artifact is ${mib(size).toFixed(2)} MiB, over the size budget of ${o.size_budget_mb} MiB ([check] size_budget_mb)`, {
        hint: 'see where the bytes go with "fledge inspect --sizes", or raise size_budget_mb',
      });
    if (!result.manifest)
      throw new FledgeError("FLEDGE_BOOTCHECK", `the boot check needs the manifest Volant passes to the guest, and none is written: ${(result.manifestReasons ?? []).map((r) => r.message).join("; ") || "a plugin discarded it"}`, {
        hint: result.manifestReasons?.find((r) => r.fix) ? `write manifest.toml:\n${result.manifestReasons.find((r) => r.fix)!.fix}` : undefined,
      });
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
      throw new FledgeError(e.code ?? "FLEDGE_BOOTCHECK", e.message, { cause: err, hint: e.hint });
    }
    const report: BootCheckReport = {
      ...m,
      kernel: { path: choice.kernel.path, release: choice.kernel.release, volant: choice.volant, source: choice.source },
      artifactSize: size,
      budgets: { boot_budget_ms: o.boot_budget_ms, size_budget_mb: o.size_budget_mb },
    };
    const ready = m.readyBy.kind === "health" ? `healthy (${m.readyBy.url} answered ${m.readyBy.status})` : `ready ("${m.readyBy.marker}" on the console)`;
    ctx.info(
      `boot check: ${ready} ${m.kernelToReadyMs} ms after kernel start: kernel → /init ${m.kernelToInitMs} ms, /init → ${m.readyBy.kind === "health" ? "healthy" : "ready"} ${m.initToReadyMs} ms ` +
        `(qemu → kernel ${m.qemuToKernelMs} ms, ${m.accel === "kvm" ? "KVM" : "TCG"}); peak guest memory ${mib(m.peakGuestMemoryKb * 1024).toFixed(1)} of ${m.memoryMb} MiB; artifact ${mib(size).toFixed(2)} MiB`,
      this.name,
    );
    if (o.boot_budget_ms !== undefined && m.kernelToReadyMs > o.boot_budget_ms)
      throw new FledgeError("FLEDGE_BOOT_BUDGET", `boot check: ready ${m.kernelToReadyMs} ms after kernel start, over the boot budget of ${o.boot_budget_ms} ms ([check] boot_budget_ms)`, {
        hint: m.accel === "tcg" ? "this machine boots without KVM (software emulation is several times slower than a Volant host): budget for it, or check on a KVM host" : "make /init start the workload sooner, or raise boot_budget_ms",
      });
    return report;
  }

  async kernel(ctx: BuildContext): Promise<KernelChoice> {
    const root = ctx.config.rootDir;
    const abs = (p: string | undefined) => (p === undefined ? undefined : isAbsolute(p) ? p : resolve(root, p));
    const runKernel = (ctx.config as { run?: { kernel?: string } }).run?.kernel;
    let volantVersion = "latest";
    if (ctx.config.init.mode === "default" && ctx.config.agent) {
      try {
        const agent = await ctx.inputs.get("agent");
        if (agent.entry?.source === "release" && agent.entry.tag) volantVersion = agent.entry.tag;
      } catch {
        /* no agent input: latest */
      }
    }
    const arch = (ctx.config.output.arch ?? "x86_64") as "x86_64" | "aarch64";
    return selectKernel({ arch, flag: abs(this.options.kernel), config: abs(runKernel), fetcher: ctx.fetcher, volantVersion });
  }
}

export default BootCheckPlugin;
