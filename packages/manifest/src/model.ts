import { z } from "zod";

export const MANIFEST_SCHEMA_URL = "https://raw.githubusercontent.com/volantvm/volant/main/docs/schemas/plugin-manifest-v1.json";

/**
 * The rules of Volant's Go validator (`internal/pluginspec`: Manifest.Normalize then Validate) that
 * the JSON Schema does not express. Messages follow Volant's own, so a user can search for them.
 * Volant trims every string before it checks it, so "blank" below means empty after trimming.
 */
const blank = (s: string | undefined) => !s || s.trim() === "";

/** url must be http(s)://, file:// or an absolute path; checksum must name its algorithm or be ≥ 32 chars. */
function checkBootMedia(kind: "rootfs" | "initramfs", m: { url: string; checksum?: string }, ctx: z.RefinementCtx) {
  const url = m.url.trim();
  if (url && !/^(https?:\/\/|file:\/\/|\/)/.test(url)) ctx.addIssue({ code: "custom", path: ["url"], message: `${kind} url must be http(s), file://, or absolute path` });
  const sum = m.checksum?.trim();
  if (sum && !sum.includes(":") && sum.length < 32) ctx.addIssue({ code: "custom", path: ["checksum"], message: `${kind} checksum should include algorithm prefix or be a sha256` });
}

const BootFormat = z.enum(["raw", "qcow2"]);

const RootFS = z.strictObject({ url: z.string(), checksum: z.string().optional(), format: BootFormat.optional() }).superRefine((m, ctx) => checkBootMedia("rootfs", m, ctx));

const Initramfs = z.strictObject({ url: z.string(), checksum: z.string().optional() }).superRefine((m, ctx) => checkBootMedia("initramfs", m, ctx));

const Disk = z
  .strictObject({
    name: z.string(),
    source: z.string(),
    checksum: z.string().optional(),
    format: BootFormat.optional(),
    readonly: z.boolean().optional(),
    target: z.string().optional(),
  })
  .superRefine((d, ctx) => {
    if (blank(d.name)) ctx.addIssue({ code: "custom", path: ["name"], message: "disk name required" });
    else if (blank(d.source)) ctx.addIssue({ code: "custom", path: ["source"], message: `disk ${d.name.trim()}: source required` });
  });

const CloudInitDoc = z.strictObject({ inline: z.boolean().optional(), content: z.string().optional(), path: z.string().optional() }).superRefine((d, ctx) => {
  const content = d.content?.trim();
  const path = d.path?.trim();
  if (content && path) ctx.addIssue({ code: "custom", path: [], message: "content and path cannot both be set" });
  else if (content && !d.inline) ctx.addIssue({ code: "custom", path: ["inline"], message: "inline must be true when content provided" });
  else if (path && d.inline) ctx.addIssue({ code: "custom", path: ["inline"], message: "inline must be false when path provided" });
});

const Network = z
  .strictObject({
    mode: z.enum(["vsock", "bridged", "dhcp"]).optional(),
    subnet: z.string().optional(),
    gateway: z.string().optional(),
    auto_assign: z.boolean().optional(),
  })
  .superRefine((n, ctx) => {
    // Volant rejects a network block without a mode (`unsupported mode ""`), although the schema allows it.
    if (!n.mode) ctx.addIssue({ code: "custom", path: ["mode"], message: 'unsupported mode "" (must be vsock, bridged, or dhcp)' });
    if (n.mode === "bridged" && !blank(n.subnet) && blank(n.gateway) && !n.auto_assign) ctx.addIssue({ code: "custom", path: [], message: "bridged mode with subnet requires gateway or auto_assign" });
  });

