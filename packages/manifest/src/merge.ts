import { readFileSync } from "node:fs";
import { dirname, isAbsolute, join, resolve } from "node:path";
import { placeIssues, type ConfigIssue, type ManifestToml } from "@fledge/config";
import { estimateKernelCmdline, KERNEL_CMDLINE_MARGIN, KERNEL_CMDLINE_MAX } from "./cmdline.js";
import { VolantManifest, MANIFEST_SCHEMA_URL } from "./model.js";

/** What the build knows that manifest.toml does not. */
export interface BuildMetadata {
  /** Absolute path of the artifact written. */
  artifactPath: string;
  /** sha256 of the artifact, hex. */
  sha256: string;
  /**
   * What the artifact is: an initramfs (`initramfs {url, checksum}`, the default) or a root disk
   * image (`rootfs {url, checksum, format}`).
   */
  kind?: "initramfs" | "rootfs";
  /** The disk image format of a rootfs (`raw` or `qcow2`; default `raw`). */
  format?: "raw" | "qcow2";
  /** Publish the artifact under this URL prefix instead of its local path. */
  baseUrl?: string;
  /** The manifest.toml the data came from, for messages (default "manifest.toml"). */
  manifestFile?: string;
  /** Its text, to give findings a line and column. */
  manifestText?: string;
  /** Where relative cloud-init paths resolve (default: the directory of `manifestFile`, else the current one). */
  manifestDir?: string;
  /** Reads a cloud-init document (default `fs.readFileSync`). */
  readFile?: (path: string) => Buffer;
  /**
   * Whether kestrel runs in the guest (the default init mode; default true). Without it (custom
   * and none modes) port 8080 is the workload's to use: Volant sends requests there.
   */
  kestrel?: boolean;
}

/** Largest cloud-init document fledge inlines (Volant passes the whole manifest on the kernel command line). */
const MAX_CLOUD_INIT_BYTES = 1024 * 1024;

export interface MergeResult {
  manifest: VolantManifest;
  /** What Volant would drop or trip over, as `key.path: message` lines. */
  warnings: string[];
  /** The same warnings with file, key path and position. */
  warningIssues: ConfigIssue[];
}

/** Raised when manifest.toml and the build metadata cannot make a manifest Volant accepts. */
export class ManifestError extends Error {
  override name = "ManifestError";
  readonly code = "FLEDGE_MANIFEST";
  /** `key.path: message` lines. */
  readonly problems: string[];
  /** The same problems with file, key path, hint and position (printed by the CLI). */
  readonly issues: ConfigIssue[];
  constructor(issues: ConfigIssue[]) {
    const problems = issues.map((i) => `${i.keyPath ? i.keyPath + ": " : ""}${i.message}`);
    super(problems.join("\n"));
    this.problems = problems;
    this.issues = issues;
  }
}

/** kestrel's own API port in the guest. */
export const KESTREL_PORT = 8080;

export interface ComposeResult {
  /** The manifest, when there are no problems. */
  manifest?: VolantManifest;
  problems: ConfigIssue[];
  warnings: ConfigIssue[];
}

const DEFAULT_CPU = 1;
const DEFAULT_MEMORY_MB = 512;
const DEFAULT_HEALTH_TIMEOUT_MS = 10_000;

type CloudDoc = NonNullable<NonNullable<ManifestToml["cloud_init"]>["user_data"]>;

/** `{inline, content, path}` as Volant reads it; a string is inline content; `inline` is inferred when omitted. */
function cloudDoc(d: CloudDoc): { inline?: boolean; content?: string; path?: string } {
  if (typeof d === "string") return { inline: true, content: d };
  const inline = d.inline ?? (d.content !== undefined && d.path === undefined ? true : d.path !== undefined && d.content === undefined ? false : undefined);
  return { ...(inline !== undefined ? { inline } : {}), ...(d.content !== undefined ? { content: d.content } : {}), ...(d.path !== undefined ? { path: d.path } : {}) };
}

