import type { FledgeConfig } from "@fledge/config";

/**
 * The artifact's file name when the user names none (no `-o`): what the strategy writes, so a
 * root disk is not called `.cpio.gz`. `initramfs` → `plugin.cpio.gz`; `oci_rootfs` →
 * `rootfs.img` (a raw ext4 disk), `rootfs.squashfs` with `[filesystem] type = "squashfs"`; any
 * other strategy → `plugin.img` (pass `-o` for another name).
 */
export function defaultArtifactName(config: Pick<FledgeConfig, "strategy" | "filesystem">): string {
  if (config.strategy === "initramfs") return "plugin.cpio.gz";
  if (config.strategy === "oci_rootfs") return config.filesystem?.type === "squashfs" ? "rootfs.squashfs" : "rootfs.img";
  return "plugin.img";
}
