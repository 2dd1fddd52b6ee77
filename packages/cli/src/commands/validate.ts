import { lstat } from "node:fs/promises";
import { dirname, join, relative, resolve } from "node:path";
import {
  byPosition,
  checkFledgeConfig,
  checkManifestToml,
  ConfigError,
  defaultPluginName,
  dropEchoes,
  placeIssues,
  readTomlText,
  type ConfigIssue,
  type FledgeConfig,
} from "@fledge/config";
import { checkManifest } from "@fledge/manifest";
import { colors, type CliIO } from "../io.js";
import { parseCommand, checkBaseUrl } from "../args.js";
import type { GlobalFlags } from "../index.js";

export const help = `fledge validate — check fledge.toml and manifest.toml without building

Usage: fledge validate [options]

Checks both files against their schemas and against the rules a build applies (init mode,
agent, mappings, the host files they name; what Volant accepts in manifest.json), and lists
every problem at once. Nothing is downloaded or written.

Options:
  -C, --dir <dir>           run as if started in <dir>
  -c, --config <file>       fledge.toml to check (default: ./fledge.toml)
  -m, --manifest <file>     manifest.toml to check (default: manifest.toml beside fledge.toml;
                            without one, the defaults a build would use are checked)
      --base-url <url>      check the manifest as "fledge build --base-url <url>" writes it
      --json                print {ok, problems, warnings, notes, init} on stdout
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
  files: { config: string; manifest?: string };
}

async function readText(file: string): Promise<{ text?: string; issue?: ConfigIssue; missing?: boolean }> {
  try {
    // regular files only (a FIFO would hang), size-limited, BOM dropped (hardening: issue 11)
    return { text: await readTomlText(file) };
  } catch (err) {
    if (!(err instanceof ConfigError)) throw err;
    const issue = err.issues[0]!;
    return { missing: issue.message === "file not found", issue };
  }
}

/** Checks the files; never throws for bad input. */
export async function validateFiles(opts: { config: string; manifest?: string; baseUrl?: string }): Promise<Report> {
  const problems: ConfigIssue[] = [];
  const warnings: ConfigIssue[] = [];
  const notes: string[] = [];
  let init: FledgeConfig["init"] | undefined;

  const cfg = await readText(opts.config);
  if (cfg.issue) problems.push(cfg.issue);
  else {
    const r = checkFledgeConfig(cfg.text!, opts.config);
    const missing = r.config ? placeIssues(await missingHostFiles(r.config), cfg.text!) : [];
    problems.push(...[...r.problems, ...missing].sort(byPosition));
    warnings.push(...r.warnings);
    init = r.config?.init;
  }

  const manifestFile = opts.manifest ?? join(dirname(opts.config), "manifest.toml");
  const man = await readText(manifestFile);
  let usedFile: string | undefined = manifestFile;
  if (man.missing && opts.manifest === undefined) {
    // As in a build: no manifest.toml means defaults from the directory name.
    const name = defaultPluginName(dirname(manifestFile));
    usedFile = undefined;
    notes.push(`no manifest.toml at ${manifestFile}: a build uses name "${name}", runtime "${name}", version 0.1.0`);
    const m = checkManifest({ name, runtime: name, version: "0.1.0" }, { file: manifestFile, baseUrl: opts.baseUrl });
    problems.push(...m.problems);
    warnings.push(...m.warnings);
  } else if (man.issue) problems.push(man.issue);
  else {
    const text = man.text!;
    const r = checkManifestToml(text, manifestFile);
    const mine = [...r.problems];
    // After a syntax error there is nothing more to check.
    if (r.data || !r.problems.some((p) => p.message.startsWith("TOML syntax error"))) {
      const m = checkManifest(r.data ?? r.partial, { file: manifestFile, text, baseUrl: opts.baseUrl });
      mine.push(...m.problems);
      dropEchoes(mine, r.problems.length);
      warnings.push(...m.warnings);
    }
    problems.push(...mine.sort(byPosition));
  }
  return { ok: problems.length === 0, problems, warnings, notes, ...(init ? { init } : {}), files: { config: opts.config, ...(usedFile ? { manifest: usedFile } : {}) } };
}

/** Host files the build would read and that are not there (the build would fail on them). */
async function missingHostFiles(c: FledgeConfig): Promise<ConfigIssue[]> {
  const exists = (p: string) => lstat(p).then(() => true, () => false);
  const out: ConfigIssue[] = [];
  for (const m of c.mappings)
    if (!(await exists(m.source)))
      out.push({ file: c.file, keyPath: `mappings.${JSON.stringify(m.written)}`, message: `${m.source} does not exist`, hint: "host paths are relative to fledge.toml" });
  if (c.agent?.source === "local" && !(await exists(c.agent.path)))
    out.push({ file: c.file, keyPath: "agent.path", message: `${c.agent.path} does not exist`, hint: "point path at the kestrel binary, relative to fledge.toml" });
  if (c.busybox.include && !/^[a-z][a-z0-9+.-]*:\/\//i.test(c.busybox.url) && !(await exists(c.busybox.url)))
    out.push({ file: c.file, keyPath: "source.busybox_url", message: `${c.busybox.url} does not exist` });
  if (c.busybox.include && c.busybox.url.startsWith("file://") && !(await exists(new URL(c.busybox.url).pathname)))
    out.push({ file: c.file, keyPath: "source.busybox_url", message: `${new URL(c.busybox.url).pathname} does not exist` });
  return out;
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
    "base-url": { type: "string" },
  });
  if (values.help) {
    io.stdout.write(help);
    return 0;
  }
  checkBaseUrl(values["base-url"]);
  const cwd = resolve(io.cwd, values.dir ?? ".");
  const report = await validateFiles({
    config: resolve(cwd, values.config ?? "fledge.toml"),
    manifest: values.manifest === undefined ? undefined : resolve(cwd, values.manifest),
    baseUrl: values["base-url"],
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
        `${out.green("ok")} ${report.files.manifest ? rel(report.files.manifest) : out.dim("(no manifest.toml: defaults)")}\n` +
        (w ? `${w === 1 ? "1 warning" : `${w} warnings`}\n` : ""),
    );
  }
  return 0;
}