/** Maps a manifest.json path back to where it comes from in manifest.toml. */
function tomlPathOf(jsonPath: PropertyKey[], toml: ManifestToml): string {
  const [a, b, ...rest] = jsonPath.map(String);
  if (a === "workload" && b === "env") return rest.length && toml.env?.[rest[0]!] !== undefined ? `env.${rest[0]}` : "workload.env";
  if (a === "initramfs" || a === "rootfs") return "";
  return [a, b, ...rest].filter((x) => x !== undefined).join(".");
}

/**
 * manifest.toml + build metadata → manifest.json (docs/architecture.md, "manifest.json"), with every problem and warning
 * found. Never throws for bad input: `manifest` is set only when Volant would accept it.
 */
export function composeManifest(toml: ManifestToml, meta: BuildMetadata): ComposeResult {
  const file = meta.manifestFile ?? "manifest.toml";
  const problems: ConfigIssue[] = [];
  const warnings: ConfigIssue[] = [];
  const problem = (keyPath: string, message: string, hint?: string) => problems.push({ file, keyPath, message, ...(hint ? { hint } : {}) });
  const warn = (keyPath: string, message: string, hint?: string) => warnings.push({ file, keyPath, message, ...(hint ? { hint } : {}) });

  const name = toml.name?.trim();
  if (!name) problem("name", "manifest.toml needs a name", 'add name = "myapp"');

  // --- workload
  const w = toml.workload;
  const exposed = toml.network?.expose ?? [];
  if (exposed.length) warn("network.expose", "is not part of Volant's manifest (ports belong to the VM config): left out of manifest.json", "keep it to derive workload.base_url, or remove it");
  let baseUrl = w?.base_url?.trim();
  if (!baseUrl) {
    const tcp = exposed.find((e) => (e.protocol ?? "tcp") === "tcp");
    if (tcp) baseUrl = `http://127.0.0.1:${tcp.port}`;
  }
  const written = w?.entrypoint === undefined ? [] : Array.isArray(w.entrypoint) ? w.entrypoint : [w.entrypoint];
  const entrypoint = [...written, ...(w?.args ?? [])];
  if (!w) problem("workload", "manifest.toml needs a [workload] with an entrypoint: the program kestrel starts in the guest", '[workload]\nentrypoint = "/usr/bin/myapp"');
  else if (w.entrypoint !== undefined) {
    if (!entrypoint[0]?.trim()) problem("workload.entrypoint", "the program to run is empty", 'write entrypoint = "/usr/bin/myapp"');
    else if (!entrypoint[0].trim().startsWith("/"))
      warn("workload.entrypoint", `"${entrypoint[0]}" is not an absolute path: kestrel looks it up on PATH in the guest`, `write the full path, e.g. "/usr/bin/${entrypoint[0].trim()}"`);
    entrypoint.forEach((a, i) => {
      const key = i < written.length ? "workload.entrypoint" : "workload.args";
      if (a !== "" && a.trim() === "") warn(key, `argument ${i} is only whitespace: Volant drops it`);
      else if (a === "" && i > 0) warn(key, `argument ${i} is empty: Volant drops empty arguments`);
      else if (a !== a.trim()) warn(key, `argument ${JSON.stringify(a)} has spaces at its ends: Volant trims them`);
    });
  }
  if (w && !baseUrl)
    problem("workload.base_url", "Volant needs the workload's base_url (where it answers HTTP in the guest)", 'set base_url = "http://127.0.0.1:8000", or expose a tcp port under [[network.expose]] so it can be derived');
  let port: number | undefined;
  if (baseUrl) {
    let u: URL | undefined;
    try {
      u = new URL(baseUrl);
    } catch {
      /* reported below */
    }
    if (!u || !/^https?:$/.test(u.protocol) || !u.hostname) problem(w?.base_url ? "workload.base_url" : "network.expose", `base_url "${baseUrl}" is not an http(s) URL`, 'write it as "http://127.0.0.1:8000"');
    else port = u.port ? Number(u.port) : u.protocol === "https:" ? 443 : 80;
  }
  const listens = new Set([...(port ? [port] : []), ...exposed.map((e) => e.port)]);
  if (meta.kestrel !== false && listens.has(KESTREL_PORT))
    warn(
      port === KESTREL_PORT ? (w?.base_url ? "workload.base_url" : "network.expose") : "network.expose",
      `the workload uses port ${KESTREL_PORT}, which kestrel's own API listens on in the guest`,
      "choose another port, e.g. 8000",
    );

  // --- env: [env] and [workload.env] are the same thing
  const env: Record<string, string> = { ...(w?.env ?? {}) };
  for (const [k, v] of Object.entries(toml.env ?? {})) {
    if (k in env && env[k] !== v) problem(`env.${k}`, `is also set in [workload.env] with another value (${JSON.stringify(env[k])})`, "set it in one place");
    env[k] = v;
  }
  for (const [k, v] of Object.entries(env)) {
    const key = toml.env && k in toml.env ? `env.${k}` : `workload.env.${k}`;
    if (!k.trim()) warn(key, "an empty variable name: Volant drops it");
    else if (k !== k.trim() || v !== v.trim()) warn(key, "has spaces at the ends of its name or value: Volant trims them");
  }

  // --- labels Volant sets itself
  for (const [label, value] of [
    ["volant.plugin", name],
    ["volant.runtime", toml.runtime?.trim() || name],
  ] as const)
    if (toml.labels?.[label] !== undefined && toml.labels[label] !== value)
      warn(`labels."${label}"`, `Volant sets this label to the plugin's ${label.slice(7) === "plugin" ? "name" : "runtime"} (${JSON.stringify(value)}): your value is replaced`, "remove it");

  // --- actions
  for (const [n, a] of Object.entries(toml.actions ?? {})) {
    if (!n.trim()) warn(`actions.${JSON.stringify(n)}`, "an action with an empty name: Volant drops it");
    else {
      if (!a.method?.trim()) problem(`actions.${n}.method`, `action ${n} missing method`, 'add method = "POST"');
      if (!a.path?.trim()) problem(`actions.${n}.path`, `action ${n} missing path`, 'add path = "/run"');
      else if (!a.path.trim().startsWith("/")) warn(`actions.${n}.path`, `"${a.path}" does not start with "/"`, `write "/${a.path.trim()}"`);
    }
  }

  // --- network: Volant needs a mode; the Go fledge defaulted it to bridged
  const n = toml.network;
  let network: VolantManifest["network"];
  if (n && (n.mode || n.subnet || n.gateway || n.auto_assign !== undefined)) {
    const mode = n.mode ?? "bridged";
    network = {
      mode,
      ...(n.subnet ? { subnet: n.subnet } : {}),
      ...(n.gateway ? { gateway: n.gateway } : {}),
      ...(n.auto_assign !== undefined ? { auto_assign: n.auto_assign } : {}),
    };
    if (mode === "bridged" && n.subnet?.trim() && !n.gateway?.trim() && !n.auto_assign) problem("network", "bridged mode with subnet requires gateway or auto_assign", 'add gateway = "10.1.0.1", or auto_assign = true');
    if (mode !== "bridged" && (n.subnet || n.gateway || n.auto_assign !== undefined)) warn("network", `subnet, gateway and auto_assign are only used in bridged mode, not ${mode}`);
  }

  // --- cloud-init documents
  // volar resolves a relative `path` against the directory of manifest.json and inlines the file when
  // installing; fledge writes manifest.json elsewhere (beside the artifact, or --manifest-output), so a
  // path relative to manifest.toml would break. fledge inlines the document itself, exactly as volar
  // would: { inline: true, content }, so the manifest installs wherever it is written.
  const baseDir = meta.manifestDir ?? (meta.manifestFile && isAbsolute(meta.manifestFile) ? dirname(meta.manifestFile) : resolve("."));
  const read = meta.readFile ?? ((p: string) => readFileSync(p));
  const inlineCloudDoc = (path: string, keyPath: string): { inline: true; content: string } | undefined => {
    const full = isAbsolute(path) ? path : join(baseDir, path);
    let data: Buffer;
    try {
      data = read(full);
    } catch (err) {
      const code = (err as NodeJS.ErrnoException).code;
      if (code === "ENOENT" && isAbsolute(path)) {
        warn(
          keyPath,
          `${path} does not exist here: left as a path, which volar reads (and inlines) when it installs the manifest, so it must exist on that machine`,
          "use a path relative to manifest.toml to have fledge inline the document",
        );
        return undefined;
      }
      const why = code === "ENOENT" ? "does not exist" : code === "EISDIR" ? "is a directory" : ((err as Error).message ?? String(err));
      problem(keyPath, `${JSON.stringify(path)}: ${full} ${why}`, isAbsolute(path) ? undefined : "a relative path is relative to manifest.toml");
      return undefined;
    }
    if (data.length > MAX_CLOUD_INIT_BYTES) {
      problem(
        keyPath,
        `${full} is ${data.length} bytes; fledge inlines cloud-init documents up to ${MAX_CLOUD_INIT_BYTES} bytes`,
        "Volant passes the whole manifest on the kernel command line: keep cloud-init documents small",
      );
      return undefined;
    }
    let content: string;
    try {
      content = new TextDecoder("utf-8", { fatal: true }).decode(data);
    } catch {
      problem(keyPath, `${full} is not UTF-8 text: a JSON manifest cannot carry it`, "cloud-init reads YAML or a #! script: save it as UTF-8");
      return undefined;
    }
    return { inline: true, content };
  };
  let cloudInit: VolantManifest["cloud_init"];
  if (toml.cloud_init) {
    const ci = toml.cloud_init;
    cloudInit = { ...(ci.datasource ? { datasource: ci.datasource } : {}), ...(ci.seed_mode ? { seed_mode: ci.seed_mode } : {}) };
    for (const k of ["user_data", "meta_data", "network_config"] as const) {
      const d = ci[k];
      if (d === undefined) continue;
      const doc = cloudDoc(d);
      cloudInit[k] = doc;
      if (doc.content?.trim() && doc.path?.trim()) problem(`cloud_init.${k}`, `cloud_init.${k}: content and path cannot both be set`, "keep `content` for an inline document, or `path` for a file on the Volant host");
      else if (doc.content?.trim() && !doc.inline) problem(`cloud_init.${k}.inline`, `cloud_init.${k}: inline must be true when content provided`, "remove `inline = false` (or set it true)");
      else if (doc.path?.trim() && doc.inline) problem(`cloud_init.${k}.inline`, `cloud_init.${k}: inline must be false when path provided`, "remove `inline = true` (or set it false)");
      else if (doc.path?.trim()) {
        const inlined = inlineCloudDoc(doc.path.trim(), `cloud_init.${k}.path`);
        if (inlined) cloudInit[k] = inlined;
      }
    }
  }

  if (toml.initramfs?.format !== undefined) warn("initramfs.format", "is not part of Volant's manifest (Volant detects the compression): left out of manifest.json", "remove it");

  // --- the artifact
  const artifact = meta.artifactPath.split("/").pop()!;
  const url = meta.baseUrl ? `${meta.baseUrl.replace(/\/+$/, "")}/${artifact}` : meta.artifactPath;

  const manifest: VolantManifest = {
    $schema: MANIFEST_SCHEMA_URL,
    schema_version: "1.0",
    name: name ?? "",
    version: toml.version ?? "0.1.0",
    runtime: toml.runtime ?? name ?? "",
    enabled: toml.enabled ?? true,
    ...(toml.labels && Object.keys(toml.labels).length ? { labels: toml.labels } : {}),
    resources: { cpu_cores: toml.resources?.cpu_cores ?? DEFAULT_CPU, memory_mb: toml.resources?.memory_mb ?? DEFAULT_MEMORY_MB },
    workload: {
      type: "http",
      base_url: baseUrl ?? "",
      entrypoint,
      ...(Object.keys(env).length ? { env } : {}),
      ...(w?.workdir ? { workdir: w.workdir } : {}),
    },
    ...(toml.health_check ? { health_check: { endpoint: toml.health_check.endpoint, timeout_ms: toml.health_check.timeout_ms ?? DEFAULT_HEALTH_TIMEOUT_MS } } : {}),
    ...(toml.actions && Object.keys(toml.actions).length ? { actions: toml.actions } : {}),
    ...(meta.kind === "rootfs" ? { rootfs: { url, checksum: `sha256:${meta.sha256}`, format: meta.format ?? "raw" } } : { initramfs: { url, checksum: `sha256:${meta.sha256}` } }),
    ...(network ? { network } : {}),
    ...(cloudInit ? { cloud_init: cloudInit } : {}),
    ...(toml.devices ? { devices: toml.devices } : {}),
  };
  if (toml.enabled === false) warn("enabled", "the plugin is installed disabled: Volant will not start VMs from it until it is enabled");

  // Volant hands the manifest to the guest on the kernel command line; x86 allows 2048 bytes in all.
  if (!problems.length && VolantManifest.safeParse(manifest).success) {
    const { param, total } = estimateKernelCmdline(manifest);
    const key = cloudInit ? "cloud_init" : "";
    const what = `Volant passes the manifest to the guest on the kernel command line (volant.manifest=base64url(gzip(json)), ${param.length} bytes)`;
    const fix = cloudInit ? "make the cloud-init documents smaller, or serve them another way (a meta_data/user_data that fetches the rest)" : "make the manifest smaller (fewer or shorter env, labels, actions)";
    if (total > KERNEL_CMDLINE_MAX) warn(key, `${what}: with Volant's own parameters about ${total} bytes, more than the kernel's limit of ${KERNEL_CMDLINE_MAX} on x86; the guest would not get its manifest`, fix);
    else if (total > KERNEL_CMDLINE_MAX - KERNEL_CMDLINE_MARGIN)
      warn(key, `${what}: with Volant's own parameters about ${total} of the ${KERNEL_CMDLINE_MAX} bytes the kernel allows on x86, leaving ${KERNEL_CMDLINE_MAX - total} for anything else`, fix);
  }

  if (!problems.length) {
    // What Volant itself checks: the JSON Schema and its Go validator. Reaching here means a rule
    // above is missing, so say which key of manifest.toml the value came from.
    const checked = VolantManifest.safeParse(manifest);
    if (!checked.success) for (const i of checked.error.issues) problem(tomlPathOf(i.path as PropertyKey[], toml), `Volant would reject manifest.json: ${i.path.length ? i.path.join(".") + ": " : ""}${i.message}`);
  }
  if (meta.manifestText) {
    placeIssues(problems, meta.manifestText);
    placeIssues(warnings, meta.manifestText);
  }
  return problems.length ? { problems, warnings } : { manifest, problems, warnings };
}

/** manifest.toml + build metadata → manifest.json (docs/architecture.md, "manifest.json"). Throws ManifestError with every problem. */
export function mergeManifest(toml: ManifestToml, meta: BuildMetadata): MergeResult {
  const r = composeManifest(toml, meta);
  if (!r.manifest) throw new ManifestError(r.problems);
  return { manifest: r.manifest, warnings: r.warnings.map((i) => `${i.keyPath ? i.keyPath + ": " : ""}${i.message}`), warningIssues: r.warnings };
}

/**
 * The manifest rules that need no artifact, for `fledge validate`: everything mergeManifest would
 * report, checked against a stand-in artifact.
 */
export function checkManifest(toml: ManifestToml, opts: { file?: string; text?: string; baseUrl?: string; kestrel?: boolean } = {}): { problems: ConfigIssue[]; warnings: ConfigIssue[] } {
  const r = composeManifest(toml, {
    artifactPath: "/fledge-validate/plugin.cpio.gz",
    sha256: "0".repeat(64),
    baseUrl: opts.baseUrl,
    ...(opts.kestrel !== undefined ? { kestrel: opts.kestrel } : {}),
    manifestFile: opts.file,
    manifestText: opts.text,
  });
  return { problems: r.problems, warnings: r.warnings };
}
