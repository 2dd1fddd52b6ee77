import { lstat, readdir, rm } from "node:fs/promises";
import { join, resolve } from "node:path";
import { reapStaleTemps } from "@fledge/safe-fs";
import { pruneSegments } from "@fledge/cpio";
import { ContentCache, defaultCacheDir } from "@fledge/fetch";
import { ExitError, UsageError, colors, type CliIO } from "../io.js";
import { parseCommand } from "../args.js";
import type { GlobalFlags } from "../index.js";

export const help = `fledge cache — the download cache

Usage:
  fledge cache ls                         list cached files (sha256, size, last used, URLs)
  fledge cache prune [--older-than <age>] remove downloads and compressed segments not used for
                                          <age> (e.g. 30d, 12h, 2w); without --older-than, all;
                                          also temp files of builds that are gone. Only files
                                          fledge made are removed, never anything else in <dir>
  fledge cache add <file> [--url <url>] [--sha256 <hex>]
                                          seed the cache by hand (air-gapped machines): builds
                                          then find <file> by its sha256; with --url, also an
                                          input that has no pinned checksum

Options:
      --cache-dir <dir>   the cache (default: $FLEDGE_CACHE_DIR, $XDG_CACHE_HOME/fledge, ~/.cache/fledge)
      --json              machine-readable output
  -h, --help              show this help
`;

const UNITS: Record<string, number> = { s: 1000, m: 60_000, h: 3_600_000, d: 86_400_000, w: 604_800_000 };

/** "30d" → milliseconds. */
export function parseAge(s: string): number {
  const m = /^(\d+(?:\.\d+)?)\s*([smhdw])$/.exec(s.trim());
  if (!m) throw new UsageError(`--older-than wants a number and a unit (s, m, h, d or w), e.g. 30d; got "${s}"`);
  return Number(m[1]) * UNITS[m[2]!]!;
}

function human(n: number): string {
  if (n < 1024) return `${n} B`;
  if (n < 1024 * 1024) return `${(n / 1024).toFixed(1)} KiB`;
  return `${(n / 1024 / 1024).toFixed(1)} MiB`;
}

/**
 * Removes, directly in `dir`, regular files whose name matches `pattern` and that were not used
 * for `olderThanMs` (all when undefined), and temps of processes that are gone. Nothing else.
 */
async function pruneNamed(dir: string, pattern: RegExp, olderThanMs: number | undefined, now = Date.now()): Promise<{ removed: number; freedBytes: number }> {
  const out = { removed: 0, freedBytes: 0 };
  for (const name of await readdir(dir).catch(() => [] as string[])) {
    if (!pattern.test(name)) continue;
    const st = await lstat(join(dir, name)).catch(() => undefined);
    if (!st?.isFile() || (olderThanMs !== undefined && now - st.mtimeMs < olderThanMs)) continue;
    await rm(join(dir, name), { force: true });
    out.removed++;
    out.freedBytes += st.size;
  }
  const temps = await reapStaleTemps(dir, { now });
  out.removed += temps.removed.length;
  out.freedBytes += temps.freedBytes;
  return out;
}

