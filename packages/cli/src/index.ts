import { createRequire } from "node:module";
import { ExitError, type CliIO } from "./io.js";
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

function version(): string {
  const require = createRequire(import.meta.url);
  return (require("../package.json") as { version: string }).version;
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
    if (flags.json) io.stdout.write(JSON.stringify({ ok: false, error: errorJson(err) }, null, 2) + "\n");
    else printError(io, err, flags.verbose);
    return 1;
  }
}
