import { spawnSync } from "node:child_process";
import { createRequire } from "node:module";
import { dirname, sep } from "node:path";
import { fileURLToPath } from "node:url";
import type { ExitError, CliIO } from "./io.js";
import { errorJson, printError } from "./errors.js";

export { ExitError, UsageError, type CliIO } from "./io.js";

export interface GlobalFlags {
  json: boolean;
  verbose: boolean;
  quiet: boolean;
}

interface Command {
  summary: string;
  load: () => Promise<{ run(argv: string[], io: CliIO, flags: GlobalFlags): Promise<number>; help: string }>;
}

/** Commands load lazily so `fledge --help` starts fast. */
const COMMANDS: Record<string, Command> = {
  build: { summary: "build an initramfs plugin and its manifest.json", load: () => import("./commands/build.js") },
  validate: { summary: "check fledge.toml and manifest.toml, listing every problem", load: () => import("./commands/validate.js") },
  schema: { summary: "print the JSON Schema of fledge.toml or manifest.toml", load: () => import("./commands/schema.js") },
  update: { summary: "resolve the inputs again (latest agent release, …) and rewrite fledge.lock", load: () => import("./commands/update.js") },
  cache: { summary: "list, prune or seed the download cache (ls | prune | add)", load: () => import("./commands/cache.js") },
  run: { summary: "build if needed, then boot the plugin in qemu the way Volant would", load: () => import("./commands/run.js") },
  dev: { summary: "build and boot, then rebuild and reboot on every change", load: () => import("./commands/dev.js") },
  diff: { summary: "what changed between two builds, entry by entry and by origin", load: () => import("./commands/diff.js") },
  inspect: { summary: "list the entries of an initramfs artifact (like cpio -tv)", load: () => import("./commands/inspect.js") },
};

/** Exit code for a bug (sysexits' EX_SOFTWARE): an exception no part of fledge expected. */
export const EXIT_INTERNAL = 70;

/**
 * A bug rather than a user's problem: an error with no `code` (TypeError, RangeError, …) or a
 * failed assertion, unless it came out of a third-party plugin's tap (reported under its name).
 */
export function isInternal(err: unknown): boolean {
  let cur = err;
  while (cur instanceof Error && cur.name === "PluginError" && cur.cause) {
    if (!String((cur as { plugin?: unknown }).plugin).startsWith("fledge:")) return false;
    cur = cur.cause;
  }
  if (!(cur instanceof Error)) return cur === undefined || typeof cur !== "object";
  const code = (cur as { code?: unknown }).code;
  return typeof code !== "string" || code === "ERR_ASSERTION" || code === "ERR_INTERNAL_ASSERTION";
}

/** Set by `npm run package` (esbuild `define`) in the one-file executable. */
declare const __FLEDGE_BUILD__: { version: string; commit: string; node: string } | undefined;

/** "fledge 0.1.0 (commit abc1234)": the version, and the commit it was built from when known. */
function version(cwdOfPackage = dirname(fileURLToPath(import.meta.url))): string {
  if (typeof __FLEDGE_BUILD__ !== "undefined") {
    return `fledge ${__FLEDGE_BUILD__.version} (commit ${__FLEDGE_BUILD__.commit}, one-file executable, Node ${__FLEDGE_BUILD__.node})`;
  }
  const require = createRequire(import.meta.url);
  const v = (require("../package.json") as { version: string }).version;
  // Run from a fledge checkout: ask git which commit. An installed package (under node_modules)
  // may sit inside someone else's repository, whose commit is not ours.
  if (cwdOfPackage.split(sep).includes("node_modules")) return `fledge ${v}`;
  const git = spawnSync("git", ["rev-parse", "--short=12", "HEAD"], { cwd: cwdOfPackage, encoding: "utf8", timeout: 2000, stdio: ["ignore", "pipe", "ignore"] });
  const commit = git.status === 0 ? git.stdout.trim() : "";
  if (!commit) return `fledge ${v}`;
  const dirty = spawnSync("git", ["status", "--porcelain", "--untracked-files=no"], { cwd: cwdOfPackage, encoding: "utf8", timeout: 2000, stdio: ["ignore", "pipe", "ignore"] });
  return `fledge ${v} (commit ${commit}${dirty.status === 0 && dirty.stdout.trim() ? ", modified" : ""})`;
}

function mainHelp(): string {
  const width = Math.max(...Object.keys(COMMANDS).map((k) => k.length));
  return `fledge — build reproducible initramfs plugins for Volant microVMs, as any user

Usage: fledge <command> [options]

Commands:
${Object.entries(COMMANDS)
  .map(([k, c]) => `  ${k.padEnd(width)}  ${c.summary}`)
  .join("\n")}

Global options:
  --json          machine-readable output on stdout
  -v, --verbose   more detail
  -q, --quiet     only warnings and errors
  -h, --help      help for fledge or a command
  -V, --version   print the version

Run "fledge <command> --help" for a command's options.
`;
}

/** Runs the CLI; returns the exit code. Only this function catches errors. */
export async function main(argv: string[], io: CliIO): Promise<number> {
  const flags: GlobalFlags = { json: false, verbose: false, quiet: false };
  const rest: string[] = [];
  for (const a of argv) {
    if (a === "--json") flags.json = true;
    else if (a === "-v" || a === "--verbose") flags.verbose = true;
    else if (a === "-q" || a === "--quiet") flags.quiet = true;
    else rest.push(a);
  }
  const [name, ...args] = rest;
  if (!name || name === "-h" || name === "--help" || name === "help") {
    if (name === "help" && args[0] && COMMANDS[args[0]]) {
      io.stdout.write((await COMMANDS[args[0]]!.load()).help);
      return 0;
    }
    // no command at all is a usage error: help goes to stderr, exit 2
    (name ? io.stdout : io.stderr).write(mainHelp());
    return name ? 0 : 2;
  }
  if (name === "-V" || name === "--version") {
    io.stdout.write(version() + "\n");
    return 0;
  }
  const cmd = COMMANDS[name];
  if (!cmd) {
    io.stderr.write(`error: unknown command "${name}"\nRun "fledge --help" for the list of commands.\n`);
    return 2;
  }
  try {
    const mod = await cmd.load();
    return await mod.run(args, io, flags);
  } catch (err) {
    if (err instanceof Error && (err.name === "ExitError" || err.name === "UsageError")) {
      const e = err as ExitError;
      if (e.message) {
        if (flags.json) io.stdout.write(JSON.stringify({ ok: false, error: { code: err.name === "UsageError" ? "FLEDGE_USAGE" : "FLEDGE_EXIT", message: e.message } }) + "\n");
        else io.stderr.write(`error: ${e.message}\n`);
      }
      return e.exitCode;
    }
    if (isInternal(err)) {
      const stack = (err as Error)?.stack ?? String(err);
      if (flags.json) io.stdout.write(JSON.stringify({ ok: false, error: { ...errorJson(err), code: "FLEDGE_INTERNAL", stack } }, null, 2) + "\n");
      else io.stderr.write(`fledge: internal error (a bug in fledge or a dependency, not in your configuration):\n${stack}\n  Please report it, with the command you ran and the output above.\n`);
      return EXIT_INTERNAL;
    }
    if (flags.json) io.stdout.write(JSON.stringify({ ok: false, error: errorJson(err) }, null, 2) + "\n");
    else printError(io, err, flags.verbose);
    return 1;
  }
}
