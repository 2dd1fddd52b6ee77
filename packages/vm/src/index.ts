export { VmError, findQemu, qemuInstallHint, chooseAccel, probeKvm, hostGuestArch, type GuestArch, type Accel, type AccelChoice, type QemuBinary } from "./qemu.js";
export { inspectKernel, hostKernels, kernelConfigValue, resolveModules, moduleDepends, NET_MODULES, type KernelInfo, type ModuleFile } from "./kernel.js";
export { volantCmdline, encodeManifest, decodeManifest, marshalManifest, normalizeManifest, sanitizeHostname, USER_NET, type ManifestJson, type CmdlineOptions } from "./volant.js";
export { guestPiece, writeInitrd, guestBinaryPath, GUEST_DIR, GUEST_INIT } from "./guest.js";
export { Vm, basePort, freePort, guestRamRssKb, type VmOptions, type VmExit, type ExitReason, type InitEvent, type PortForward } from "./machine.js";
export { healthUrl, waitHealthy, get, type ProbeResult, type WaitOptions } from "./health.js";
export { selectKernel, fetchVolantKernel, VOLANT_REPO, VOLANT_KERNEL_ASSET, VOLANT_KERNEL_CHECKSUM, type KernelChoice, type KernelSource, type SelectKernelOptions, type VolantKernelPin } from "./select.js";
export { measureBoot, type MeasureOptions, type BootMeasurement } from "./measure.js";
export { pvhKernel, hasPvhNote } from "./pvh.js";
