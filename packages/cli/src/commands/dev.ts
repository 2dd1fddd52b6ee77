import { statSync, watch, type FSWatcher } from "node:fs";
import { basename, dirname, isAbsolute, resolve } from "node:path";
import { loadFledgeConfig, type FledgeConfig } from "@fledge/config";
import { defaultCacheDir } from "@fledge/fetch";
import type { Vm } from "@fledge/vm";
import { UsageError, colors, type CliIO } from "../io.js";
import { parseCommand } from "../args.js";
import { printError } from "../errors.js";
import { say, startSession, describeExit } from "../boot.js";
import { kernelFor, prepareTarget } from "./run.js";
import type { GlobalFlags } from "../index.js";

export const help = `fledge dev — build, boot, and on every change rebuild and reboot

Usage: fledge dev [options]

Builds the project and boots it as "fledge run" does, then watches fledge.toml,
manifest.toml, local plugins, the init and every mapped path. On a change it rebuilds (only
the changed segments are compressed again) and restarts the VM, on the same forwarded port.
A failed build is reported and the running VM is kept. Ctrl-C stops the VM and exits.

Options:
  -C, --dir <dir>           the project (default: .)
  -c, --config <file>       fledge.toml (default: ./fledge.toml)
  -o, --output <file>       artifact (default: as fledge build)
      --kernel <path>       kernel to boot (as for fledge run)
      --port <n>            host port for the workload's port (default: a free one, kept
                            across restarts)
      --no-boot             only rebuild on changes, never boot
      --cache-dir <dir>     download cache
      --offline             never touch the network
  -h, --help                show this help

Exit codes: 130 stopped with Ctrl-C, 1 the first build failed, 2 usage error.
`;

