import { existsSync } from "node:fs";
import { resolve } from "node:path";
import { build, defaultArtifactName, resolveMtime, type Builder } from "@fledge/core";
import { loadFledgeConfig, type FledgeConfig } from "@fledge/config";
import { defaultCacheDir } from "@fledge/fetch";
import type { GuestArch, KernelChoice } from "@fledge/vm";
import { ExitError, UsageError, colors, type CliIO } from "../io.js";
import { parseCommand } from "../args.js";
import { attachReporter } from "../progress.js";
import { artifactArch, chooseKernel, describeExit, manifestFor, say, startSession, type BootTarget } from "../boot.js";
import { PLUGIN_LOOKUP } from "../plugins.js";
import type { GlobalFlags } from "../index.js";

export const help = `fledge run — build the plugin if needed, then boot it in qemu the way Volant would

Usage: fledge run [options] [artifact]

With no artifact, builds the project (like "fledge build") and boots what it built. With an
artifact, boots it as it is, with the manifest.json beside it that names its sha256.

The VM gets Volant's kernel command line (console=ttyS0 reboot=k panic=1 …, ip=, and the
manifest as volant.manifest=), the manifest's memory and CPUs, a virtio network card on qemu's
user network with the workload's port (from workload.base_url) forwarded to 127.0.0.1, and its
serial console on this terminal. KVM when /dev/kvm is usable, software emulation otherwise.

Options:
  -C, --dir <dir>           run as if started in <dir>
  -c, --config <file>       fledge.toml to build (default: ./fledge.toml)
  -o, --output <file>       artifact to build (default: as fledge build: ./plugin.cpio.gz, ./rootfs.img
                            for strategy = "oci_rootfs")
  -m, --manifest <file>     manifest.json of a prebuilt artifact
      --kernel <path>       kernel to boot (bzImage for x86_64, Image for aarch64); default
                            [run] kernel, else Volant's release kernel (the release kestrel
                            comes from, verified against its bzImage.sha256, cached), else
                            the host's /boot/vmlinuz-* (said plainly: not Volant's kernel)
      --no-build            boot the existing artifact without building
      --port <n>            host port for the workload's port (default: a free one)
      --memory <MiB>        guest memory (default: the manifest's resources.memory_mb)
      --append <args>       extra kernel arguments
      --cache-dir <dir>     download cache
      --offline             never touch the network (build inputs and the kernel from the cache)
  -q, --quiet               only the console, warnings and errors
  -h, --help                show this help

Environment:
  FLEDGE_ACCEL=kvm|tcg      force the accelerator
  FLEDGE_QEMU, FLEDGE_QEMU_AARCH64   qemu binaries to use

Exit codes: 0 the guest powered off, 1 build error, boot failure, guest panic or reboot,
2 usage error, 130 stopped with Ctrl-C (the VM is gone).
`;

export async function run(argv: string[], io: CliIO, flags: GlobalFlags): Promise<number> {
  const { values, positionals } = parseCommand(
    "run",
    argv,
    {
      dir: { type: "string", short: "C" },
      config: { type: "string", short: "c" },
      output: { type: "string", short: "o" },
      manifest: { type: "string", short: "m" },
      kernel: { type: "string" },
      "no-build": { type: "boolean" },
      port: { type: "string" },
      memory: { type: "string" },
      append: { type: "string" },
      "cache-dir": { type: "string" },
      offline: { type: "boolean" },
    },
    { positionals: true },
  );
  if (values.help) {
    io.stdout.write(help);
    return 0;
  }
  if (positionals.length > 1) throw new UsageError(`expected at most one artifact, got ${positionals.length}\nRun "fledge run --help" for usage.`);
  const num = (name: string, v: string | undefined, min: number, max: number) => {
    if (v === undefined) return undefined;
    if (!/^\d+$/.test(v) || Number(v) < min || Number(v) > max) throw new UsageError(`--${name} must be a whole number from ${min} to ${max}, got "${v}"`);
    return Number(v);
  };
  const port = num("port", values.port, 1, 65535);
  const memory = num("memory", values.memory, 16, 1 << 20);
  const cwd = resolve(io.cwd, values.dir ?? ".");
  const cacheDir = values["cache-dir"] ? resolve(io.cwd, values["cache-dir"]) : defaultCacheDir(io.env);

  const prepared = await prepareTarget(io, flags, {
    cwd,
    artifact: positionals[0] && resolve(io.cwd, positionals[0]),
    config: values.config,
    output: values.output,
    manifest: values.manifest && resolve(io.cwd, values.manifest),
    noBuild: !!values["no-build"],
    cacheDir,
    offline: !!values.offline,
  });
  const kernel = await kernelFor(io, prepared, { flag: values.kernel, cacheDir, offline: values.offline });
  return bootInteractive(io, { target: prepared.target, kernel, append: values.append, memoryMb: memory, hostPort: port, quiet: flags.quiet, cacheDir });
}

export interface TargetRequest {
  cwd: string;
  artifact?: string;
  config?: string;
  output?: string;
  manifest?: string;
  noBuild: boolean;
  cacheDir: string;
  offline: boolean;
}

export interface PreparedTarget {
  target: BootTarget;
  config?: FledgeConfig;
  /** [run] kernel, absolute. */
  runKernel?: string;
  /** The Volant release to take the kernel from: kestrel's (fledge.lock's tag, else [agent] version). */
  volantVersion?: string;
}

/** The kernel to boot a prepared target with (`--kernel`, `[run] kernel`, Volant's, the host's). */
export function kernelFor(io: CliIO, prepared: PreparedTarget, opts: { flag?: string; cacheDir?: string; offline?: boolean }): Promise<KernelChoice> {
  return chooseKernel(io, {
    arch: prepared.target.arch,
    flag: opts.flag,
    config: prepared.runKernel,
    cacheDir: opts.cacheDir,
    offline: opts.offline,
    env: io.env,
    volantVersion: prepared.volantVersion,
    projectDir: prepared.config?.rootDir,
  });
}

