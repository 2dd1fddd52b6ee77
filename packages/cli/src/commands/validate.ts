import { relative, resolve } from "node:path";
import type { ConfigIssue, FledgeConfig } from "@fledge/config";
import { preflight, type DiscardReason } from "@fledge/core";
import { UsageError, colors, type CliIO } from "../io.js";
import { parseCommand, checkBaseUrl } from "../args.js";
import { PLUGIN_LOOKUP } from "../plugins.js";
import type { GlobalFlags } from "../index.js";

export const help = `fledge validate — check fledge.toml and manifest.toml without building

Usage: fledge validate [options]

Runs the same pre-flight check as fledge build: both files against their schemas and the rules
a build applies (init mode, agent, mappings and the host files they name, compression and
level, the plugins — found, loaded, their options and their own checks —, the strategy and
overlay kinds they provide, what Volant accepts in manifest.json, the output paths), and lists
every problem at once. Nothing is downloaded or written.

Options:
  -C, --dir <dir>           run as if started in <dir>
  -c, --config <file>       fledge.toml to check (default: ./fledge.toml)
  -m, --manifest <file>     manifest.toml to check (default: manifest.toml beside fledge.toml;
                            without one, the defaults a build would use are checked)
  -o, --output <file>       check the artifact path as fledge build -o would (default: as fledge build)
      --manifest-output <f> check the manifest.json path as fledge build would
      --base-url <url>      check the manifest as "fledge build --base-url <url>" writes it
      --compression <name>  check a compressor given on the command line
      --level <n>           check a level given on the command line
      --json                print {ok, problems, warnings, notes, init} on stdout (and
                            manifestReasons when a build would write no manifest.json)
  -h, --help                show this help

Exit codes: 0 valid (warnings allowed), 1 problems found, 2 usage error.
`;

interface Report {
  ok: boolean;
  problems: ConfigIssue[];
  warnings: ConfigIssue[];
  notes: string[];
  /** The init mode fledge.toml resolves to, when it is valid. */
  init?: FledgeConfig["init"];
  /** The plugins applied, in order (built-ins last). */
  plugins?: string[];
  files: { config: string; manifest?: string };
  /** Set when a build would write no manifest.json (no manifest.toml, and the workload cannot be derived): why. */
  manifestReasons?: DiscardReason[];
}

/** Checks the files exactly as a build's pre-flight does; never throws for bad input. */
export async function validateFiles(opts: {
  config: string;
  manifest?: string;
  /** The artifact path; default: the strategy's artifact name in `outputDir`. */
  output?: string;
  outputDir?: string;
  manifestOutput?: string;
  baseUrl?: string;
  compression?: string;
  level?: number;
  env?: NodeJS.ProcessEnv;
}): Promise<Report> {
  const pf = await preflight({ ...opts, ...PLUGIN_LOOKUP, offline: true });
  const manifestFile = pf.manifestConfig?.file ?? (opts.manifest ? resolve(opts.manifest) : undefined);
  return {
    ok: pf.ok,
    problems: pf.problems,
    warnings: [...pf.warnings, ...pf.manifestWarnings],
    notes: pf.notes,
    ...(pf.config && pf.ok ? { init: pf.config.init } : {}),
    ...(pf.builder ? { plugins: [...pf.builder.plugins] } : {}),
    files: { config: opts.config, ...(manifestFile ? { manifest: manifestFile } : {}) },
    ...(pf.ok && pf.manifestReasons ? { manifestReasons: pf.manifestReasons } : {}),
  };
}

function describeInit(init: FledgeConfig["init"], rel: (p: string) => string): string {
  switch (init.mode) {
    case "default":
      return "default init mode (fledge's init starts kestrel)";
    case "custom-host":
      return `custom init mode (${rel(init.hostPath)} is PID 1)`;
    case "custom-image":
      return `custom init mode (fledge's init execs ${init.imagePath})`;
    case "none":
      return "none init mode (your /init is PID 1)";
  }
}

export async function run(argv: string[], io: CliIO, flags: GlobalFlags): Promise<number> {
  const { values } = parseCommand("validate", argv, {
    dir: { type: "string", short: "C" },
    config: { type: "string", short: "c" },
    manifest: { type: "string", short: "m" },
    output: { type: "string", short: "o" },
    "manifest-output": { type: "string" },
    "base-url": { type: "string" },
    compression: { type: "string" },
    level: { type: "string" },
  });
  if (values.help) {
    io.stdout.write(help);
    return 0;
  }
  checkBaseUrl(values["base-url"]);
  let level: number | undefined;
  if (values.level !== undefined) {
    if (!/^-?\d+$/.test(values.level)) throw new UsageError(`--level must be a whole number, got "${values.level}"`);
    level = Number(values.level);
  }
  const cwd = resolve(io.cwd, values.dir ?? ".");
  const report = await validateFiles({
    config: resolve(cwd, values.config ?? "fledge.toml"),
    manifest: values.manifest === undefined ? undefined : resolve(cwd, values.manifest),
    output: values.output === undefined ? undefined : resolve(cwd, values.output),
    outputDir: cwd,
    manifestOutput: values["manifest-output"] === undefined ? undefined : resolve(cwd, values["manifest-output"]),
    baseUrl: values["base-url"],
    compression: values.compression,
    level,
    env: io.env,
  });

  if (flags.json) {
    io.stdout.write(JSON.stringify(report, null, 2) + "\n");
    return report.ok ? 0 : 1;
  }

  const out = colors(io, io.stdout);
  const err = colors(io, io.stderr);
  const rel = (p: string) => {
    const r = relative(io.cwd, p);
    return r && !r.startsWith("..") ? r : p;
  };
  const line = (c: typeof err, kind: string, i: ConfigIssue) => {
    const where = i.line ? `${rel(i.file)}:${i.line}:${i.column ?? 1}` : rel(i.file);
    let s = `${kind} ${c.bold(where)}${i.keyPath ? ` ${c.cyan(i.keyPath)}` : ""}: ${i.message}\n`;
    if (i.codeFrame) s += i.codeFrame.replace(/^/gm, "    ") + "\n";
    if (i.hint) s += `    ${c.dim("hint:")} ${i.hint.replace(/\n/g, "\n          ")}\n`;
    return s;
  };
  if (!flags.quiet) for (const n of report.notes) io.stderr.write(`${err.dim("note:")} ${n}\n`);
  for (const w of report.warnings) io.stderr.write(line(err, err.yellow("warning:"), w));
  for (const p of report.problems) io.stderr.write(line(err, err.red("error:"), p));
  if (!report.ok) {
    const files = new Set(report.problems.map((p) => p.file)).size;
    const n = report.problems.length;
    io.stderr.write(`${err.red(n === 1 ? "1 problem" : `${n} problems`)} in ${files === 1 ? "1 file" : `${files} files`}\n`);
    return 1;
  }
  if (!flags.quiet) {
    const w = report.warnings.length;
    io.stdout.write(
      `${out.green("ok")} ${rel(report.files.config)}${report.init ? out.dim(`: ${describeInit(report.init, rel)}`) : ""}\n` +
        `${out.green("ok")} ${report.files.manifest ? rel(report.files.manifest) : out.dim(report.manifestReasons ? "(no manifest.toml: the artifact builds, but no manifest.json is written)" : "(no manifest.toml: defaults derived from fledge.toml)")}\n` +
        (w ? `${w === 1 ? "1 warning" : `${w} warnings`}\n` : ""),
    );
  }
  return 0;
}
