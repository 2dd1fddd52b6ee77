import { z } from "zod";

/** The default busybox: 1.35.0, x86_64, musl, static, from busybox.net, pinned by sha256. */
export const DEFAULT_BUSYBOX_URL = "https://busybox.net/downloads/binaries/1.35.0-x86_64-linux-musl/busybox";
export const DEFAULT_BUSYBOX_SHA256 = "6e123e7f3202a8c1e9b1f94d8941580a25135382b99e8d3e34fb858bba311348";

const nonEmpty = z.string().min(1, "must not be empty");

/** `[agent]` as written. */
export const AgentInput = z.strictObject({
  source_strategy: z.enum(["release", "local", "http"]).describe("Where kestrel comes from: a GitHub release, a local file, or a URL."),
  version: nonEmpty.optional().describe('Release tag, or "latest" (release).'),
  path: nonEmpty.optional().describe("Host file, relative to fledge.toml (local)."),
  url: nonEmpty.optional().describe("Download URL (http)."),
  checksum: nonEmpty.optional().describe('sha256 of the download: "sha256:<hex>" or bare hex (http).'),
});

/** `[init]` as written. */
export const InitInput = z.strictObject({
  path: nonEmpty.optional().describe("A host file that becomes /init, or an image path the C init execs."),
  none: z.boolean().optional().describe("No init from fledge: a mapping must put your PID 1 at /init."),
});

/** `[source]` as written. */
export const SourceInput = z.strictObject({
  image: nonEmpty.optional().describe("OCI image reference (oci_rootfs, needs a plugin)."),
  dockerfile: nonEmpty.optional().describe("Dockerfile to build (oci_rootfs, needs a plugin)."),
  context: nonEmpty.optional(),
  target: nonEmpty.optional(),
  build_args: z.record(z.string(), z.string()).optional(),
  busybox_url: nonEmpty.optional().describe("busybox binary: http(s)://, file:// or a path."),
  busybox_sha256: z
    .string()
    .regex(/^(sha256:)?[0-9a-fA-F]{64}$/, 'must be 64 hex digits, optionally prefixed "sha256:"')
    .optional(),
  busybox: z.boolean().optional().describe("Set false to leave busybox out (custom and none modes)."),
});

/** `[filesystem]` as written (oci_rootfs). */
export const FilesystemInput = z.strictObject({
  type: z.enum(["ext4", "xfs", "btrfs"]).optional(),
  size_buffer_mb: z.number().int().nonnegative().optional(),
  preallocate: z.boolean().optional(),
  compression_level: z.number().int().optional(),
  overlay_size: z.string().optional(),
});

/** `[output]`: fledge's own additions. */
export const OutputInput = z.strictObject({
  compression: nonEmpty.optional().describe('Compressor: "gzip" (default) or "none"; plugins add more.'),
  level: z.number().int().optional().describe("Compression level."),
  arch: z.enum(["x86_64", "aarch64"]).optional().describe("Target architecture (default x86_64)."),
});

/** `[fetch]`: fledge's own additions. */
export const FetchInput = z.strictObject({
  mirrors: z.record(z.string(), z.string()).optional().describe('URL prefix rewrites: { "https://busybox.net/" = "http://mirror/" }.'),
});

/** fledge.toml v1 as the user writes it. Unknown keys are errors. */
export const FledgeTomlInput = z.strictObject({
  $schema: z.string().optional(),
  version: z.literal("1", { error: 'must be "1" (the only fledge.toml version)' }),
  strategy: z.enum(["initramfs", "oci_rootfs"]).default("initramfs"),
  agent: AgentInput.optional(),
  init: InitInput.optional(),
  source: SourceInput.optional(),
  filesystem: FilesystemInput.optional(),
  mappings: z.record(z.string(), z.string()).optional(),
  output: OutputInput.optional(),
  fetch: FetchInput.optional(),
  plugins: z.array(nonEmpty).optional().describe("Modules to load as fledge plugins."),
});
export type FledgeTomlInput = z.input<typeof FledgeTomlInput>;
