import { gzipSync } from "node:zlib";
import type { VolantManifest } from "./model.js";

/**
 * How Volant hands a plugin's manifest to the guest (volantvm/volant @f289af9,
 * internal/pluginspec/spec.go `Encode`, orchestrator.go, cloudhypervisor/launcher.go): after
 * `Normalize`, Go's `json.Marshal` of its `Manifest` struct, gzipped, base64url without padding,
 * passed on the kernel command line as `volant.manifest=<that>` next to Volant's own parameters.
 * On x86 the whole command line must fit in 2048 bytes (COMMAND_LINE_SIZE, NUL included).
 */
export const KERNEL_CMDLINE_MAX = 2048;

/** Warn when the estimated command line leaves less than this for anything else (a user's kernel_cmdline, a longer VM name…). */
export const KERNEL_CMDLINE_MARGIN = 256;

const trim = (s: string | undefined) => (s ?? "").trim();

/** Go's map encoding: keys sorted bytewise. */
function sorted<T>(m: Record<string, T> | undefined, each: (v: T) => unknown = (v) => v): Record<string, unknown> | undefined {
  if (!m || !Object.keys(m).length) return undefined;
  const out: Record<string, unknown> = {};
  for (const k of Object.keys(m).sort((a, b) => Buffer.compare(Buffer.from(a), Buffer.from(b)))) out[k] = each(m[k]!);
  return out;
}

/** `omitempty`: leave out "", 0, false, empty arrays and maps, undefined. */
function omit(o: Record<string, unknown>, keep: string[] = []): Record<string, unknown> {
  const out: Record<string, unknown> = {};
  for (const [k, v] of Object.entries(o)) {
    const empty = v === undefined || v === "" || v === 0 || v === false || (Array.isArray(v) && !v.length) || (v && typeof v === "object" && !Array.isArray(v) && !Object.keys(v).length);
    if (!empty || keep.includes(k)) out[k] = v ?? (keep.includes(k) ? "" : undefined);
  }
  return out;
}

/** What Volant stores and sends for `m`: its `Normalize`, then the field order and `omitempty` of its Go structs. */
export function volantNormalized(m: VolantManifest): Record<string, unknown> {
  const name = trim(m.name);
  const runtime = trim(m.runtime) || name;
  const doc = (d: { inline?: boolean; content?: string; path?: string } | undefined) => omit({ inline: d?.inline, content: trim(d?.content), path: trim(d?.path) });
  const ci = m.cloud_init;
  const labels = { ...(m.labels ?? {}), ...(name ? { "volant.plugin": name } : {}), ...(runtime ? { "volant.runtime": runtime } : {}) };
  const w = m.workload;
  const env: Record<string, string> = {};
  for (const [k, v] of Object.entries(w.env ?? {})) if (k.trim()) env[k.trim()] = v.trim();
  return omit(
    {
      schema_version: trim(m.schema_version),
      name,
      version: trim(m.version),
      runtime,
      rootfs: omit({ url: trim(m.rootfs?.url), checksum: trim(m.rootfs?.checksum), format: trim(m.rootfs?.format).toLowerCase() || "raw" }, ["url"]),
      initramfs: omit({ url: trim(m.initramfs?.url), checksum: trim(m.initramfs?.checksum) }, ["url"]),
      disks: m.disks?.map((d) =>
        omit({ name: trim(d.name), source: trim(d.source), checksum: trim(d.checksum), format: trim(d.format).toLowerCase(), readonly: !!d.readonly, target: trim(d.target) }, ["name", "source", "readonly"]),
      ),
      image: trim(m.image),
      image_digest: trim(m.image_digest),
      resources: { cpu_cores: m.resources.cpu_cores, memory_mb: m.resources.memory_mb },
      actions: sorted(
        Object.fromEntries(
          Object.entries(m.actions ?? {})
            .filter(([k]) => k.trim())
            .map(([k, a]) => [k.trim(), a]),
        ),
        (a) => ({ description: trim(a.description), method: trim(a.method), path: trim(a.path), timeout_ms: a.timeout_ms ?? 0 }),
      ),
      health_check: { endpoint: m.health_check?.endpoint ?? "", timeout_ms: m.health_check?.timeout_ms ?? 0 },
      workload: omit({ type: trim(w.type), base_url: trim(w.base_url), entrypoint: w.entrypoint.map((a) => a.trim()).filter(Boolean), env: sorted(env), workdir: trim(w.workdir) }, ["type"]),
      cloud_init: ci
        ? {
            ...omit({ datasource: trim(ci.datasource) || "NoCloud", seed_mode: trim(ci.seed_mode).toLowerCase() || "vfat" }),
            user_data: doc(ci.user_data),
            meta_data: doc(ci.meta_data),
            network_config: doc(ci.network_config),
          }
        : undefined,
      network: m.network ? omit({ mode: trim(m.network.mode).toLowerCase(), subnet: trim(m.network.subnet), gateway: trim(m.network.gateway), auto_assign: m.network.auto_assign }, ["mode"]) : undefined,
      devices: m.devices ? omit({ pci_passthrough: m.devices.pci_passthrough, allowlist: m.devices.allowlist }) : undefined,
      enabled: m.enabled ?? false,
      openapi: trim(m.openapi),
      labels: sorted(labels, (v) => v.trim()),
    },
    ["schema_version", "name", "version", "runtime", "rootfs", "initramfs", "resources", "health_check", "workload", "enabled"],
  );
}

/** Go's `json.Marshal`: compact, with <, >, &, U+2028 and U+2029 escaped. */
export function goJson(value: unknown): string {
  return JSON.stringify(value).replace(/[<>&\u2028\u2029]/g, (c) => `\\u${c.charCodeAt(0).toString(16).padStart(4, "0")}`);
}

export interface CmdlineEstimate {
  /** `volant.manifest=<base64url(gzip(json))>`. */
  param: string;
  /** The whole command line Volant would build for a VM named like the plugin (IPv4 addresses at their longest). */
  total: number;
}

/**
 * The kernel command line Volant builds for a VM of this plugin, estimated: its base line
 * (`console=ttyS0 reboot=k panic=1 … ip=…`), `volant.runtime`, `volant.plugin`, `volant.api_host`,
 * `volant.api_port` and `volant.manifest`. gzip here is zlib's and Go's differs by a few bytes.
 */
export function estimateKernelCmdline(m: VolantManifest): CmdlineEstimate {
  const json = goJson(volantNormalized(m));
  const param = `volant.manifest=${gzipSync(json, { level: 6 }).toString("base64url")}`;
  const ip = "255.255.255.255";
  const name = trim(m.name);
  const base = `console=ttyS0 reboot=k panic=1 quiet loglevel=1 i8042.noaux i8042.nokbd pci=lastbus=0 ip=${ip}::${ip}:${ip}:${name}:eth0:off`;
  const args = [`volant.runtime=${trim(m.runtime) || name}`, `volant.api_host=${ip}`, "volant.api_port=65535", `volant.plugin=${name}`, param];
  return { param, total: [base, ...args].join(" ").length + 1 };
}
