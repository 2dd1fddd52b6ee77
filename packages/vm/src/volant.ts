// biome-ignore-all lint/suspicious/noExplicitAny: manifest.json is handled as untyped JSON, as Go's decoder sees it; every field read goes through trim/str/optStr/bool, which take unknown
import { gunzipSync, gzipSync } from "node:zlib";

/**
 * What Volant (volantvm/volant, internal/pluginspec and internal/server/orchestrator) puts on a
 * plugin VM's kernel command line, rebuilt from its behaviour:
 *
 *   console=ttyS0 reboot=k panic=1 quiet loglevel=1 i8042.noaux i8042.nokbd pci=lastbus=0
 *   ip=<vm ip>::<gateway>:<netmask>:<hostname>:eth0:off [extra]
 *   volant.manifest=<manifest> volant.plugin=<name> volant.runtime=<runtime>
 *   [volant.rootfs_device=vda volant.rootfs_fstype=ext4]   (when the manifest has rootfs.url)
 *
 * The manifest is Go's json.Marshal of the normalised pluginspec.Manifest, gzip-compressed,
 * then base64url without padding. Volant also passes volant.api_host/api_port (its daemon's
 * API); there is no daemon under `fledge run`, and kestrel needs neither when the manifest is on
 * the command line, so they are left out.
 */

/** A manifest as fledge writes it (manifest.json); fields Volant does not know are dropped. */
export type ManifestJson = Record<string, any>;

// Go's encoding/json string escaping: JSON.stringify's, plus <, >, & and U+2028/9 as \u escapes.
function str(s: unknown): string {
  return JSON.stringify(typeof s === "string" ? s : "").replace(/[<>&\u2028\u2029]/g, (c) => "\\u" + c.charCodeAt(0).toString(16).padStart(4, "0"));
}
const int = (n: unknown) => String(typeof n === "number" && Number.isFinite(n) ? Math.trunc(n) : 0);
const bool = (b: unknown) => (b === true ? "true" : "false");
const trim = (s: unknown) => (typeof s === "string" ? s.trim() : "");

type Field = [name: string, value: string | undefined];
const obj = (fields: Field[]) =>
  "{" +
  fields
    .filter(([, v]) => v !== undefined)
    .map(([k, v]) => `${str(k)}:${v}`)
    .join(",") +
  "}";
/** `omitempty` for strings. */
const optStr = (s: string) => (s === "" ? undefined : str(s));
function strMap(m: unknown, omitEmpty: boolean): string | undefined {
  const entries = m && typeof m === "object" ? Object.entries(m as Record<string, unknown>) : [];
  if (!entries.length) return omitEmpty ? undefined : "null";
  // Go sorts map keys bytewise
  entries.sort(([a], [b]) => Buffer.compare(Buffer.from(a), Buffer.from(b)));
  return "{" + entries.map(([k, v]) => `${str(k)}:${str(typeof v === "string" ? v : String(v))}`).join(",") + "}";
}

/** pluginspec.Manifest.Normalize(), on a copy. */
export function normalizeManifest(input: ManifestJson): ManifestJson {
  const m = structuredClone(input) as ManifestJson;
  for (const k of ["schema_version", "name", "version", "runtime", "image", "image_digest", "openapi"]) m[k] = trim(m[k]);
  if (!m.runtime) m.runtime = m.name;
  m.rootfs = { url: trim(m.rootfs?.url), checksum: trim(m.rootfs?.checksum), format: trim(m.rootfs?.format).toLowerCase() || "raw" };
  m.initramfs = { url: trim(m.initramfs?.url), checksum: trim(m.initramfs?.checksum) };
  if (m.cloud_init) {
    const c = m.cloud_init;
    c.datasource = trim(c.datasource) || "NoCloud";
    c.seed_mode = trim(c.seed_mode).toLowerCase() || "vfat";
    for (const d of ["user_data", "meta_data", "network_config"]) if (c[d]) c[d] = { ...c[d], content: trim(c[d].content), path: trim(c[d].path) };
  }
  if (m.network) m.network = { ...m.network, mode: trim(m.network.mode).toLowerCase(), subnet: trim(m.network.subnet), gateway: trim(m.network.gateway) };
  m.workload ??= {};
  const w = m.workload;
  w.type = trim(w.type);
  w.base_url = trim(w.base_url);
  w.workdir = trim(w.workdir);
  if (Array.isArray(w.entrypoint)) w.entrypoint = w.entrypoint.map(trim).filter(Boolean);
  if (w.env && typeof w.env === "object") {
    const env: Record<string, string> = {};
    for (const [k, v] of Object.entries(w.env)) if (k.trim()) env[k.trim()] = trim(v);
    w.env = env;
  }
  if (m.actions && typeof m.actions === "object") {
    const actions: Record<string, any> = {};
    for (const [k, a] of Object.entries<any>(m.actions)) if (k.trim()) actions[k.trim()] = { ...a, description: trim(a?.description), method: trim(a?.method), path: trim(a?.path) };
    m.actions = Object.keys(actions).length ? actions : undefined;
  }
  const labels: Record<string, string> = {};
  for (const [k, v] of Object.entries<unknown>(m.labels ?? {})) labels[k] = trim(v);
  if (m.name) labels["volant.plugin"] = m.name;
  if (m.runtime) labels["volant.runtime"] = m.runtime;
  m.labels = Object.keys(labels).length ? labels : undefined;
  return m;
}