export async function run(argv: string[], io: CliIO, flags: GlobalFlags): Promise<number> {
  const { values, positionals } = parseCommand(
    "cache",
    argv,
    {
      "cache-dir": { type: "string" },
      "older-than": { type: "string" },
      url: { type: "string" },
      sha256: { type: "string" },
    },
    { positionals: true },
  );
  const [sub, ...rest] = positionals;
  if (values.help || !sub) {
    // no subcommand is a usage error: help goes to stderr, exit 2
    (values.help ? io.stdout : io.stderr).write(help);
    return values.help ? 0 : 2;
  }
  const cache = new ContentCache(values["cache-dir"] ? resolve(io.cwd, values["cache-dir"]) : defaultCacheDir(io.env));
  const out = (s: string) => io.stdout.write(s);
  const c = colors(io, io.stdout);
  const only = (allowed: string[]) => {
    for (const k of ["older-than", "url", "sha256"] as const) if (values[k] !== undefined && !allowed.includes(k)) throw new UsageError(`--${k} is not an option of "fledge cache ${sub}"`);
  };
  switch (sub) {
    case "ls": {
      only([]);
      if (rest.length) throw new UsageError(`"fledge cache ls" takes no arguments`);
      const entries = await cache.list();
      if (flags.json) {
        out(JSON.stringify({ ok: true, dir: cache.dir, entries }, null, 2) + "\n");
        return 0;
      }
      if (!entries.length) {
        out(`${cache.dir}: empty\n`);
        return 0;
      }
      const total = entries.reduce((a, e) => a + e.size, 0);
      out(`${cache.dir}: ${entries.length} file${entries.length === 1 ? "" : "s"}, ${human(total)}\n`);
      for (const e of entries) {
        out(`  ${e.sha256.slice(0, 16)}  ${human(e.size).padStart(10)}  ${c.dim(e.lastUsed.toISOString().slice(0, 16).replace("T", " "))}  ${e.urls.join(" ") || c.dim("(added by hand)")}\n`);
      }
      return 0;
    }
    case "prune": {
      only(["older-than"]);
      if (rest.length) throw new UsageError(`"fledge cache prune" takes no arguments (did you mean --older-than ${rest[0]}?)`);
      const age = values["older-than"] !== undefined ? parseAge(values["older-than"]) : undefined;
      const r = await cache.prune(age);
      // the archive stage's compressed segments live beside the downloads
      const seg = await pruneSegments(join(cache.dir, "segments"), age);
      // fledge run's unpacked kernels: a pure cache, strictly named
      const kernels = await pruneNamed(join(cache.dir, "kernels"), /^[0-9a-f]{64}\.(vmlinux|no-pvh)$/, age);
      seg.removed += kernels.removed;
      seg.freedBytes += kernels.freedBytes;
      if (flags.json) out(JSON.stringify({ ok: true, dir: cache.dir, removed: r.removed.map((e) => e.sha256), freedBytes: r.freedBytes, kept: r.kept, temps: r.temps, segments: seg }, null, 2) + "\n");
      else if (!flags.quiet)
        out(
          `removed ${r.removed.length} file${r.removed.length === 1 ? "" : "s"} (${human(r.freedBytes)}), kept ${r.kept}; ` +
            `removed ${seg.removed} compressed segment${seg.removed === 1 ? "" : "s"} (${human(seg.freedBytes)}), kept ${seg.kept}` +
            (r.temps.removed ? `; removed ${r.temps.removed} temp file${r.temps.removed === 1 ? "" : "s"} of interrupted downloads (${human(r.temps.freedBytes)})` : "") +
            "\n",
        );
      return 0;
    }
    case "add": {
      only(["url", "sha256"]);
      if (rest.length !== 1) throw new UsageError(`"fledge cache add" takes one file, got ${rest.length}`);
      const file = resolve(io.cwd, rest[0]!);
      if (values.url !== undefined && !/^https?:\/\//.test(values.url)) throw new UsageError(`--url must be an http(s) URL, got "${values.url}"`);
      let added;
      try {
        added = await cache.add(file, { url: values.url, expectedSha256: values.sha256 });
      } catch (err) {
        const e = err as NodeJS.ErrnoException;
        throw new ExitError(1, e.code === "ENOENT" ? `${file} does not exist` : `cannot add ${file}: ${e.message}`);
      }
      if (flags.json) out(JSON.stringify({ ok: true, ...added }, null, 2) + "\n");
      else if (!flags.quiet) out(`${added.existed ? "already cached" : c.green("added")} sha256:${added.sha256} (${human(added.size)})${values.url ? ` for ${values.url}` : ""}\n`);
      return 0;
    }
    default:
      throw new UsageError(`unknown "fledge cache" subcommand "${sub}" (ls, prune or add)`);
  }
}
