import { relative, resolve } from "node:path";
import { updateLock, type LockEntry } from "@fledge/core";
import { defaultCacheDir } from "@fledge/fetch";
import { colors, type CliIO } from "../io.js";
import { parseCommand } from "../args.js";
import { liveLine } from "../progress.js";
import { PLUGIN_LOOKUP } from "../plugins.js";
import type { GlobalFlags } from "../index.js";

export const help = `fledge update — resolve the inputs again and rewrite fledge.lock

Asks again what the build's inputs resolve to (the latest kestrel release, the current
bytes of a busybox_url without a checksum, the inputs plugins declare, …), downloads them
into the cache, verifies them, and rewrites fledge.lock beside fledge.toml. Builds then use
exactly these bytes.

Usage: fledge update [options]

Options:
  -C, --dir <dir>           run as if started in <dir>
  -c, --config <file>       fledge.toml (default: ./fledge.toml)
      --cache-dir <dir>     download cache (default: $FLEDGE_CACHE_DIR, $XDG_CACHE_HOME/fledge, ~/.cache/fledge)
      --json                print the new lock and the changes as JSON
  -h, --help                show this help

Environment: FLEDGE_MIRRORS, FLEDGE_GITHUB_API, GITHUB_TOKEN (see fledge build --help).
`;

const short = (e: LockEntry) =>
  e.url && e.sha256
    ? `${e.tag ? `${e.tag} ` : ""}${e.url} sha256:${e.sha256.slice(0, 12)}…`
    : Object.entries(e)
        .filter(([k]) => k !== "source" && k !== "scope")
        .map(([k, v]) => `${k} ${v}`)
        .join(", ");

export async function run(argv: string[], io: CliIO, flags: GlobalFlags): Promise<number> {
  const { values } = parseCommand("update", argv, {
    dir: { type: "string", short: "C" },
    config: { type: "string", short: "c" },
    "cache-dir": { type: "string" },
  });
  if (values.help) {
    io.stdout.write(help);
    return 0;
  }
  const cwd = resolve(io.cwd, values.dir ?? ".");
  const c = colors(io, io.stderr);
  const line = liveLine(io, flags);
  const result = await updateLock({
    config: values.config ? resolve(cwd, values.config) : resolve(cwd, "fledge.toml"),
    cacheDir: values["cache-dir"] ? resolve(cwd, values["cache-dir"]) : defaultCacheDir(io.env),
    env: io.env,
    ...PLUGIN_LOOKUP,
    onBuilder: (b) => {
      b.hooks.log.tap("fledge-cli:update", ({ level, message }) => {
        if (level === "debug" && !flags.verbose) return;
        if (level === "info" && (flags.quiet || flags.json) && !flags.verbose) return;
        line.clear();
        io.stderr.write(`${level === "warn" ? c.yellow("warning") : level === "info" ? c.cyan("note") : c.dim("debug")}: ${message}\n`);
      });
      b.hooks.progress.tap("fledge-cli:update", (p) => line.update(p));
    },
  });
  line.clear();
  if (flags.json) {
    io.stdout.write(JSON.stringify({ ok: true, ...result }, null, 2) + "\n");
    return 0;
  }
  if (flags.quiet) return 0;
  const o = colors(io, io.stdout);
  const rel = relative(io.cwd, result.path) || result.path;
  for (const ch of result.changes) {
    if (ch.from && ch.to) io.stdout.write(`${o.green("updated")} ${ch.key}: ${short(ch.from)} → ${short(ch.to)}\n`);
    else if (ch.to) io.stdout.write(`${o.green("pinned")} ${ch.key}: ${short(ch.to)}\n`);
    else if (ch.from) io.stdout.write(`${o.green("removed")} ${ch.key} (no longer an input)\n`);
  }
  io.stdout.write(
    result.written ? `${o.green("wrote")} ${rel}\n` : `${rel.startsWith("..") ? result.path : rel} is up to date${Object.keys(result.lock.inputs).length ? "" : " (nothing to pin: every input is a local file)"}\n`,
  );
  return 0;
}
