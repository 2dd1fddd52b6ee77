import { basename, dirname, resolve } from "node:path";
import { z } from "zod";
import { ConfigError } from "./errors.js";
import { parseToml, readToml } from "./toml.js";
import { zodIssues } from "./zod-issues.js";
import { shapeKeysAt } from "./shape.js";

const nonEmpty = z.string().min(1, "must not be empty");
const port = z.number().int().min(1).max(65535);

const CloudInitDoc = z.strictObject({
  inline: z.boolean().optional(),
  content: z.string().optional(),
  path: z.string().optional(),
});

/** manifest.toml v1 as the user writes it. */
export const ManifestTomlInput = z.strictObject({
  $schema: z.string().optional(),
  schema_version: z.string().optional(),
  name: nonEmpty.regex(/^[a-z0-9][a-z0-9._-]*$/i, "use letters, digits, '.', '_' and '-'").optional(),
  version: nonEmpty.optional(),
  runtime: nonEmpty.optional(),
  enabled: z.boolean().optional(),
  labels: z.record(z.string(), z.string()).optional(),
  resources: z
    .strictObject({
      cpu_cores: z.number().int().positive(),
      memory_mb: z.number().int().positive(),
    })
    .optional(),
  workload: z
    .strictObject({
      type: z.literal("http").optional(),
      entrypoint: z.union([nonEmpty, z.array(nonEmpty).min(1)]),
      args: z.array(z.string()).optional(),
      base_url: nonEmpty.optional(),
      workdir: nonEmpty.optional(),
    })
    .optional(),
  env: z.record(z.string(), z.string()).optional(),
  network: z
    .strictObject({
      mode: z.enum(["vsock", "bridged", "dhcp"]).optional(),
      subnet: z.string().optional(),
      gateway: z.string().optional(),
      auto_assign: z.boolean().optional(),
      expose: z
        .array(z.strictObject({ name: z.string().optional(), port, protocol: z.enum(["tcp", "udp"]).optional(), host_port: port.optional() }))
        .optional(),
    })
    .optional(),
  health_check: z.strictObject({ endpoint: nonEmpty, timeout_ms: z.number().int().positive().optional() }).optional(),
  actions: z
    .record(
      z.string(),
      z.strictObject({
        description: z.string().optional(),
        method: nonEmpty,
        path: nonEmpty,
        timeout_ms: z.number().int().positive().optional(),
      }),
    )
    .optional(),
  cloud_init: z
    .strictObject({
      datasource: z.string().optional(),
      seed_mode: z.string().optional(),
      user_data: CloudInitDoc.optional(),
      meta_data: CloudInitDoc.optional(),
      network_config: CloudInitDoc.optional(),
    })
    .optional(),
  devices: z
    .strictObject({
      pci_passthrough: z.array(z.string()).optional(),
      allowlist: z.array(z.string()).optional(),
    })
    .optional(),
});
export type ManifestToml = z.output<typeof ManifestTomlInput>;

export interface ManifestConfig {
  /** The manifest.toml read, or undefined when there was none (defaults were used). */
  file?: string;
  data: ManifestToml;
  /** Notes for the user, e.g. which defaults were applied. */
  notes: string[];
}

/** Validates manifest.toml data. */
export function normalizeManifestToml(data: unknown, file: string): ManifestToml {
  const parsed = ManifestTomlInput.safeParse(data);
  if (!parsed.success) throw new ConfigError(zodIssues(parsed.error, file, data, (p) => shapeKeysAt(ManifestTomlInput, p)));
  return parsed.data;
}

export function parseManifestToml(text: string, file: string): ManifestToml {
  return normalizeManifestToml(parseToml(text, file), file);
}

/**
 * Loads manifest.toml. When `required` is false and the file does not exist, returns defaults:
 * name and runtime from the directory name, version 0.1.0, with a note saying so.
 */
export async function loadManifestToml(file: string, opts: { required?: boolean } = {}): Promise<ManifestConfig> {
  const abs = resolve(file);
  try {
    const { data } = await readToml(abs);
    return { file: abs, data: normalizeManifestToml(data, abs), notes: [] };
  } catch (err) {
    if (!opts.required && err instanceof ConfigError && err.issues[0]?.message === "file not found") {
      const name = basename(dirname(abs)).toLowerCase().replace(/[^a-z0-9._-]+/g, "-").replace(/^[^a-z0-9]+/, "") || "plugin";
      return {
        data: { name, runtime: name, version: "0.1.0" },
        notes: [`no manifest.toml at ${abs}: using name "${name}", runtime "${name}", version 0.1.0`],
      };
    }
    throw err;
  }
}
