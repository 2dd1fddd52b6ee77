import { z } from "zod";

const CloudInitDoc = z.strictObject({ inline: z.boolean().optional(), content: z.string().optional(), path: z.string().optional() });

/** Volant's plugin manifest (schema_version 1.0), as `volar plugins install --manifest` reads it. */
export const VolantManifest = z.strictObject({
  $schema: z.string().optional(),
  schema_version: z.string(),
  name: z.string().min(1),
  version: z.string().min(1),
  runtime: z.string().min(1),
  enabled: z.boolean().optional(),
  labels: z.record(z.string(), z.string()).optional(),
  resources: z.strictObject({ cpu_cores: z.number().int().min(1), memory_mb: z.number().int().min(1) }),
  workload: z.strictObject({
    type: z.literal("http"),
    base_url: z.string(),
    entrypoint: z.array(z.string()).min(1),
    env: z.record(z.string(), z.string()).optional(),
    workdir: z.string().optional(),
  }),
  health_check: z.strictObject({ endpoint: z.string(), timeout_ms: z.number().int().min(0) }).optional(),
  actions: z
    .record(
      z.string(),
      z.strictObject({ description: z.string().optional(), method: z.string(), path: z.string(), timeout_ms: z.number().int().min(0).optional() }),
    )
    .optional(),
  initramfs: z.strictObject({ url: z.string(), checksum: z.string().optional() }),
  cloud_init: z
    .strictObject({
      datasource: z.string().optional(),
      seed_mode: z.literal("vfat").optional(),
      user_data: CloudInitDoc.optional(),
      meta_data: CloudInitDoc.optional(),
      network_config: CloudInitDoc.optional(),
    })
    .optional(),
  network: z
    .strictObject({
      mode: z.enum(["vsock", "bridged", "dhcp"]).optional(),
      subnet: z.string().optional(),
      gateway: z.string().optional(),
      auto_assign: z.boolean().optional(),
    })
    .optional(),
  devices: z.strictObject({ pci_passthrough: z.array(z.string()).optional(), allowlist: z.array(z.string()).optional() }).optional(),
});
export type VolantManifest = z.infer<typeof VolantManifest>;

export const MANIFEST_SCHEMA_URL = "https://raw.githubusercontent.com/volantvm/volant/main/docs/schemas/plugin-manifest-v1.json";
