import { spawn, spawnSync } from "node:child_process";
import { existsSync, readdirSync } from "node:fs";
import { chooseAccel } from "@fledge/vm";

export const INSTALL_HINT = "run `bash scripts/install-e2e-deps.sh` (as root) to install qemu-system-x86, linux-image-amd64 and busybox-static";

/** The newest Debian kernel in /boot, or $FLEDGE_E2E_KERNEL. Throws, naming the install script, when there is none. */
export function findKernel(): string {
  const env = process.env.FLEDGE_E2E_KERNEL;
  if (env) {
    if (!existsSync(env)) throw new Error(`FLEDGE_E2E_KERNEL=${env} does not exist`);
    return env;
  }
  const kernels = existsSync("/boot")
    ? readdirSync("/boot")
        .filter((f) => /^vmlinuz-/.test(f))
        .sort((a, b) => a.localeCompare(b, "en", { numeric: true }))
    : [];
  if (!kernels.length) throw new Error(`no kernel found in /boot (vmlinuz-*): ${INSTALL_HINT}`);
  return `/boot/${kernels[kernels.length - 1]}`;
}

export function qemuBinary(): string {
  const bin = process.env.FLEDGE_E2E_QEMU ?? "qemu-system-x86_64";
  const r = spawnSync(bin, ["--version"], { encoding: "utf8" });
  if (r.error || r.status !== 0) throw new Error(`${bin} is not installed: ${INSTALL_HINT}`);
  return bin;
}

/** Debian's static busybox, used as the busybox payload so tests need no internet. */
export function hostBusybox(): string {
  for (const p of ["/bin/busybox", "/usr/bin/busybox"]) if (existsSync(p)) return p;
  throw new Error(`busybox-static is not installed: ${INSTALL_HINT}`);
}

/**
 * KVM by the rule `fledge run` uses (/dev/kvm opens read-write and the CPU advertises vmx/svm:
 * some sandboxes expose a /dev/kvm that qemu cannot use); FLEDGE_E2E_KVM=0|1 forces it.
 */
export function useKvm(): boolean {
  const forced = process.env.FLEDGE_E2E_KVM;
  if (forced === "0" || forced === "1") return forced === "1";
  return chooseAccel("x86_64").accel === "kvm";
}

export interface BootOptions {
  /** Extra kernel command line. */
  append?: string;
  /** Kill the VM after this long (default 120 s); the result says it timed out. */
  timeoutMs?: number;
  /** Stop the VM as soon as the serial output matches. */
  until?: RegExp;
  memoryMb?: number;
  /** Raw disk images attached as virtio block devices (vda, vdb, …), as Volant attaches a root disk. */
  drives?: string[];
}

export interface BootResult {
  /** Everything the serial console printed. */
  serial: string;
  /** The VM ended by itself (power-off or reboot), not killed by a timeout or `until`. */
  exitedByItself: boolean;
  timedOut: boolean;
  /** A kernel panic was printed. */
  panicked: boolean;
  durationMs: number;
}

/**
 * Boots an initramfs in qemu with Debian's kernel:
 * `qemu-system-x86_64 -kernel … -initrd … -append "console=ttyS0 panic=-1" -nographic -no-reboot`.
 * With panic=-1 and -no-reboot a panic ends the VM at once, as does a power-off.
 */
export async function bootInitramfs(initrd: string, opts: BootOptions = {}): Promise<BootResult> {
  const qemu = qemuBinary();
  const kernel = findKernel();
  // Under TCG a loaded host can fail the kernel's IO-APIC timer check ("IO-APIC + timer doesn't
  // work!" panic); fledge run skips the check the same way.
  const append = ["console=ttyS0", "panic=-1", useKvm() ? "" : "no_timer_check", opts.append].filter(Boolean).join(" ");
  const args = ["-kernel", kernel, "-initrd", initrd, "-append", append, "-m", String(opts.memoryMb ?? 256), "-nographic", "-no-reboot", "-nodefaults", "-serial", "stdio", "-monitor", "none"];
  for (const d of opts.drives ?? []) args.push("-drive", `file=${d.replace(/,/g, ",,")},if=virtio,format=raw`);
  if (useKvm()) args.unshift("-enable-kvm", "-cpu", "host");
  const started = performance.now();
  return new Promise<BootResult>((resolve, reject) => {
    const child = spawn(qemu, args, { stdio: ["ignore", "pipe", "pipe"] });
    let serial = "";
    let killedBy: "timeout" | "until" | undefined;
    const timer = setTimeout(() => {
      killedBy = "timeout";
      child.kill("SIGKILL");
    }, opts.timeoutMs ?? 120_000);
    child.stdout.setEncoding("utf8");
    child.stdout.on("data", (d: string) => {
      serial += d;
      if (opts.until && !killedBy && opts.until.test(serial)) {
        killedBy = "until";
        child.kill("SIGKILL");
      }
    });
    let stderr = "";
    child.stderr.setEncoding("utf8");
    child.stderr.on("data", (d: string) => (stderr += d));
    child.on("error", (err) => {
      clearTimeout(timer);
      reject(err);
    });
    child.on("close", (code) => {
      clearTimeout(timer);
      serial = serial.replace(/\r\n/g, "\n");
      if (!killedBy && code !== 0) {
        reject(new Error(`qemu exited with ${code}: ${stderr.trim()}\nserial:\n${serial}`));
        return;
      }
      resolve({
        serial,
        exitedByItself: !killedBy,
        timedOut: killedBy === "timeout",
        panicked: /Kernel panic/.test(serial),
        durationMs: performance.now() - started,
      });
    });
  });
}