/** The artifact to boot: the one given, or the project's, built first unless --no-build. */
export async function prepareTarget(io: CliIO, flags: GlobalFlags, r: TargetRequest): Promise<PreparedTarget> {
  if (r.artifact) {
    if (!existsSync(r.artifact)) throw new ExitError(1, `${r.artifact} does not exist`);
    const { manifest, path } = await manifestFor(r.artifact, r.manifest);
    const arch =
      (await artifactArch(r.artifact).catch((err) => {
        throw new ExitError(1, `${r.artifact} is not an artifact fledge can boot: ${(err as Error).message}`);
      })) ?? "x86_64";
    return { target: { artifact: r.artifact, manifest, manifestPath: path, arch } };
  }
  const configPath = resolve(r.cwd, r.config ?? "fledge.toml");
  const config = await loadFledgeConfig(configPath);
  const output = resolve(r.cwd, r.output ?? defaultArtifactName(config));
  const arch = (config.output.arch ?? "x86_64") as GuestArch;
  const runKernel = config.run.kernel;
  // the release kestrel comes from (fledge.lock pins what "latest" resolved to, for both)
  const volantVersion = config.agent?.source === "release" ? config.agent.version : undefined;

  if (r.noBuild) {
    if (!existsSync(output)) throw new ExitError(1, `--no-build: ${output} does not exist`);
    const { manifest, path } = await manifestFor(output, r.manifest);
    return { target: { artifact: output, manifest, manifestPath: path, arch }, config, runKernel, volantVersion };
  }
  const result = await buildQuietly(io, flags, { config: configPath, output, cacheDir: r.cacheDir, offline: r.offline });
  if (!flags.quiet) {
    const c = colors(io, io.stderr);
    io.stderr.write(`${c.green("built")} ${result.artifact.path} ${c.dim(`(${result.artifact.entries} entries, ${(result.artifact.size / 1024).toFixed(1)} KiB, ${(result.durationMs / 1000).toFixed(2)} s)`)}\n`);
  }
  if (!result.manifest || !result.manifestPath) {
    const fix = result.manifestReasons?.find((r) => r.fix)?.fix;
    throw new ExitError(
      1,
      `${result.artifact.path} is built, but no manifest.json was written, and booting needs one: ${(result.manifestReasons ?? []).map((r) => r.message).join("; ") || "a plugin discarded it"}${fix ? `\n  hint: write manifest.toml:\n${fix.replace(/^/gm, "    ")}` : ""}`,
    );
  }
  return { target: { artifact: result.artifact.path, manifest: result.manifest as never, manifestPath: result.manifestPath, arch }, config, runKernel, volantVersion };
}

/** A build as `fledge build` runs it (progress on stderr), cleaned up on Ctrl-C. */
export async function buildQuietly(io: CliIO, flags: GlobalFlags, req: { config: string; output: string; cacheDir: string; offline: boolean }) {
  let builder: Builder | undefined;
  const onSignal = () => {
    builder?.cleanupSync();
    builder?.context.fetcher.cleanupSync?.();
    io.stderr.write("\ninterrupted: nothing was written\n");
    process.exit(130);
  };
  process.once("SIGINT", onSignal);
  process.once("SIGTERM", onSignal);
  try {
    return await build({
      config: req.config,
      output: req.output,
      mtime: resolveMtime(io.env),
      cacheDir: req.cacheDir,
      offline: req.offline,
      env: io.env,
      plugins: [new (await import("@fledge/plugin-origins")).OriginsPlugin()],
      ...PLUGIN_LOOKUP,
      onBuilder: (b) => {
        builder = b;
        attachReporter(b, { ...io, stdout: io.stderr }, { ...flags, json: false });
      },
    });
  } finally {
    process.off("SIGINT", onSignal);
    process.off("SIGTERM", onSignal);
  }
}

/** Boots with the console on this terminal until the guest ends or Ctrl-C; returns the exit code. */
export async function bootInteractive(io: CliIO, o: Parameters<typeof startSession>[1]): Promise<number> {
  const stdin = io.stdin?.();
  const input = stdin?.isTTY ? stdin : undefined;
  let signalled: NodeJS.Signals | undefined;
  let vm: Awaited<ReturnType<typeof startSession>> | undefined;
  const onSignal = (sig: NodeJS.Signals) => {
    if (signalled) return;
    signalled = sig;
    if (!vm) return;
    io.stderr.write("\n");
    say(io, `${sig === "SIGINT" ? "Ctrl-C" : sig}: stopping the VM`);
    void vm.stop();
  };
  const onExit = () => vm?.killSync();
  process.on("SIGINT", onSignal);
  process.on("SIGTERM", onSignal);
  process.on("exit", onExit);
  try {
    vm = await startSession(io, { ...o, input });
    if (signalled) void vm.stop();
    const exit = await vm.exited;
    // A Ctrl-C on the terminal reaches qemu too, which may quit before we ask it to.
    const d = signalled ? { code: signalled === "SIGTERM" ? 143 : 130, message: "stopped: the VM is gone" } : describeExit(exit);
    const code = d.code;
    io.stderr.write("\n");
    say(io, `${d.message} (exit ${code})`, code === 0 || code >= 128 ? "info" : "warn");
    return code;
  } finally {
    process.off("SIGINT", onSignal);
    process.off("SIGTERM", onSignal);
    process.off("exit", onExit);
    if (input) {
      input.pause();
      (input as { destroy?: () => void }).destroy?.();
    }
  }
}
