import { statSync } from "node:fs";
import { dirname, isAbsolute, posix, resolve } from "node:path";
import type { z } from "zod";
import { ConfigError, type ConfigIssue } from "./errors.js";
import { parseToml, readToml, stripBom } from "./toml.js";
import { DEFAULT_BUSYBOX_SHA256, DEFAULT_BUSYBOX_URL, FledgeTomlInput } from "./schema.js";
import { zodIssues } from "./zod-issues.js";
import { ManifestTomlInput } from "./manifest-toml.js";
import { salvage } from "./shape.js";
import { placeIssues } from "./place.js";

export type AgentConfig = { source: "release"; version: string } | { source: "local"; path: string } | { source: "http"; url: string; checksum?: string };

/** The init mode, resolved as docs/architecture.md ("Init modes") says. */
export type InitConfig = { mode: "default" } | { mode: "custom-host"; hostPath: string } | { mode: "custom-image"; imagePath: string } | { mode: "none" };

export interface Mapping {
  /** Absolute host path. */
  source: string;
  /** As written in fledge.toml (for messages). */
  written: string;
  /** Absolute, normalised image path. */
  dest: string;
}

/** One entry of `plugins` in fledge.toml. */
export interface PluginSpec {
  /** The module as written: a package name or a path relative to fledge.toml. */
  use: string;
  /** `options = { … }` as written; undefined when the entry is a plain string. */
  options?: Record<string, unknown>;
  /** Where it is written, for messages: `plugins[0]`. */
  keyPath: string;
}

/**
 * A rootfs source to overlay, in order: `[source] image` (kind "image", options `{ ref }`),
 * `[source] dockerfile` (kind "dockerfile", options `{ dockerfile, context?, target?,
 * build_args? }`), then each `[[overlay]]` table (its keys besides `kind` as options).
 */
export interface OverlaySpec {
  kind: string;
  /** The request for the plugin, as written (relative paths are relative to fledge.toml). */
  options: Record<string, unknown>;
  /** Where it is written: `source.image`, `source.dockerfile`, `overlay[0]`. */
  keyPath: string;
}

/** fledge.toml after validation and defaults: what the builder gets. */
export interface FledgeConfig {
  file: string;
  /** The TOML text, to place later findings (plugins, overlays) on lines. */
  text?: string;
  /** Directory of fledge.toml; relative host paths resolve against it. */
  rootDir: string;
  version: "1";
  strategy: string;
  init: InitConfig;
  /** Present in default mode only. */
  agent?: AgentConfig;
  busybox: { include: boolean; url: string; sha256?: string };
  source: { image?: string; dockerfile?: string; context?: string; target?: string; buildArgs: Record<string, string> };
  filesystem?: z.output<typeof FledgeTomlInput>["filesystem"];
  mappings: Mapping[];
  /** Rootfs sources, in the order the overlay stage applies them. */
  overlays: OverlaySpec[];
  output: { compression: string; level?: number; arch: "x86_64" | "aarch64" };
  fetch: { mirrors: { from: string; to: string }[] };
  /** `[run]`: `kernel` absolute. */
  run: { kernel?: string };
  /** `[check]` as written, when present (it turns the boot check on). */
  check?: { boot_budget_ms?: number; size_budget_mb?: number; marker?: string; timeout_ms?: number };
  plugins: PluginSpec[];
  /** Things that are allowed but probably not what was meant (not errors). */
  warnings?: ConfigIssue[];
}

export interface LoadOptions {
  /** Decides whether `[init] path` names a host file. Defaults to a stat of the file. */
  isHostFile?: (absPath: string) => boolean;
}

/** The outcome of checking a fledge.toml: the config when there are no problems, and every finding. */
export interface FledgeCheck {
  config?: FledgeConfig;
  problems: ConfigIssue[];
  warnings: ConfigIssue[];
}

const defaultIsHostFile = (p: string): boolean => {
  try {
    return statSync(p).isFile();
  } catch {
    return false;
  }
};

/** Reads, validates and normalises a fledge.toml. Throws ConfigError with every problem found. */
export async function loadFledgeConfig(file: string, opts: LoadOptions = {}): Promise<FledgeConfig> {
  const abs = resolve(file);
  const { data, text } = await readToml(abs);
  return orThrow(checkFledgeData(data, abs, opts, text));
}

/** Same as loadFledgeConfig, from TOML text. */
export function parseFledgeConfig(text: string, file: string, opts: LoadOptions = {}): FledgeConfig {
  return orThrow(checkFledgeConfig(text, file, opts));
}

/** Validates and normalises parsed fledge.toml data (no line numbers without the text). */
export function normalizeFledgeConfig(data: unknown, file: string, opts: LoadOptions = {}): FledgeConfig {
  return orThrow(checkFledgeData(data, file, opts));
}