/** Go's json.Marshal of a (normalised) pluginspec.Manifest: its field order, omitempty rules and escaping. */
export function marshalManifest(m: ManifestJson): string {
  const doc = (d: any) =>
    obj([
      ["inline", d?.inline ? "true" : undefined],
      ["content", optStr(trim(d?.content))],
      ["path", optStr(trim(d?.path))],
    ]);
  const disks = Array.isArray(m.disks) && m.disks.length ? m.disks : undefined;
  const actions = m.actions && Object.keys(m.actions).length ? m.actions : undefined;
  return obj([
    ["schema_version", str(m.schema_version)],
    ["name", str(m.name)],
    ["version", str(m.version)],
    ["runtime", str(m.runtime)],
    [
      "rootfs",
      obj([
        ["url", str(m.rootfs?.url)],
        ["checksum", optStr(trim(m.rootfs?.checksum))],
        ["format", optStr(trim(m.rootfs?.format))],
      ]),
    ],
    [
      "initramfs",
      obj([
        ["url", str(m.initramfs?.url)],
        ["checksum", optStr(trim(m.initramfs?.checksum))],
      ]),
    ],
    [
      "disks",
      disks &&
        "[" +
          disks
            .map((d: any) =>
              obj([
                ["name", str(d.name)],
                ["source", str(d.source)],
                ["checksum", optStr(trim(d.checksum))],
                ["format", optStr(trim(d.format))],
                ["readonly", bool(d.readonly)],
                ["target", optStr(trim(d.target))],
              ]),
            )
            .join(",") +
          "]",
    ],
    ["image", optStr(trim(m.image))],
    ["image_digest", optStr(trim(m.image_digest))],
    [
      "resources",
      obj([
        ["cpu_cores", int(m.resources?.cpu_cores)],
        ["memory_mb", int(m.resources?.memory_mb)],
      ]),
    ],
    [
      "actions",
      actions &&
        "{" +
          Object.keys(actions)
            .sort((a, b) => Buffer.compare(Buffer.from(a), Buffer.from(b)))
            .map((k) => {
              const a = actions[k];
              return `${str(k)}:${obj([
                ["description", str(a.description)],
                ["method", str(a.method)],
                ["path", str(a.path)],
                ["timeout_ms", int(a.timeout_ms)],
              ])}`;
            })
            .join(",") +
          "}",
    ],
    [
      "health_check",
      obj([
        ["endpoint", str(m.health_check?.endpoint)],
        ["timeout_ms", int(m.health_check?.timeout_ms)],
      ]),
    ],
    [
      "workload",
      obj([
        ["type", str(m.workload?.type)],
        ["base_url", optStr(trim(m.workload?.base_url))],
        ["entrypoint", Array.isArray(m.workload?.entrypoint) && m.workload.entrypoint.length ? "[" + m.workload.entrypoint.map(str).join(",") + "]" : undefined],
        ["env", strMap(m.workload?.env, true)],
        ["workdir", optStr(trim(m.workload?.workdir))],
      ]),
    ],
    [
      "cloud_init",
      m.cloud_init
        ? obj([
            ["datasource", optStr(trim(m.cloud_init.datasource))],
            ["seed_mode", optStr(trim(m.cloud_init.seed_mode))],
            // Go's omitempty never omits a struct: these three are always there
            ["user_data", doc(m.cloud_init.user_data)],
            ["meta_data", doc(m.cloud_init.meta_data)],
            ["network_config", doc(m.cloud_init.network_config)],
          ])
        : undefined,
    ],
    [
      "network",
      m.network
        ? obj([
            ["mode", str(m.network.mode)],
            ["subnet", optStr(trim(m.network.subnet))],
            ["gateway", optStr(trim(m.network.gateway))],
            ["auto_assign", m.network.auto_assign ? "true" : undefined],
          ])
        : undefined,
    ],
    [
      "devices",
      m.devices
        ? obj([
            ["pci_passthrough", Array.isArray(m.devices.pci_passthrough) && m.devices.pci_passthrough.length ? "[" + m.devices.pci_passthrough.map(str).join(",") + "]" : undefined],
            ["allowlist", Array.isArray(m.devices.allowlist) && m.devices.allowlist.length ? "[" + m.devices.allowlist.map(str).join(",") + "]" : undefined],
          ])
        : undefined,
    ],
    ["enabled", bool(m.enabled)],
    ["openapi", optStr(trim(m.openapi))],
    ["labels", strMap(m.labels, true)],
  ]);
}