/** What to watch for a config: paths, and whether a directory is watched recursively. */
export function watchedPaths(config: FledgeConfig, configFile: string, manifestFile: string): { path: string; recursive: boolean }[] {
  const out = new Map<string, boolean>();
  const add = (p: string | undefined, recursive = false) => {
    if (!p) return;
    const abs = isAbsolute(p) ? p : resolve(config.rootDir, p);
    out.set(abs, (out.get(abs) ?? false) || recursive);
  };
  add(configFile);
  add(manifestFile);
  for (const m of config.mappings) {
    let dir = false;
    try {
      dir = statSync(m.source).isDirectory();
    } catch {
      /* missing now: the build says so */
    }
    add(m.source, dir);
  }
  for (const p of config.plugins ?? []) {
    const spec = typeof p === "string" ? p : (p as { use?: string }).use;
    if (spec && (spec.startsWith("./") || spec.startsWith("../") || isAbsolute(spec))) add(spec);
  }
  const init = config.init as { mode: string; hostPath?: string };
  if (init.hostPath) add(init.hostPath);
  if (config.busybox.include && !/^https?:/i.test(config.busybox.url)) add(config.busybox.url.replace(/^file:\/\//, ""));
  if (config.agent?.source === "local") add(config.agent.path);
  return [...out].map(([path, recursive]) => ({ path, recursive }));
}

export async function run(argv: string[], io: CliIO, flags: GlobalFlags): Promise<number> {
  const { values } = parseCommand("dev", argv, {
    dir: { type: "string", short: "C" },
    config: { type: "string", short: "c" },
    output: { type: "string", short: "o" },
    kernel: { type: "string" },
    port: { type: "string" },
    "no-boot": { type: "boolean" },
    "cache-dir": { type: "string" },
    offline: { type: "boolean" },
  });
  if (values.help) {
    io.stdout.write(help);
    return 0;
  }
  if (values.port !== undefined && !(/^\d+$/.test(values.port) && Number(values.port) >= 1 && Number(values.port) <= 65535)) throw new UsageError(`--port must be a whole number from 1 to 65535, got "${values.port}"`);
  const cwd = resolve(io.cwd, values.dir ?? ".");
  const configFile = resolve(cwd, values.config ?? "fledge.toml");
  const output = values.output === undefined ? undefined : resolve(cwd, values.output); // default: the strategy's (fledge build's)
  const cacheDir = values["cache-dir"] ? resolve(io.cwd, values["cache-dir"]) : defaultCacheDir(io.env);
  const c = colors(io, io.stderr);
  const boot = !values["no-boot"];
  let hostPort = values.port ? Number(values.port) : 0;

  const targetReq = { cwd, config: configFile, output, noBuild: false, cacheDir, offline: !!values.offline };
  let started = performance.now();
  let prepared = await prepareTarget(io, flags, targetReq);
  say(io, `built in ${Math.round(performance.now() - started)} ms`);
  const kernel = boot ? await kernelFor(io, prepared, { flag: values.kernel, cacheDir, offline: values.offline }) : undefined;

  let vm: Vm | undefined;
  let stopping = false;
  const startVm = async () => {
    if (!kernel) return;
    vm = await startSession(io, { target: prepared.target, kernel, hostPort, quiet: flags.quiet, cacheDir });
    hostPort = vm.forwards[0]?.host ?? hostPort; // the same URL after every restart
    const mine = vm;
    void mine.exited.then((exit) => {
      if (stopping || vm !== mine || exit.reason === "stopped") return;
      say(io, `${describeExit(exit).message}; waiting for a change`, "warn");
    });
  };
  await startVm();

  // Watch, debounce, rebuild, restart.
  const watchers: FSWatcher[] = [];
  let pending: string | undefined;
  let timer: NodeJS.Timeout | undefined;
  let busy: Promise<void> = Promise.resolve();
  const artifact = prepared.target.artifact;
  const outputs = new Set([artifact, `${artifact}.origins.json`, prepared.target.manifestPath, resolve(dirname(configFile), "fledge.lock")]);
  let watchingNow = "";
  const rewatch = (config: FledgeConfig) => {
    for (const w of watchers.splice(0)) w.close();
    const paths = watchedPaths(config, configFile, resolve(dirname(configFile), "manifest.toml"));
    // watch each file's directory (editors replace files by rename), each mapped directory recursively
    const dirs = new Map<string, { recursive: boolean; files: Set<string> | "all" }>();
    for (const p of paths) {
      let isDir = false;
      try {
        isDir = statSync(p.path).isDirectory();
      } catch {
        /* may appear later */
      }
      if (isDir) dirs.set(p.path, { recursive: true, files: "all" });
      else {
        const d = dirs.get(dirname(p.path)) ?? { recursive: false, files: new Set<string>() };
        if (d.files !== "all") d.files.add(basename(p.path));
        dirs.set(dirname(p.path), d);
      }
    }
    for (const [dir, d] of dirs) {
      try {
        watchers.push(
          watch(dir, { recursive: d.recursive }, (_event, name) => {
            const file = name ? resolve(dir, name.toString()) : dir;
            if (outputs.has(file) || basename(file).startsWith(".fledge-tmp-")) return;
            if (d.files !== "all" && name && !d.files.has(basename(name.toString()))) return;
            pending ??= file;
            clearTimeout(timer);
            timer = setTimeout(() => {
              busy = busy.then(rebuild);
            }, 30);
          }),
        );
      } catch (err) {
        say(io, `cannot watch ${dir}: ${(err as Error).message}`, "warn");
      }
    }
    const list = paths.map((p) => p.path).join("\n");
    if (!flags.quiet && list !== watchingNow) say(io, `watching ${paths.length} path${paths.length === 1 ? "" : "s"} for changes`);
    watchingNow = list;
  };
  const rebuild = async () => {
    const file = pending;
    pending = undefined;
    if (!file || stopping) return;
    let savedAt: number | undefined;
    try {
      savedAt = statSync(file).mtimeMs;
    } catch {
      /* deleted */
    }
    started = performance.now();
    say(io, `${c.bold("changed")} ${file}: rebuilding`);
    try {
      prepared = await prepareTarget(io, { ...flags, quiet: true }, targetReq);
    } catch (err) {
      printError(io, err, flags.verbose);
      say(io, "the build failed: the VM keeps running what was built before; waiting for a change", "warn");
      return;
    }
    const now = Date.now();
    say(io, `${c.green("rebuilt")} in ${Math.round(performance.now() - started)} ms${savedAt ? ` (${Math.round(now - savedAt)} ms after the save)` : ""}`);
    try {
      rewatch(prepared.config ?? (await loadFledgeConfig(configFile)));
    } catch {
      /* keep the old watchers */
    }
    if (vm) {
      say(io, "restarting the VM");
      await vm.stop();
    }
    if (!stopping) await startVm();
  };
  rewatch(prepared.config ?? (await loadFledgeConfig(configFile)));

  return new Promise<number>((resolveExit) => {
    const onSignal = async (sig: NodeJS.Signals) => {
      if (stopping) return;
      stopping = true;
      process.off("SIGINT", onSignal);
      process.off("SIGTERM", onSignal);
      clearTimeout(timer);
      for (const w of watchers) w.close();
      io.stderr.write("\n");
      say(io, `${sig === "SIGINT" ? "Ctrl-C" : sig}: stopping`);
      await busy.catch(() => {});
      if (vm) {
        await vm.stop();
        say(io, "stopped: the VM is gone");
      }
      resolveExit(sig === "SIGTERM" ? 143 : 130);
    };
    process.on("SIGINT", onSignal);
    process.on("SIGTERM", onSignal);
    process.once("exit", () => vm?.killSync());
  });
}
