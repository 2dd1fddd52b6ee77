import { tmpdir } from "node:os";
import { join, relative, resolve } from "node:path";
import { build, CheckError, resolveMtime, type Builder, type BuildResult } from "@fledge/core";
import { defaultCacheDir } from "@fledge/fetch";
import { removeOwnTempsAfterExit, removeOwnTempsSync } from "@fledge/safe-fs";
import { UsageError, colors, type CliIO } from "../io.js";
import { parseCommand, checkBaseUrl } from "../args.js";
import { dockerfileProject, type DockerfileProject } from "./dockerfile.js";
import { attachReporter } from "../progress.js";
import { PLUGIN_LOOKUP } from "../plugins.js";
import type { GlobalFlags } from "../index.js";

export const help = `fledge build — build a plugin's artifact and its manifest.json

Usage: fledge build [options]
       fledge build [options] <Dockerfile>

A Dockerfile instead of fledge.toml builds its image with the container engine on the machine
(buildctl, docker buildx, podman or buildah) into a root disk, <context dir>.img (an initramfs,
<context dir>.cpio.gz, with --output-initramfs); the manifest takes name and runtime from the
context directory and the workload from the image (CMD/ENTRYPOINT, EXPOSE), as the Go fledge does.

Options:
  -C, --dir <dir>           run as if started in <dir>
  -c, --config <file>       fledge.toml to build (default: ./fledge.toml)
  -m, --manifest <file>     manifest.toml (default: manifest.toml beside fledge.toml;
                            without one, name and runtime are the directory's name and the
                            workload is derived from fledge.toml: see below)
  -o, --output <file>       artifact to write (default: ./plugin.cpio.gz; ./rootfs.img for
                            strategy = "oci_rootfs", ./rootfs.squashfs with squashfs)
      --manifest-output <f> manifest.json to write (default: <name>.manifest.json beside the artifact)
      --base-url <url>      publish the artifact as <url>/<file name> in the manifest
                            instead of its absolute path
      --compression <name>  compressor (default: [output] compression, else gzip)
      --level <n>           compression level
      --cache-dir <dir>     download cache (default: $FLEDGE_CACHE_DIR, $XDG_CACHE_HOME/fledge, ~/.cache/fledge)
      --verify              read and hash every mapped file instead of trusting the stat
                            cache (unchanged size, mtime, ctime, inode = unchanged content)
      --offline             never touch the network: use the cache and fledge.lock, or fail
                            listing every input that is missing
      --locked              fail if fledge.lock is missing or would change (for CI)
      --boot-check          boot the artifact headless before it is kept: wait for its health
                            check, record boot times and peak memory, fail past [check] budgets
      --kernel <path>       kernel for --boot-check (default: as "fledge run" chooses)
      --dockerfile <file>   build from this Dockerfile (same as the positional argument)
      --context <dir>       build context (default: the Dockerfile's directory)
      --target <stage>      build stage of a multi-stage Dockerfile
      --build-arg <K=V>     build argument (repeatable)
      --output-initramfs    with a Dockerfile: an initramfs instead of a root disk
      --json                print the result as JSON on stdout
  -v, --verbose             more detail: stage timings, fetched URLs, stacks
  -q, --quiet               only warnings and errors
  -h, --help                show this help

Environment:
  SOURCE_DATE_EPOCH         mtime written for every entry (default 2024-01-01T00:00:00Z)
  FLEDGE_MIRRORS            URL prefix rewrites, from=to[,from=to…] (before [fetch] mirrors)
  FLEDGE_GITHUB_API         GitHub API base for [agent] releases (default https://api.github.com)
  GITHUB_TOKEN              sent to the GitHub API as a bearer token (raises the rate limit)
  FLEDGE_DOWNLOAD_TIMEOUT   total time for one download, retries included (default 15m)
  FLEDGE_DOWNLOAD_IDLE_TIMEOUT  no data from the server for this long fails an attempt (default 30s)
  FLEDGE_CONNECT_TIMEOUT    TCP/TLS connect timeout (default 15s)

Outputs are written only as regular files, never over an input of the build or into a
mapped directory, and all of them are moved into place together once every one is complete.

Without a manifest.toml, fledge derives the workload from fledge.toml and says so in a note; in
the default init mode, when it cannot tell which program kestrel starts, the artifact is built
but no manifest.json is written (a warning gives the manifest.toml to write; --json has
"manifest": null and "manifestReasons").

Exit codes: 0 built, 1 build or config error (nothing is left under the output names; a
failing upload or report step after the outputs were written says that they are kept),
2 usage error, 70 internal error (a bug), 130 interrupted.
`;

