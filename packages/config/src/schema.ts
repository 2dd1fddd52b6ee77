import { z } from "zod";

/** The default busybox: 1.35.0, x86_64, musl, static, from busybox.net, pinned by sha256. */
export const DEFAULT_BUSYBOX_URL = "https://busybox.net/downloads/binaries/1.35.0-x86_64-linux-musl/busybox";
export const DEFAULT_BUSYBOX_SHA256 = "6e123e7f3202a8c1e9b1f94d8941580a25135382b99e8d3e34fb858bba311348";

const nonEmpty = z.string().min(1, "must not be empty");
const sha256 = z.string().regex(/^(sha256:)?[0-9a-fA-F]{64}$/, 'must be 64 hex digits, optionally prefixed "sha256:"');

/** `[agent]` as written: where kestrel, Volant's guest agent, comes from (default init mode only). */
export const AgentInput = z
  .strictObject({
    source_strategy: z
      .enum(["release", "local", "http"])
      .describe('Where kestrel comes from: "release" (GitHub release of volantvm/volant, needs `version`), "local" (a host file, needs `path`) or "http" (a URL, needs `url`).'),
    version: nonEmpty.optional().describe('Release tag such as "v0.1.0", or "latest" (source_strategy = "release").'),
    path: nonEmpty.optional().describe('Host file, relative to fledge.toml (source_strategy = "local").'),
    url: nonEmpty.optional().describe('Download URL (source_strategy = "http").'),
    checksum: z
      .string()
      .regex(/^(sha256:)?[0-9a-fA-F]{64}$/, 'must be "sha256:<64 hex digits>" or 64 hex digits')
      .optional()
      .describe('sha256 of the download: "sha256:<hex>" or bare hex (source_strategy = "http").'),
  })
  .describe("The kestrel agent. Only in the default init mode; omitted, it is the latest release.");

/** `[init]` as written: which init mode the image boots with. */
export const InitInput = z
  .strictObject({
    path: nonEmpty
      .optional()
      .describe(
        "Custom init. A host file (relative to fledge.toml, or absolute) is copied to /init and is PID 1; an absolute path inside the image (from a mapping or overlay) is exec'd by fledge's init after it mounts /proc /sys /dev /tmp /run.",
      ),
    none: z.boolean().optional().describe("No init from fledge: a mapping must put your PID 1 at /init, and it mounts the filesystems itself."),
  })
  .describe("Init mode. Omitted or empty: fledge's init starts kestrel. `path`: your init. `none = true`: your binary at /init.");

/** `[source]` as written. */
export const SourceInput = z
  .strictObject({
    image: nonEmpty.optional().describe("OCI image reference for the root filesystem (oci_rootfs, or an overlay; needs a plugin)."),
    dockerfile: nonEmpty.optional().describe("Dockerfile to build the root filesystem from (oci_rootfs; needs a plugin)."),
    context: nonEmpty.optional().describe("Build context directory for `dockerfile`."),
    target: nonEmpty.optional().describe("Build stage of `dockerfile` to use."),
    build_args: z.record(z.string(), z.string()).optional().describe("Build arguments for `dockerfile`."),
    busybox_url: nonEmpty.optional().describe("busybox binary: http(s)://, file:// or a host path. Default: busybox 1.35.0 x86_64 musl from busybox.net."),
    busybox_sha256: sha256.optional().describe("sha256 of the busybox binary. Default: pinned for the default URL; none for other URLs."),
    busybox: z.boolean().optional().describe("Set false to leave busybox out (custom and none init modes only)."),
  })
  .describe("Where the image's contents come from.");

/** `[filesystem]` as written (oci_rootfs). */
export const FilesystemInput = z
  .strictObject({
    type: z.enum(["squashfs", "ext4", "xfs", "btrfs"]).optional().describe("Root filesystem type (oci_rootfs)."),
    size_buffer_mb: z.number().int().min(0, "must be 0 or more").optional().describe("Free space added to the image, MiB (ext4/xfs/btrfs)."),
    preallocate: z.boolean().optional().describe("Allocate the whole image file up front."),
    compression_level: z.number().int().min(0, "must be between 0 and 22").max(22, "must be between 0 and 22").optional().describe("squashfs compression level, 0–22."),
    overlay_size: nonEmpty.optional().describe('Size of the writable overlay on squashfs, e.g. "1G".'),
  })
  .describe("Root filesystem image options (oci_rootfs strategy; needs a plugin).");