/**
 * Checks fledge.toml text and reports every problem at once, with positions: TOML syntax, the
 * schema, and the rules across keys (init mode, agent, mappings). Does not throw for bad input.
 */
export function checkFledgeConfig(text: string, file: string, opts: LoadOptions = {}): FledgeCheck {
  text = stripBom(text);
  const abs = resolve(file);
  let data: Record<string, unknown>;
  try {
    data = parseToml(text, abs);
  } catch (err) {
    if (err instanceof ConfigError) return { problems: err.issues, warnings: [] };
    throw err;
  }
  return checkFledgeData(data, abs, opts, text);
}

function orThrow(c: FledgeCheck): FledgeConfig {
  if (!c.config) throw new ConfigError(c.problems);
  c.config.warnings = c.warnings;
  return c.config;
}

type Parsed = z.output<typeof FledgeTomlInput>;
type DeepPartial<T> = T extends (infer U)[] ? U[] : T extends object ? { [K in keyof T]?: DeepPartial<T[K]> } : T;

/** The mode as a user reads it in messages. */
function modeName(init: InitConfig, written?: string): string {
  switch (init.mode) {
    case "default":
      return "default (fledge's init starts kestrel)";
    case "none":
      return "none (`[init] none = true`)";
    case "custom-host":
      return `custom (\`[init] path = "${written}"\`, a host file)`;
    case "custom-image":
      return `custom (\`[init] path = "${written}"\`, a path in the image)`;
  }
}

/**
 * Optional string keys the Go fledge treats as unset when empty (`path = ""`). fledge accepts those
 * files too, and says the key is ignored.
 */
const EMPTY_MEANS_UNSET = [
  "init.path",
  "agent.version",
  "agent.path",
  "agent.url",
  "agent.checksum",
  "source.image",
  "source.dockerfile",
  "source.context",
  "source.target",
  "source.busybox_url",
  "source.busybox_sha256",
  "filesystem.type",
  "filesystem.overlay_size",
];

function dropEmptyStrings(data: unknown, file: string, warnings: ConfigIssue[]): unknown {
  if (!data || typeof data !== "object") return data;
  const copy: Record<string, unknown> = { ...(data as Record<string, unknown>) };
  for (const keyPath of EMPTY_MEANS_UNSET) {
    const [table, key] = keyPath.split(".") as [string, string];
    const t = copy[table];
    if (t && typeof t === "object" && !Array.isArray(t) && (t as Record<string, unknown>)[key] === "") {
      const { [key]: _dropped, ...rest } = t as Record<string, unknown>;
      copy[table] = rest;
      warnings.push({ file, keyPath, message: "is empty, so it is ignored (as if it were not written)", hint: "remove the line, or give it a value" });
    }
  }
  return copy;
}

