import type { ManifestToml } from "@fledge/config";
import { VolantManifest, MANIFEST_SCHEMA_URL } from "./model.js";

/** What the build knows that manifest.toml does not. */
export interface BuildMetadata {
  /** Absolute path of the artifact written. */
  artifactPath: string;
  /** sha256 of the artifact, hex. */
  sha256: string;
  /** Publish the artifact under this URL prefix instead of its local path. */
  baseUrl?: string;
}

export interface MergeResult {
  manifest: VolantManifest;
  warnings: string[];
}

/** Raised when manifest.toml and the build metadata cannot make a manifest Volant accepts. */
export class ManifestError extends Error {
  override name = "ManifestError";
  readonly code = "FLEDGE_MANIFEST";
  readonly problems: string[];
  constructor(problems: string[]) {
    super(problems.join("\n"));
    this.problems = problems;
  }
}

const KESTREL_PORT = 8080;

/** manifest.toml + build metadata → manifest.json (DESIGN.md §6). */
export function mergeManifest(toml: ManifestToml, meta: BuildMetadata): MergeResult {
  const warnings: string[] = [];
  const problems: string[] = [];
  const name = toml.name;
  if (!name) problems.push("name: manifest.toml needs a name");

  const exposed = toml.network?.expose ?? [];
  if (exposed.length) warnings.push("network.expose is not part of Volant's manifest (it belongs to the VM config): left out");

  let baseUrl = toml.workload?.base_url;
  if (!baseUrl) {
    const tcp = exposed.find((e) => (e.protocol ?? "tcp") === "tcp");
    if (tcp) baseUrl = `http://127.0.0.1:${tcp.port}`;
  }
  const entrypoint = toml.workload ? [...(Array.isArray(toml.workload.entrypoint) ? toml.workload.entrypoint : [toml.workload.entrypoint]), ...(toml.workload.args ?? [])] : [];
  if (!toml.workload) problems.push("workload: manifest.toml needs a [workload] with an entrypoint (the command Volant runs in the guest)");
  else if (!baseUrl) problems.push('workload.base_url: set base_url (e.g. "http://127.0.0.1:8000"), or expose a tcp port under [network] so it can be derived');
  if (baseUrl) {
    const m = /^https?:\/\/[^/:]+:(\d+)/.exec(baseUrl);
    if (m && Number(m[1]) === KESTREL_PORT) warnings.push(`workload.base_url uses port ${KESTREL_PORT}, which kestrel's own API listens on in the guest: choose another port`);
  }

  if (problems.length) throw new ManifestError(problems);

  const file = meta.artifactPath.split("/").pop()!;
  const url = meta.baseUrl ? `${meta.baseUrl.replace(/\/+$/, "")}/${file}` : meta.artifactPath;

  const manifest: VolantManifest = {
    $schema: MANIFEST_SCHEMA_URL,
    schema_version: "1.0",
    name: name!,
    version: toml.version ?? "0.1.0",
    runtime: toml.runtime ?? name!,
    enabled: toml.enabled ?? true,
    ...(toml.labels ? { labels: toml.labels } : {}),
    resources: { cpu_cores: toml.resources?.cpu_cores ?? 1, memory_mb: toml.resources?.memory_mb ?? 512 },
    workload: {
      type: "http",
      base_url: baseUrl!,
      entrypoint,
      ...(toml.env && Object.keys(toml.env).length ? { env: toml.env } : {}),
      ...(toml.workload?.workdir ? { workdir: toml.workload.workdir } : {}),
    },
    ...(toml.health_check ? { health_check: { endpoint: toml.health_check.endpoint, timeout_ms: toml.health_check.timeout_ms ?? 10000 } } : {}),
    ...(toml.actions ? { actions: toml.actions } : {}),
    initramfs: { url, checksum: `sha256:${meta.sha256}` },
    ...(toml.network && (toml.network.mode || toml.network.subnet || toml.network.gateway || toml.network.auto_assign !== undefined)
      ? {
          network: {
            ...(toml.network.mode ? { mode: toml.network.mode } : {}),
            ...(toml.network.subnet ? { subnet: toml.network.subnet } : {}),
            ...(toml.network.gateway ? { gateway: toml.network.gateway } : {}),
            ...(toml.network.auto_assign !== undefined ? { auto_assign: toml.network.auto_assign } : {}),
          },
        }
      : {}),
    ...(toml.cloud_init ? { cloud_init: toml.cloud_init as VolantManifest["cloud_init"] } : {}),
    ...(toml.devices ? { devices: toml.devices } : {}),
  };
  const checked = VolantManifest.safeParse(manifest);
  if (!checked.success) throw new ManifestError(checked.error.issues.map((i) => `${i.path.join(".")}: ${i.message}`));
  return { manifest: checked.data, warnings };
}