/** `[output]`: fledge's own additions. */
export const OutputInput = z
  .strictObject({
    compression: nonEmpty.optional().describe('Compressor: "gzip" (default), "zstd", "xz", "lz4" (legacy frame) or "none"; plugins add more.'),
    level: z.number().int().optional().describe("Compression level."),
    arch: z.enum(["x86_64", "aarch64"]).optional().describe("Target architecture (default x86_64)."),
  })
  .describe("Artifact options (fledge addition).");

/** `[fetch]`: fledge's own additions. */
export const FetchInput = z
  .strictObject({
    mirrors: z.record(z.string(), z.string()).optional().describe('URL prefix rewrites for downloads, e.g. { "https://busybox.net/" = "http://mirror.local/busybox/" }.'),
  })
  .describe("Download options (fledge addition).");

/** `[run]`: how `fledge run`, `fledge dev` and boot checks boot the plugin (fledge addition). */
export const RunInput = z
  .strictObject({
    kernel: nonEmpty.optional().describe("Kernel to boot (bzImage for x86_64, Image for aarch64), relative to fledge.toml. Default: Volant's release kernel, else the host's /boot/vmlinuz-*."),
  })
  .describe("Booting the plugin in qemu (fledge run, fledge dev, boot checks).");

/** `[check]`: a boot check after every build (@fledge/plugin-bootcheck); the table being present turns it on. */
export const CheckInput = z
  .strictObject({
    boot_budget_ms: z.number().int().positive().optional().describe("Fail the build when kernel start → ready takes longer (ms)."),
    size_budget_mb: z.number().positive().optional().describe("Fail the build when the artifact is larger (MiB)."),
    marker: nonEmpty.optional().describe("A console line that means ready, for workloads without HTTP (default: the manifest's health check)."),
    timeout_ms: z.number().int().positive().optional().describe("Give up waiting for ready after this long (ms, default 120000)."),
  })
  .describe("Boot the artifact headless before keeping it, record boot times and peak memory, fail past the budgets (@fledge/plugin-bootcheck).");

/** One `[[overlay]]` table: `kind` picks the plugin; the rest of the table is that plugin's request. */
export const OverlayInput = z
  .looseObject({
    kind: nonEmpty.describe('The kind of source: "image" (@fledge/plugin-oci), "tarball" (@fledge/plugin-tarball), "dockerfile" (@fledge/plugin-dockerfile), or a kind a plugin provides.'),
  })
  .describe("A rootfs source. The keys besides `kind` are the providing plugin's, which checks them.");

/** One entry of `plugins`: a module, or a module with options. */
export const PluginInput = z.union([
  nonEmpty.describe("A module whose default export is a plugin: a package name or a path relative to fledge.toml."),
  z
    .strictObject({
      use: nonEmpty.describe("The module: a package name or a path relative to fledge.toml."),
      options: z.record(z.string(), z.unknown()).optional().describe("Options for the plugin: passed to its class constructor or factory, and checked by the plugin."),
    })
    .describe("A plugin with options."),
]);

/** fledge.toml v1 as the user writes it. Unknown keys are errors. */
export const FledgeTomlInput = z
  .strictObject({
    $schema: z.string().optional().describe("JSON Schema of this file, for editors."),
    version: z.literal("1").describe('fledge.toml format version: "1".'),
    strategy: nonEmpty.default("initramfs").describe('What to build: "initramfs" (built in), "oci_rootfs" (@fledge/plugin-rootfs), or any strategy a plugin provides. Checked once the plugins are loaded.'),
    agent: AgentInput.optional(),
    init: InitInput.optional(),
    source: SourceInput.optional(),
    filesystem: FilesystemInput.optional(),
    mappings: z.record(z.string(), z.string()).optional().describe('Files to put in the image: "host path" = "/absolute/path/in/image". Host paths are relative to fledge.toml.'),
    output: OutputInput.optional(),
    fetch: FetchInput.optional(),
    run: RunInput.optional(),
    check: CheckInput.optional(),
    overlay: z.array(OverlayInput).optional().describe("Rootfs sources overlaid into the image in order, after [source] image and dockerfile: each table is handed to the plugin that provides its `kind`."),
    plugins: z.array(PluginInput).optional().describe('Plugins to load, in order: a module (package name, or a path relative to fledge.toml), or { use = "module", options = { … } }.'),
  })
  .describe("fledge.toml v1: how to build a Volant plugin's boot artifact.");
export type FledgeTomlInput = z.input<typeof FledgeTomlInput>;
