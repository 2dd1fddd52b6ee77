import { copyFile, mkdtemp, rm } from "node:fs/promises";
import { existsSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { defaultCacheDir } from "@fledge/fetch";
import { UsageError, colors, type CliIO } from "../io.js";
import { parseCommand } from "../args.js";
import { diffArtifacts, human, readArtifact, signed, type ArtifactView } from "../sizes.js";
import { buildQuietly } from "./run.js";
import type { GlobalFlags } from "../index.js";

export const help = `fledge diff — what changed between two builds, entry by entry and by origin

Usage: fledge diff [options] <a> <b>
       fledge diff [options] [<a>]     build the project, then compare <a> (default: the
                                       artifact of the last build) with what was just built

Lists the entries added (+), removed (-) and changed (~, with what changed) with their sizes,
then the bytes of each origin — busybox, init, kestrel, each mapping, each image layer — in
both images. Origins come from <artifact>.origins.json, which fledge build writes beside the
artifact (or from its SPDX SBOM); without one they show as "unknown".

Options:
  -C, --dir <dir>           the project, for a build (default: .)
  -c, --config <file>       fledge.toml (default: ./fledge.toml)
  -o, --output <file>       the project's artifact (default: ./plugin.cpio.gz)
      --cache-dir <dir>     download cache
      --offline             build without the network
      --exit-code           exit 1 when the artifacts differ (like git diff --exit-code)
      --json                the differences as JSON on stdout
  -h, --help                show this help

Exit codes: 0 compared (or identical with --exit-code), 1 different with --exit-code, or an
unreadable artifact or failed build, 2 usage error.
`;

export async function run(argv: string[], io: CliIO, flags: GlobalFlags): Promise<number> {
  const { values, positionals } = parseCommand(
    "diff",
    argv,
    {
      dir: { type: "string", short: "C" },
      config: { type: "string", short: "c" },
      output: { type: "string", short: "o" },
      "cache-dir": { type: "string" },
      offline: { type: "boolean" },
      "exit-code": { type: "boolean" },
    },
    { positionals: true },
  );
  if (values.help) {
    io.stdout.write(help);
    return 0;
  }
  if (positionals.length > 2) throw new UsageError(`expected at most two artifacts, got ${positionals.length}\nRun "fledge diff --help" for usage.`);
  let a: ArtifactView;
  let b: ArtifactView;
  if (positionals.length === 2) {
    a = await readArtifact(resolve(io.cwd, positionals[0]!));
    b = await readArtifact(resolve(io.cwd, positionals[1]!));
  } else {
    // a build against the last one: keep a copy of the last artifact (and its origins), build, compare
    const cwd = resolve(io.cwd, values.dir ?? ".");
    const output = resolve(cwd, values.output ?? "plugin.cpio.gz");
    const previous = positionals[0] ? resolve(io.cwd, positionals[0]) : output;
    if (!existsSync(previous)) throw new UsageError(`${previous} does not exist: nothing to compare the build with (build once first, or name two artifacts)`);
    const keep = await mkdtemp(join(tmpdir(), "fledge-diff-"));
    try {
      const copy = join(keep, "previous.cpio");
      await copyFile(previous, copy);
      if (existsSync(`${previous}.origins.json`)) await copyFile(`${previous}.origins.json`, `${copy}.origins.json`);
      a = await readArtifact(copy);
      a.path = previous;
      const cacheDir = values["cache-dir"] ? resolve(io.cwd, values["cache-dir"]) : defaultCacheDir(io.env);
      const built = await buildQuietly(io, flags, { config: resolve(cwd, values.config ?? "fledge.toml"), output, cacheDir, offline: !!values.offline });
      b = await readArtifact(built.artifact.path);
    } finally {
      await rm(keep, { recursive: true, force: true });
    }
  }
  const d = diffArtifacts(a, b);
  const differ = d.entries.length > 0 || a.sha256 !== b.sha256;
  if (flags.json) {
    io.stdout.write(
      JSON.stringify(
        {
          ok: true,
          a: { path: a.path, size: a.size, sha256: a.sha256, entries: a.entries.length, origins: a.originsNote },
          b: { path: b.path, size: b.size, sha256: b.sha256, entries: b.entries.length, origins: b.originsNote },
          identical: !differ,
          entries: d.entries,
          origins: d.origins,
        },
        null,
        2,
      ) + "\n",
    );
    return values["exit-code"] && differ ? 1 : 0;
  }
  const c = colors(io, io.stdout);
  const out: string[] = [];
  const width = Math.min(60, Math.max(10, ...d.entries.map((e) => e.path.length)));
  for (const e of d.entries) {
    const mark = e.change === "added" ? c.green("+") : e.change === "removed" ? c.red("-") : c.yellow("~");
    const size = e.change === "added" ? human(e.after!) : e.change === "removed" ? human(e.before!) : e.before === e.after ? human(e.after!) : `${human(e.before!)} → ${human(e.after!)} (${signed(e.after! - e.before!)})`;
    out.push(`${mark} ${e.path.padEnd(width)}  ${size.padEnd(30)} ${c.dim(e.origin)}${e.what ? c.dim(` (${e.what.join(", ")})`) : ""}`);
  }
  if (!d.entries.length) out.push(differ ? "no entry differs (the compressed bytes do)" : "identical");
  const changed = d.origins.filter((o) => o.added || o.removed || o.changed || o.before !== o.after);
  if (changed.length) {
    out.push("", c.bold("by origin:"));
    const ow = Math.max(...changed.map((o) => o.origin.length));
    for (const o of changed) {
      const counts = [o.added && `${o.added} added`, o.removed && `${o.removed} removed`, o.changed && `${o.changed} changed`].filter(Boolean).join(", ");
      out.push(`  ${o.origin.padEnd(ow)}  ${`${human(o.before)} → ${human(o.after)}`.padEnd(24)} ${signed(o.after - o.before).padEnd(12)} ${c.dim(counts)}`);
    }
  }
  out.push("", c.dim(`artifact: ${human(a.size)} → ${human(b.size)} compressed (${signed(b.size - a.size)}), ${a.entries.length} → ${b.entries.length} entries`));
  for (const v of [a, b]) if (!v.origins) out.push(c.dim(`${v.path}: ${v.originsNote}`));
  io.stdout.write(out.join("\n") + "\n");
  return values["exit-code"] && differ ? 1 : 0;
}
