import { RootfsPlugin } from "./plugin.js";

export { RootfsPlugin, STRATEGY, KESTREL_PATHS, ROOTFS_STAGES, treeEntries } from "./plugin.js";
export { planFilesystem, AUTO_BUFFER, DEFAULT_SQUASHFS_LEVEL, VOLANT_ROOTFS_DEVICE_KEY, VOLANT_ROOTFS_FSTYPE_KEY, type FilesystemInput, type FilesystemPlan, type RootfsType } from "./filesystem.js";
export { writeSquashfs, findMksquashfs, MKSQUASHFS_HINT, type SquashfsOptions } from "./squashfs.js";
export { tarStream } from "./tar.js";

export default RootfsPlugin;
