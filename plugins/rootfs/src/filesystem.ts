import { FledgeError } from "@fledge/core";

/** `[filesystem]` as fledge.toml gives it (validated by @fledge/config: types and ranges). */
export interface FilesystemInput {
  type?: string;
  size_buffer_mb?: number;
  preallocate?: boolean;
  compression_level?: number;
  overlay_size?: string;
}

export type RootfsType = "ext4" | "squashfs";

/** A finding about `[filesystem]`, placed at a key of fledge.toml. */
export interface FilesystemIssue {
  keyPath: string;
  message: string;
  hint?: string;
}

export interface FilesystemPlan {
  type: RootfsType;
  /** Free space in bytes for a given amount of file data. */
  freeBytes: (dataBytes: number) => number;
  /** How the free space was chosen, for the log. */
  freeRule: string;
  preallocate: boolean;
  /** squashfs: zstd level 1–22. */
  compressionLevel: number;
  overlaySize?: string;
  /** Things the user should know (not errors). */
  warnings: FilesystemIssue[];
}

const MiB = 1 << 20;
/** The Go fledge's rule when size_buffer_mb is 0 or missing: 25% of the content, at least 64 MiB, at most 1 GiB. */
export const AUTO_BUFFER = { fraction: 0.25, minMb: 64, maxMb: 1024 };
/** The Go fledge's default squashfs compression level. */
export const DEFAULT_SQUASHFS_LEVEL = 15;

/** The kernel command-line keys Volant sets for a root disk (volantvm/volant pluginspec). */
export const VOLANT_ROOTFS_DEVICE_KEY = "volant.rootfs_device";
export const VOLANT_ROOTFS_FSTYPE_KEY = "volant.rootfs_fstype";

/** Turns `[filesystem]` into what the writer does; refuses what no writer here can make. */
export function planFilesystem(fs: FilesystemInput | undefined, configFile = "fledge.toml"): FilesystemPlan {
  const f = fs ?? {};
  const warnings: FilesystemIssue[] = [];
  const warn = (keyPath: string, message: string, hint?: string) => warnings.push({ keyPath, message, hint });
  const type = f.type ?? "ext4";
  if (type === "xfs" || type === "btrfs")
    throw Object.assign(
      new FledgeError("FLEDGE_ROOTFS", `type = "${type}" is not supported: fledge writes root disks without root, and only ext4 (or squashfs) that way`, {
        hint: `use type = "ext4" in ${configFile} — it is also what Volant mounts (${VOLANT_ROOTFS_FSTYPE_KEY}=ext4)`,
      }),
      { keyPath: "filesystem.type" },
    );
  if (type !== "ext4" && type !== "squashfs")
    throw Object.assign(new FledgeError("FLEDGE_ROOTFS", `type = ${JSON.stringify(type)} is not a filesystem fledge writes`, { hint: 'use type = "ext4" (or "squashfs")' }), { keyPath: "filesystem.type" });

  let freeBytes: (d: number) => number;
  let freeRule: string;
  if (f.size_buffer_mb !== undefined && f.size_buffer_mb > 0) {
    const mb = f.size_buffer_mb;
    freeBytes = () => mb * MiB;
    freeRule = `${mb} MiB (size_buffer_mb)`;
  } else {
    freeBytes = (d) => Math.min(AUTO_BUFFER.maxMb * MiB, Math.max(AUTO_BUFFER.minMb * MiB, Math.ceil(d * AUTO_BUFFER.fraction)));
    freeRule = `25% of the content, between 64 MiB and 1 GiB${f.size_buffer_mb === 0 ? " (size_buffer_mb = 0 means automatic, as in the Go fledge)" : ""}`;
  }

  if (type === "ext4") {
    if (f.compression_level !== undefined) warn("filesystem.compression_level", 'is only used with type = "squashfs": an ext4 image is not compressed', "remove it");
    if (f.overlay_size !== undefined) warn("filesystem.overlay_size", 'is only used with type = "squashfs": an ext4 root disk is writable itself', "remove it");
  } else {
    if (f.size_buffer_mb !== undefined) warn("filesystem.size_buffer_mb", 'is not used with type = "squashfs": a squashfs image is read-only and has no free space', "remove it");
    if (f.preallocate !== undefined) warn("filesystem.preallocate", 'is not used with type = "squashfs"', "remove it");
    warn(
      "filesystem.type",
      `type = "squashfs" makes a read-only image, and Volant does not boot it as it is: Volant's kestrel mounts the root disk read-write with the filesystem named by ${VOLANT_ROOTFS_FSTYPE_KEY} (ext4 unless the VM's kernel command line says otherwise) and copies itself to /usr/local/bin/kestrel on it before switch_root. ` +
        `To use it, a VM needs ${VOLANT_ROOTFS_FSTYPE_KEY}=squashfs ${VOLANT_ROOTFS_DEVICE_KEY}=vda on its kernel command line and an init that puts a writable overlay (overlay_size=${f.overlay_size ?? "1G"}) over the image`,
      'use type = "ext4" for a disk Volant boots as it is',
    );
  }
  const level = f.compression_level === undefined || f.compression_level === 0 ? DEFAULT_SQUASHFS_LEVEL : f.compression_level;
  return { type, freeBytes, freeRule, preallocate: f.preallocate ?? false, compressionLevel: level, overlaySize: f.overlay_size, warnings };
}