export function checkFledgeData(data: unknown, file: string, opts: LoadOptions = {}, text?: string): FledgeCheck {
  const problems: ConfigIssue[] = [];
  const warnings: ConfigIssue[] = [];
  data = dropEmptyStrings(data, file, warnings);
  const parsed = FledgeTomlInput.safeParse(data);
  let c: DeepPartial<Parsed>;
  let schemaCount = 0;
  if (parsed.success) c = parsed.data;
  else {
    problems.push(...zodIssues(parsed.error, file, data, FledgeTomlInput, { other: { name: "manifest.toml", here: "fledge.toml", schema: ManifestTomlInput } }));
    schemaCount = problems.length;
    c = (salvage(FledgeTomlInput, data) ?? {}) as DeepPartial<Parsed>;
  }
  const problem = (keyPath: string, message: string, hint?: string) => problems.push({ file, keyPath, message, ...(hint ? { hint } : {}) });
  const warn = (keyPath: string, message: string, hint?: string) => warnings.push({ file, keyPath, message, ...(hint ? { hint } : {}) });

  const rootDir = dirname(file);
  const isHostFile = opts.isHostFile ?? defaultIsHostFile;
  const hostPath = (p: string) => (isAbsolute(p) ? p : resolve(rootDir, p));
  const strategy = c.strategy;

  // --- init mode (docs/architecture.md, "Init modes")
  let init: InitConfig = { mode: "default" };
  const initPath = c.init?.path;
  const none = c.init?.none === true;
  if (initPath && none) {
    problem(
      "init",
      `\`path\` and \`none = true\` are both set: that is two init modes at once, custom (\`path = "${initPath}"\`) and none`,
      "keep `path` for your own init, or `none = true` when a mapping puts your PID 1 at /init — not both",
    );
    init = { mode: "none" };
  } else if (none) {
    init = { mode: "none" };
  } else if (initPath) {
    const candidate = hostPath(initPath);
    if (isHostFile(candidate)) init = { mode: "custom-host", hostPath: candidate };
    else if (initPath.startsWith("/")) init = { mode: "custom-image", imagePath: posix.normalize(initPath) };
    else problem("init.path", `"${initPath}" is not a file: looked for ${candidate} on the host`, "give a host file relative to fledge.toml, or an absolute path inside the image that a mapping provides");
  }

  // --- agent: default mode only
  let agent: AgentConfig | undefined;
  if (init.mode !== "default" && c.agent) {
    problem(
      "agent",
      `[agent] is only used in the default init mode, but the init mode is ${initPath && none ? "ambiguous (see [init])" : modeName(init, initPath)}: kestrel is not installed in this mode`,
      initPath && none
        ? "remove [agent]: kestrel runs only in the default init mode"
        : init.mode === "none"
          ? "remove [agent], or remove `none = true` to let fledge's init start kestrel"
          : "remove [agent], or remove [init] `path` to let fledge's init start kestrel",
    );
  } else if (init.mode === "default") {
    const a = c.agent ?? { source_strategy: "release" as const, version: "latest" };
    const unused = (keys: string[], why: string) => {
      for (const k of keys) if (a[k as keyof typeof a] !== undefined) warn(`agent.${k}`, `is not used with source_strategy "${a.source_strategy}"`, why);
    };
    if (a.source_strategy === "release") {
      if (!a.version) problem("agent.version", 'source_strategy "release" needs a version', 'add version = "latest", or a tag such as "v0.1.0"');
      else agent = { source: "release", version: a.version };
      unused(["path", "url", "checksum"], "the release is resolved on GitHub and verified against its checksums.txt; remove the key");
    } else if (a.source_strategy === "local") {
      if (!a.path) problem("agent.path", 'source_strategy "local" needs a path', 'add path = "./kestrel" (relative to fledge.toml)');
      else agent = { source: "local", path: hostPath(a.path) };
      unused(["version", "url", "checksum"], "a local kestrel is copied as it is; remove the key");
    } else if (a.source_strategy === "http") {
      if (!a.url) problem("agent.url", 'source_strategy "http" needs a url', 'add url = "https://…/kestrel"');
      else {
        agent = { source: "http", url: a.url, ...(a.checksum ? { checksum: a.checksum } : {}) };
        if (!a.checksum) warn("agent", "kestrel is downloaded without a checksum, so the download is not verified", 'add checksum = "sha256:<hex>"');
      }
      unused(["version", "path"], "remove the key");
    }
  }

  // --- mappings
  const mappings: Mapping[] = [];
  for (const [src, dest] of Object.entries(c.mappings ?? {})) {
    const keyPath = `mappings.${JSON.stringify(src)}`;
    if (!src.trim()) {
      problem(keyPath, "the host path (the key) is empty", 'write "./file" = "/dest/in/image"');
      continue;
    }
    if (!dest) {
      problem(keyPath, "the destination is empty", `write ${JSON.stringify(src)} = "/path/in/image"`);
      continue;
    }
    if (!dest.startsWith("/")) {
      problem(keyPath, `destination "${dest}" must be an absolute path in the image`, `write "/${dest.replace(/^(\.\/|\/)+/, "")}"`);
      continue;
    }
    if (dest.split("/").includes("..")) {
      problem(keyPath, `destination "${dest}" must not contain ".."`, "write the destination without .. components");
      continue;
    }
    mappings.push({ source: hostPath(src), written: src, dest: posix.normalize(dest) });
  }

  if (c.source?.busybox === false && init.mode === "default") problem("source.busybox", "busybox can only be left out in the custom and none init modes", "remove `busybox = false`, or choose a custom or none init");

  // --- what the image must provide in custom-image and none modes
  const overlay = !!(c.source?.image || c.source?.dockerfile || c.overlay?.length);
  const provides = (p: string) => mappings.some((m) => m.dest === p || p.startsWith(m.dest === "/" ? "/" : m.dest + "/"));
  if (init.mode === "none" && !overlay && !provides("/init"))
    warn("init.none", "no mapping puts a file at /init, so the image would have no PID 1 (the build fails unless a plugin adds one)", 'map your binary: [mappings] "./my-init" = "/init"');
  if (init.mode === "custom-image" && !overlay && !provides(init.imagePath))
    warn(
      "init.path",
      `"${initPath}" is neither a host file (looked for ${hostPath(initPath!)}) nor the destination of a mapping (the build fails unless a plugin or overlay provides it)`,
      `map it: [mappings] "./my-init" = "${init.imagePath}", or give the host file's path`,
    );

  // --- strategies
  if (strategy === "oci_rootfs") {
    if (!c.source?.image && !c.source?.dockerfile && !c.overlay?.length && !problems.some((p) => p.keyPath.startsWith("source.") || p.keyPath.startsWith("overlay")))
      problem("source", "the oci_rootfs strategy needs source.image, source.dockerfile or an [[overlay]]", 'add [source] image = "docker.io/library/nginx:alpine"');
    if (c.source?.image && c.source?.dockerfile) problem("source", "source.image and source.dockerfile are both set: give only one", "keep one of them");
  } else if (strategy === "initramfs" && c.filesystem) {
    warn("filesystem", "[filesystem] is only used by the oci_rootfs strategy", 'remove it, or set strategy = "oci_rootfs"');
  }
  if (!c.source?.dockerfile)
    for (const k of ["context", "target", "build_args"] as const) if (c.source?.[k] !== undefined) warn(`source.${k}`, "is only used with source.dockerfile", "remove it, or add source.dockerfile");

  dropEchoes(problems, schemaCount);
  if (text) {
    placeIssues(problems, text);
    placeIssues(warnings, text);
  }
  // A problem at a key says more than a warning about it.
  const warned = warnings.filter((w) => !problems.some((p) => p.keyPath === w.keyPath));
  warnings.splice(0, warnings.length, ...warned);
  problems.sort(byPosition);
  warnings.sort(byPosition);
  if (problems.length || !parsed.success) return { problems, warnings };

  const p = parsed.data;
  const sha = p.source?.busybox_sha256 ?? (p.source?.busybox_url ? undefined : DEFAULT_BUSYBOX_SHA256);
  const overlays: OverlaySpec[] = [];
  if (p.source?.image) overlays.push({ kind: "image", options: { ref: p.source.image }, keyPath: "source.image" });
  if (p.source?.dockerfile) {
    const { dockerfile, context, target, build_args } = p.source;
    overlays.push({
      kind: "dockerfile",
      options: { dockerfile, ...(context !== undefined ? { context } : {}), ...(target !== undefined ? { target } : {}), ...(build_args !== undefined ? { build_args } : {}) },
      keyPath: "source.dockerfile",
    });
  }
  for (const [i, { kind, ...options }] of (p.overlay ?? []).entries()) overlays.push({ kind, options, keyPath: `overlay[${i}]` });
  const config: FledgeConfig = {
    file,
    ...(text !== undefined ? { text } : {}),
    rootDir,
    version: p.version,
    strategy: p.strategy,
    init,
    agent,
    busybox: {
      include: p.source?.busybox !== false,
      // a plain path is relative to fledge.toml, like every other host path
      url: p.source?.busybox_url ? (/^[a-z][a-z0-9+.-]*:\/\//i.test(p.source.busybox_url) ? p.source.busybox_url : hostPath(p.source.busybox_url)) : DEFAULT_BUSYBOX_URL,
      sha256: sha?.replace(/^sha256:/, "").toLowerCase(),
    },
    source: {
      image: p.source?.image,
      dockerfile: p.source?.dockerfile,
      context: p.source?.context,
      target: p.source?.target,
      buildArgs: p.source?.build_args ?? {},
    },
    filesystem: p.filesystem,
    mappings,
    overlays,
    output: { compression: p.output?.compression ?? "gzip", level: p.output?.level, arch: p.output?.arch ?? "x86_64" },
    fetch: { mirrors: Object.entries(p.fetch?.mirrors ?? {}).map(([from, to]) => ({ from, to })) },
    run: p.run?.kernel ? { kernel: hostPath(p.run.kernel) } : {},
    ...(p.check ? { check: p.check } : {}),
    plugins: (p.plugins ?? []).map((e, i) => (typeof e === "string" ? { use: e, keyPath: `plugins[${i}]` } : { use: e.use, ...(e.options ? { options: e.options } : {}), keyPath: `plugins[${i}]` })),
  };
  return { config, problems, warnings };
}

const related = (a: string, b: string) => a === b || a.startsWith(b + ".") || b.startsWith(a + ".") || a.startsWith(b + "[") || b.startsWith(a + "[");

/**
 * Removes, from the issues after the first `schemaCount`, those about a key the schema already
 * reported: a rule that saw a salvaged (invalid, so missing) value would only echo it.
 */
export function dropEchoes(issues: ConfigIssue[], schemaCount: number): ConfigIssue[] {
  // Unknown keys are ignored by the salvage, so they cause no echoes.
  const schema = issues.slice(0, schemaCount).filter((s) => !s.message.startsWith("unknown "));
  const rest = issues.slice(schemaCount).filter((i) => !schema.some((s) => related(s.keyPath, i.keyPath)));
  issues.splice(schemaCount, issues.length - schemaCount, ...rest);
  return issues;
}

/** Issues in file order; those with no position (whole-file problems) first. */
export function byPosition(a: ConfigIssue, b: ConfigIssue): number {
  return (a.line ?? 0) - (b.line ?? 0) || (a.column ?? 0) - (b.column ?? 0);
}
