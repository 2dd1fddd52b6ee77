import { spawnSync } from "node:child_process";
import { closeSync, openSync, readFileSync } from "node:fs";
import { arch as hostArch } from "node:os";

/** Guest architectures fledge builds for. */
export type GuestArch = "x86_64" | "aarch64";

/** A failure to start a VM that the user can fix; `code` is stable, `hint` says how. */
export class VmError extends Error {
  override name = "VmError";
  constructor(
    readonly code: string,
    message: string,
    readonly hint?: string,
  ) {
    super(message);
  }
}

const QEMU: Record<GuestArch, { binary: string; debian: string; fedora: string }> = {
  x86_64: { binary: "qemu-system-x86_64", debian: "qemu-system-x86", fedora: "qemu-system-x86" },
  aarch64: { binary: "qemu-system-aarch64", debian: "qemu-system-arm", fedora: "qemu-system-aarch64" },
};

/** How to install qemu for `arch`, naming the package of each common system. */
export function qemuInstallHint(arch: GuestArch): string {
  const q = QEMU[arch];
  return `install qemu: Debian/Ubuntu "apt-get install ${q.debian}", Fedora "dnf install ${q.fedora}", macOS "brew install qemu"`;
}

export interface QemuBinary {
  path: string;
  /** "7.2.22" */
  version: string;
}

/**
 * The qemu system emulator for `arch`: `$FLEDGE_QEMU` (for x86_64) / `$FLEDGE_QEMU_AARCH64`, else
 * the binary on PATH. Throws one clear error naming the package when it is not installed.
 */
export function findQemu(arch: GuestArch, env: NodeJS.ProcessEnv = process.env): QemuBinary {
  const q = QEMU[arch];
  const bin = (arch === "x86_64" ? env.FLEDGE_QEMU : env.FLEDGE_QEMU_AARCH64) || q.binary;
  const r = spawnSync(bin, ["--version"], { encoding: "utf8" });
  if (r.error || r.status !== 0) throw new VmError("FLEDGE_NO_QEMU", `${bin} is not installed (needed to boot ${arch} artifacts)`, qemuInstallHint(arch));
  const version = /version (\d+\.\d+(?:\.\d+)?)/.exec(r.stdout)?.[1] ?? "unknown";
  return { path: bin, version };
}

/** The host's architecture in fledge's names, or undefined for others. */
export function hostGuestArch(): GuestArch | undefined {
  const a = hostArch();
  return a === "x64" ? "x86_64" : a === "arm64" ? "aarch64" : undefined;
}

export type Accel = "kvm" | "tcg";

export interface AccelChoice {
  accel: Accel;
  /** Why, for the user ("KVM: /dev/kvm is usable", "TCG: /dev/kvm is missing"). */
  reason: string;
}

/**
 * KVM when the guest has the host's architecture, /dev/kvm opens read-write and (on x86) the CPU
 * advertises hardware virtualisation (vmx/svm); TCG (software emulation) otherwise. The CPU flag
 * matters: some sandboxes expose a /dev/kvm on which qemu's guests cannot run. `FLEDGE_ACCEL=kvm|tcg`
 * forces a choice.
 */
export function chooseAccel(arch: GuestArch, env: NodeJS.ProcessEnv = process.env, probe = probeKvm): AccelChoice {
  const forced = env.FLEDGE_ACCEL;
  if (forced === "kvm" || forced === "tcg") return { accel: forced, reason: `FLEDGE_ACCEL=${forced}` };
  if (forced) throw new VmError("FLEDGE_ACCEL", `FLEDGE_ACCEL=${forced} is not "kvm" or "tcg"`);
  if (hostGuestArch() !== arch) return { accel: "tcg", reason: `TCG (software emulation): an ${arch} guest on an ${hostArch()} host` };
  const problem = probe();
  return problem ? { accel: "tcg", reason: `TCG (software emulation): ${problem}` } : { accel: "kvm", reason: "KVM" };
}

/** Undefined when KVM looks usable, else why not. */
export function probeKvm(): string | undefined {
  try {
    closeSync(openSync("/dev/kvm", "r+"));
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    return code === "ENOENT" ? "/dev/kvm is missing" : `/dev/kvm cannot be opened (${code}; is this user in the kvm group?)`;
  }
  if (hostArch() === "x64") {
    let cpuinfo = "";
    try {
      cpuinfo = readFileSync("/proc/cpuinfo", "utf8");
    } catch {
      /* not Linux: leave it to qemu */
    }
    if (cpuinfo && !/^flags\s*:.*\b(vmx|svm)\b/m.test(cpuinfo)) return "/dev/kvm exists but the CPU advertises no hardware virtualisation (vmx/svm)";
  }
  return undefined;
}