/** Volant's plugin manifest (schema_version 1.0), as `volar plugins install --manifest` reads it. */
export const VolantManifest = z
  .strictObject({
    $schema: z.string().optional(),
    schema_version: z.string(),
    name: z.string().min(1),
    version: z.string().min(1),
    runtime: z.string().min(1),
    image: z.string().optional(),
    image_digest: z.string().optional(),
    enabled: z.boolean().optional(),
    openapi: z.string().optional(),
    labels: z.record(z.string(), z.string()).optional(),
    resources: z.strictObject({ cpu_cores: z.number().int().min(1), memory_mb: z.number().int().min(1) }),
    workload: z
      .strictObject({
        type: z.literal("http"),
        base_url: z.string(),
        entrypoint: z.array(z.string()).min(1),
        env: z.record(z.string(), z.string()).optional(),
        workdir: z.string().optional(),
      })
      .superRefine((w, ctx) => {
        if (blank(w.base_url)) ctx.addIssue({ code: "custom", path: ["base_url"], message: "workload.base_url required for http workload" });
        else if (!URL.canParse(w.base_url.trim())) ctx.addIssue({ code: "custom", path: ["base_url"], message: `workload.base_url invalid: ${JSON.stringify(w.base_url)} is not a URL` });
        // Volant drops blank entries, then needs a program.
        if (!w.entrypoint.some((a) => a.trim() !== "")) ctx.addIssue({ code: "custom", path: ["entrypoint"], message: "workload.entrypoint required for http workload" });
      }),
    health_check: z.strictObject({ endpoint: z.string(), timeout_ms: z.number().int().min(0) }).optional(),
    actions: z.record(z.string(), z.strictObject({ description: z.string().optional(), method: z.string(), path: z.string(), timeout_ms: z.number().int().min(0).optional() })).optional(),
    rootfs: RootFS.optional(),
    initramfs: Initramfs.optional(),
    disks: z.array(Disk).optional(),
    cloud_init: z
      .strictObject({
        datasource: z.string().optional(),
        seed_mode: z.literal("vfat").optional(),
        user_data: CloudInitDoc.optional(),
        meta_data: CloudInitDoc.optional(),
        network_config: CloudInitDoc.optional(),
      })
      .optional(),
    network: Network.optional(),
    devices: z.strictObject({ pci_passthrough: z.array(z.string()).optional(), allowlist: z.array(z.string()).optional() }).optional(),
  })
  .superRefine((m, ctx) => {
    for (const k of ["name", "version"] as const) if (m[k] && blank(m[k])) ctx.addIssue({ code: "custom", path: [k], message: `${k} required` });
    // Volant falls back to the name for a blank runtime, so a blank runtime fails only with a blank
    // name, and Volant reports the name first.
    for (const [name, a] of Object.entries(m.actions ?? {})) {
      if (blank(name)) continue; // Volant drops actions with a blank name
      if (blank(a.method)) ctx.addIssue({ code: "custom", path: ["actions", name, "method"], message: `action ${name} missing method` });
      else if (blank(a.path)) ctx.addIssue({ code: "custom", path: ["actions", name, "path"], message: `action ${name} missing path` });
    }
    // The schema: exactly one of rootfs and initramfs. Volant itself: at least one url set.
    if (!!m.rootfs === !!m.initramfs) ctx.addIssue({ code: "custom", path: [], message: m.rootfs ? "rootfs and initramfs are both set: give exactly one" : "at least one of rootfs.url or initramfs.url must be set" });
    else if (blank((m.rootfs ?? m.initramfs)!.url)) ctx.addIssue({ code: "custom", path: [m.rootfs ? "rootfs" : "initramfs", "url"], message: "at least one of rootfs.url or initramfs.url must be set" });
  });
export type VolantManifest = z.infer<typeof VolantManifest>;

/** Checks a manifest.json object as Volant would; returns `path: message` lines, empty when Volant accepts it. */
export function validateVolantManifest(value: unknown): string[] {
  const r = VolantManifest.safeParse(value);
  if (r.success) return [];
  return r.error.issues.map((i) => `${i.path.length ? i.path.join(".") + ": " : ""}${i.message}`);
}