/**
 * The `volant.manifest=` value, encoded as Volant's pluginspec.Encode does: JSON of the
 * normalised manifest, gzip (no name, mtime 0), base64url without padding. The gzip stream is
 * zlib's, not Go's compress/flate, so the bytes can differ from Volant's while decoding to the
 * same JSON (kestrel's pluginspec.Decode reads either).
 */
export function encodeManifest(manifest: ManifestJson): string {
  const json = marshalManifest(normalizeManifest(manifest));
  const gz = gzipSync(Buffer.from(json, "utf8"), { level: 6 });
  gz[9] = 255; // OS "unknown", as Go's gzip writer sets it
  return gz.toString("base64url");
}

/** Decodes a `volant.manifest=` value (pluginspec.Decode): base64url → gunzip → JSON. */
export function decodeManifest(value: string): ManifestJson {
  return JSON.parse(gunzipSync(Buffer.from(value.trim(), "base64url")).toString("utf8"));
}

/** The guest network `fledge run` gives a VM: qemu's user-mode network. */
export const USER_NET = { guest: "10.0.2.15", gateway: "10.0.2.2", netmask: "255.255.255.0" } as const;

/** Volant's sanitizeHostname: lowercase, [a-z0-9-] only, "vm" when nothing is left. */
export function sanitizeHostname(name: string): string {
  const s = [...name.toLowerCase()].filter((c) => /[a-z0-9-]/.test(c)).join("");
  return s || "vm";
}

export interface CmdlineOptions {
  manifest: ManifestJson;
  /** The guest's serial console device: ttyS0 (x86_64) or ttyAMA0 (aarch64 virt). */
  console?: string;
  /** VM name for the hostname (default: the manifest's name). */
  name?: string;
  /** Extra arguments, appended after Volant's base line (Volant's kernel_cmdline). */
  extra?: string;
}

/** The kernel command line Volant would give this plugin's VM, with qemu's user network as its network. */
export function volantCmdline(opts: CmdlineOptions): string {
  const m = normalizeManifest(opts.manifest);
  const hostname = sanitizeHostname(opts.name ?? m.name ?? "");
  const mode = m.network?.mode || "bridged";
  const ip = mode === "bridged" ? USER_NET.guest : "";
  let base = `console=${opts.console ?? "ttyS0"} reboot=k panic=1 quiet loglevel=1 i8042.noaux i8042.nokbd pci=lastbus=0 ip=${ip}::${USER_NET.gateway}:${USER_NET.netmask}:${hostname}:eth0:off`;
  if (opts.extra?.trim()) base += " " + opts.extra.trim();
  const args: Record<string, string> = {
    "volant.runtime": m.runtime,
    "volant.plugin": m.name,
    "volant.manifest": encodeManifest(opts.manifest),
  };
  if (m.rootfs?.url) {
    args["volant.rootfs_device"] = "vda";
    args["volant.rootfs_fstype"] = "ext4";
  }
  // Volant appends its arguments in Go map order (random); sorted here so the line is stable.
  const tail = Object.entries(args)
    .filter(([, v]) => v)
    .map(([k, v]) => `${k}=${v}`)
    .sort();
  return [base, ...tail].join(" ");
}
