import { statSync } from "node:fs";
import { dirname, isAbsolute, posix, resolve } from "node:path";
import type { z } from "zod";
import { ConfigError, type ConfigIssue } from "./errors.js";
import { parseToml, readToml } from "./toml.js";
import { DEFAULT_BUSYBOX_SHA256, DEFAULT_BUSYBOX_URL, FledgeTomlInput } from "./schema.js";
import { zodIssues } from "./zod-issues.js";
import { shapeKeysAt } from "./shape.js";

export type AgentConfig =
  | { source: "release"; version: string }
  | { source: "local"; path: string }
  | { source: "http"; url: string; checksum?: string };

/** The init mode, resolved as DESIGN.md §3 says. */
export type InitConfig =
  | { mode: "default" }
  | { mode: "custom-host"; hostPath: string }
  | { mode: "custom-image"; imagePath: string }
  | { mode: "none" };

export interface Mapping {
  /** Absolute host path. */
  source: string;
  /** As written in fledge.toml (for messages). */
  written: string;
  /** Absolute, normalised image path. */
  dest: string;
}

/** fledge.toml after validation and defaults: what the builder gets. */
export interface FledgeConfig {
  file: string;
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
  output: { compression: string; level?: number; arch: "x86_64" | "aarch64" };
  fetch: { mirrors: { from: string; to: string }[] };
  plugins: string[];
}

export interface LoadOptions {
  /** Decides whether `[init] path` names a host file. Defaults to a stat of the file. */
  isHostFile?: (absPath: string) => boolean;
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
  const { data } = await readToml(abs);
  return normalizeFledgeConfig(data, abs, opts);
}

/** Same as loadFledgeConfig, from TOML text. */
export function parseFledgeConfig(text: string, file: string, opts: LoadOptions = {}): FledgeConfig {
  return normalizeFledgeConfig(parseToml(text, file), resolve(file), opts);
}

export function normalizeFledgeConfig(data: unknown, file: string, opts: LoadOptions = {}): FledgeConfig {
  const parsed = FledgeTomlInput.safeParse(data);
  const issues: ConfigIssue[] = [];
  if (!parsed.success) {
    throw new ConfigError(zodIssues(parsed.error, file, data, (p) => shapeKeysAt(FledgeTomlInput, p)));
  }
  const c = parsed.data;
  const rootDir = dirname(file);
  const isHostFile = opts.isHostFile ?? defaultIsHostFile;
  const hostPath = (p: string) => (isAbsolute(p) ? p : resolve(rootDir, p));

  // --- init mode
  let init: InitConfig = { mode: "default" };
  const initPath = c.init?.path;
  const none = c.init?.none === true;
  if (initPath && none) {
    issues.push({
      file,
      keyPath: "init",
      message: '`path` and `none = true` both set: that is two init modes at once (custom and none)',
      hint: "keep `path` for a custom init, or `none = true` when a mapping puts your PID 1 at /init",
    });
  } else if (none) {
    init = { mode: "none" };
  } else if (initPath) {
    const candidate = hostPath(initPath);
    if (isHostFile(candidate)) init = { mode: "custom-host", hostPath: candidate };
    else if (initPath.startsWith("/")) init = { mode: "custom-image", imagePath: posix.normalize(initPath) };
    else
      issues.push({
        file,
        keyPath: "init.path",
        message: `${initPath} is not a file (looked for ${candidate})`,
        hint: "give a host file relative to fledge.toml, or an absolute path inside the image that a mapping provides",
      });
  }

  // --- agent
  let agent: AgentConfig | undefined;
  if (init.mode !== "default" && c.agent) {
    const detected = init.mode === "none" ? "none (`[init] none = true`)" : `custom (\`[init] path = "${initPath}"\`)`;
    issues.push({
      file,
      keyPath: "agent",
      message: `[agent] is only used in default mode, but the init mode is ${detected}`,
      hint: "remove [agent], or remove [init] to let fledge's init start kestrel",
    });
  } else if (init.mode === "default") {
    const a = c.agent ?? { source_strategy: "release" as const, version: "latest" };
    if (a.source_strategy === "release") {
      if (!a.version && c.agent) issues.push({ file, keyPath: "agent.version", message: 'source_strategy "release" needs a version', hint: 'add version = "latest" or a tag such as "v0.1.0"' });
      agent = { source: "release", version: a.version ?? "latest" };
    } else if (a.source_strategy === "local") {
      if (!a.path) issues.push({ file, keyPath: "agent.path", message: 'source_strategy "local" needs a path', hint: 'add path = "./kestrel" (relative to fledge.toml)' });
      else agent = { source: "local", path: hostPath(a.path) };
    } else {
      if (!a.url) issues.push({ file, keyPath: "agent.url", message: 'source_strategy "http" needs a url', hint: 'add url = "https://…/kestrel"' });
      else agent = { source: "http", url: a.url, checksum: a.checksum };
    }
  }

  // --- mappings
  const mappings: Mapping[] = [];
  for (const [src, dest] of Object.entries(c.mappings ?? {})) {
    const keyPath = `mappings."${src}"`;
    if (!dest.startsWith("/")) {
      issues.push({ file, keyPath, message: `destination "${dest}" must be an absolute path in the image`, hint: `write "/${dest.replace(/^\.?\/*/, "")}"` });
      continue;
    }
    if (dest.split("/").includes("..")) {
      issues.push({ file, keyPath, message: `destination "${dest}" must not contain ".."`, hint: "write the destination without .. components" });
      continue;
    }
    mappings.push({ source: hostPath(src), written: src, dest: posix.normalize(dest) });
  }

  if (c.source?.busybox === false && init.mode === "default") {
    issues.push({ file, keyPath: "source.busybox", message: "busybox can only be left out in custom and none modes", hint: "remove `busybox = false`, or choose a custom or none init" });
  }

  if (issues.length) throw new ConfigError(issues);

  const sha = c.source?.busybox_sha256 ?? (c.source?.busybox_url ? undefined : DEFAULT_BUSYBOX_SHA256);
  return {
    file,
    rootDir,
    version: c.version,
    strategy: c.strategy,
    init,
    agent,
    busybox: {
      include: c.source?.busybox !== false,
      // a plain path is relative to fledge.toml, like every other host path
      url: c.source?.busybox_url ? (/^[a-z][a-z0-9+.-]*:\/\//i.test(c.source.busybox_url) ? c.source.busybox_url : hostPath(c.source.busybox_url)) : DEFAULT_BUSYBOX_URL,
      sha256: sha?.replace(/^sha256:/, "").toLowerCase(),
    },
    source: {
      image: c.source?.image,
      dockerfile: c.source?.dockerfile,
      context: c.source?.context,
      target: c.source?.target,
      buildArgs: c.source?.build_args ?? {},
    },
    filesystem: c.filesystem,
    mappings,
    output: { compression: c.output?.compression ?? "gzip", level: c.output?.level, arch: c.output?.arch ?? "x86_64" },
    fetch: { mirrors: Object.entries(c.fetch?.mirrors ?? {}).map(([from, to]) => ({ from, to })) },
    plugins: c.plugins ?? [],
  };
}