/** The origins record beside the artifact, for fledge diff and inspect --sizes (issue 15). */
async function originsPlugin() {
  const { OriginsPlugin } = await import("@fledge/plugin-origins");
  return new OriginsPlugin();
}

/** The boot check plugin, loaded only when asked for (minimal change for issue 15). */
async function bootCheckPlugin(kernel: string | undefined) {
  const { BootCheckPlugin } = await import("@fledge/plugin-bootcheck");
  return new BootCheckPlugin(kernel ? { kernel } : {});
}

export async function run(argv: string[], io: CliIO, flags: GlobalFlags): Promise<number> {
  const { values, positionals } = parseCommand(
    "build",
    argv,
    {
      dir: { type: "string", short: "C" },
      config: { type: "string", short: "c" },
      manifest: { type: "string", short: "m" },
      output: { type: "string", short: "o" },
      "manifest-output": { type: "string" },
      "base-url": { type: "string" },
      compression: { type: "string" },
      level: { type: "string" },
      "cache-dir": { type: "string" },
      offline: { type: "boolean" },
      locked: { type: "boolean" },
      verify: { type: "boolean" },
      "boot-check": { type: "boolean" },
      kernel: { type: "string" },
      dockerfile: { type: "string" },
      context: { type: "string" },
      target: { type: "string" },
      "build-arg": { type: "string", multiple: true },
      "output-initramfs": { type: "boolean" },
    },
    { positionals: true },
  );
  if (values.help) {
    io.stdout.write(help);
    return 0;
  }
  let level: number | undefined;
  if (values.level !== undefined) {
    if (!/^-?\d+$/.test(values.level)) throw new UsageError(`--level must be a whole number, got "${values.level}"`);
    level = Number(values.level);
  }
  checkBaseUrl(values["base-url"]);
  if (values.kernel !== undefined && !values["boot-check"]) throw new UsageError("--kernel is for --boot-check (fledge run takes --kernel too)");

  const cwd = resolve(io.cwd, values.dir ?? ".");
  const at = (p: string | undefined) => (p === undefined ? undefined : resolve(cwd, p));
  if (positionals.length > 1) throw new UsageError(`one Dockerfile at most, got ${positionals.length} arguments\nRun "fledge build --help" for usage.`);
  if (positionals[0] !== undefined && values.dockerfile !== undefined && resolve(cwd, positionals[0]) !== resolve(cwd, values.dockerfile))
    throw new UsageError("the Dockerfile is given twice, with different paths (argument and --dockerfile)");
  const dockerfile = positionals[0] ?? values.dockerfile;
  const buildArgs = (values["build-arg"] as string[] | undefined) ?? [];
  let project: DockerfileProject | undefined;
  if (dockerfile !== undefined) {
    if (values.config !== undefined) throw new UsageError("--config cannot be used when building from a Dockerfile");
    project = await dockerfileProject({ dockerfile, context: values.context, target: values.target, buildArgs, initramfs: !!values["output-initramfs"] }, cwd, values.manifest !== undefined);
  } else if (values.context !== undefined || values.target !== undefined || buildArgs.length || values["output-initramfs"])
    throw new UsageError("--context, --target, --build-arg and --output-initramfs need a Dockerfile (fledge build ./Dockerfile); in fledge.toml they are [source] context, target, build_args");
  let builder: Builder | undefined;
  const cacheDir = at(values["cache-dir"]) ?? defaultCacheDir(io.env);
  const onSignal = () => {
    builder?.cleanupSync();
    builder?.context.fetcher.cleanupSync?.();
    // temps of work still in flight (compression workers, downloads): ours by name and pid
    const tempDirs = [join(cacheDir, "tmp"), join(cacheDir, "segments", "tmp"), join(tmpdir(), "fledge-segments")];
    removeOwnTempsSync(tempDirs);
    removeOwnTempsAfterExit(tempDirs); // a worker may create one more before the process is gone
    io.stderr.write("\ninterrupted: nothing was written\n");
    process.exit(130);
  };
  // SIGHUP too: a closed terminal must not leave temps behind either
  const signals = ["SIGINT", "SIGTERM", "SIGHUP"] as const;
  for (const sig of signals) process.once(sig, onSignal);
  let result: BuildResult;
  try {
    result = await build({
      config: project?.config ?? at(values.config) ?? resolve(cwd, "fledge.toml"),
      manifest: at(values.manifest) ?? project?.manifest,
      output: at(values.output) ?? project?.output,
      outputDir: cwd,
      manifestOutput: at(values["manifest-output"]),
      baseUrl: values["base-url"],
      compression: values.compression,
      level,
      mtime: resolveMtime(io.env),
      cacheDir,
      offline: values.offline,
      locked: values.locked,
      verify: values.verify,
      env: io.env,
      ...PLUGIN_LOOKUP,
      plugins: [await originsPlugin(), ...(values["boot-check"] ? [await bootCheckPlugin(values.kernel && resolve(io.cwd, values.kernel))] : [])],
      onBuilder: (b) => {
        builder = b;
        attachReporter(b, io, flags);
      },
    });
  } catch (err) {
    // Findings in the files generated for a Dockerfile are the Dockerfile's: those files are gone.
    if (project && err instanceof CheckError) {
      const generated = [project.config, project.manifest];
      throw new CheckError(err.issues.map((i) => (generated.includes(i.file) ? { ...i, file: project!.dockerfile, line: undefined, column: undefined, codeFrame: undefined } : i)));
    }
    throw err;
  } finally {
    for (const sig of signals) process.off(sig, onSignal);
    await project?.cleanup();
  }
  if (flags.json) {
    // Everything the result holds (a boot check's record too), but not the staged path (gone
    // once the outputs are in place) or the commit flag.
    const {
      artifact: { stagedPath: _s, ...artifact },
      committed: _c,
      ...rest
    } = result;
    const json = { ok: true, artifact, ...rest };
    io.stdout.write(JSON.stringify(json, null, 2) + "\n");
    return 0;
  }
  if (!flags.quiet) {
    const c = colors(io, io.stdout);
    const rel = (p: string) => {
      const r = relative(io.cwd, p);
      return r.startsWith("..") ? p : r || ".";
    };
    const a = result.artifact;
    const what = [a.entries !== undefined ? `${a.entries} entries` : a.kind, `${(a.size / 1024).toFixed(1)} KiB${a.compression ? ` ${a.compression}` : a.format ? ` ${a.format}` : ""}`];
    const others = result.outputs.filter((o) => o.path !== a.path && o.path !== result.manifestPath);
    const manifestPath = result.manifestPath;
    io.stdout.write(
      `${c.green("built")} ${rel(a.path)} ${c.dim(`(${what.join(", ")}, sha256:${a.sha256.slice(0, 12)}…, ${(result.durationMs / 1000).toFixed(2)} s)`)}\n` +
        (manifestPath ? `${c.green("wrote")} ${rel(manifestPath)}\n` : `${c.yellow("no manifest.json written")}: ${(result.manifestReasons ?? []).map((r) => r.message).join("; ") || "a plugin discarded it"}\n`) +
        others.map((o) => `${c.green("wrote")} ${rel(o.path)} ${c.dim(`(${o.label}, ${o.plugin})`)}\n`).join("") +
        (manifestPath ? `${c.dim("install with:")} volar plugins install --manifest ${rel(manifestPath)}\n` : ""),
    );
  }
  return 0;
}
