import { healthUrl, waitHealthy } from "./health.js";
import type { KernelInfo } from "./kernel.js";
import { Vm, type InitEvent, type VmExit } from "./machine.js";
import { VmError, type GuestArch } from "./qemu.js";
import type { ManifestJson } from "./volant.js";

export interface MeasureOptions {
  initramfs: string;
  manifest: ManifestJson;
  kernel: KernelInfo;
  arch?: GuestArch;
  /** A console line that means "ready", for workloads without HTTP (instead of the health check). */
  marker?: string;
  /** Give up after this long (ms from qemu's start). Default 120 s. */
  timeoutMs?: number;
  env?: NodeJS.ProcessEnv;
  /** fledge's cache (unpacked kernels). */
  cacheDir?: string;
  /** Called with each console line (for --verbose). */
  onLine?: (line: string) => void;
}

/** How long a boot took, measured on the host and in the guest. */
export interface BootMeasurement {
  /** What "ready" meant: the health check URL (inside the guest's view) or the marker. */
  readyBy: { kind: "health"; url: string; status: number } | { kind: "marker"; marker: string };
  /** qemu started → /init runs (host clock). */
  qemuToInitMs: number;
  /**
   * Kernel start → /init runs: the guest's own clock (CLOCK_BOOTTIME). Under emulation on a
   * loaded host the guest's TSC calibration can be off, so this is what the guest says.
   */
  kernelToInitMs: number;
  /** /init runs → ready (host clock; the health check polls every 50 ms, as kestrel's does). */
  initToReadyMs: number;
  /** kernelToInitMs + initToReadyMs. */
  kernelToReadyMs: number;
  /** qemu started → ready (host clock): what a boot budget limits. */
  totalMs: number;
  /** The most guest RAM the VM had touched (KiB), seen from the host: qemu's guest-RAM mapping. */
  peakGuestMemoryKb: number;
  memoryMb: number;
  accel: string;
  qemu: string;
}

/**
 * Boots the artifact headless and waits until it is ready: the manifest's health check
 * (GET base_url + health_check.endpoint, 2xx) through the forwarded port, or `marker` on the
 * console. Always stops the VM. Rejects with a VmError saying what happened when the guest
 * never got ready (timeout, panic, power-off, /init that never ran).
 */
export async function measureBoot(o: MeasureOptions): Promise<BootMeasurement> {
  const endpoint = String(o.manifest.health_check?.endpoint ?? "").trim();
  const baseUrl = String(o.manifest.workload?.base_url ?? "").trim();
  if (!o.marker && !endpoint)
    throw new VmError(
      "FLEDGE_BOOTCHECK",
      "the boot check has nothing to wait for: the manifest has no health_check.endpoint",
      'add [health_check] endpoint = "/…" to manifest.toml, or [check] marker = "<a console line>" to fledge.toml',
    );
  const timeoutMs = o.timeoutMs ?? 120_000;
  const vm = new Vm({ initramfs: o.initramfs, manifest: o.manifest, kernel: o.kernel, arch: o.arch, env: o.env, cacheDir: o.cacheDir, forwards: o.marker ? [] : undefined });
  let init: InitEvent | undefined;
  vm.on("init", (e: InitEvent) => (init = e));
  if (o.onLine) vm.on("line", o.onLine);
  const abort = new AbortController();
  const ended = vm.exited.then((e) => {
    abort.abort(`the VM ended (${e.reason})`);
    return e;
  });
  await vm.start();
  let result: BootMeasurement;
  try {
    let readyAt: number;
    let readyBy: BootMeasurement["readyBy"];
    const failed = (why: string, exit?: VmExit) => {
      const tail = vm.serial.trim().split("\n").slice(-15).join("\n");
      return new VmError(
        "FLEDGE_BOOTCHECK",
        `boot check: ${why}${exit ? ` (the VM ${exit.reason === "poweroff" ? "powered off" : exit.reason === "reboot" ? "rebooted: a panic or an exiting /init" : exit.reason})` : ""}${tail ? `\n  last console lines:\n    ${tail.replace(/\n/g, "\n    ")}` : ""}`,
      );
    };
    if (o.marker) {
      const marker = o.marker;
      readyAt = await new Promise<number>((resolve, reject) => {
        const timer = setTimeout(() => reject(failed(`"${marker}" did not appear on the console within ${timeoutMs} ms`)), timeoutMs);
        const onLine = (line: string) => {
          if (line.includes(marker)) {
            clearTimeout(timer);
            vm.off("line", onLine);
            resolve(vm.elapsed());
          }
        };
        vm.on("line", onLine);
        void ended.then((e) => {
          clearTimeout(timer);
          reject(failed(`"${marker}" never appeared on the console`, e));
        });
      });
      readyBy = { kind: "marker", marker };
    } else {
      const fwd = vm.forwards[0];
      if (!fwd) throw new VmError("FLEDGE_BOOTCHECK", "the boot check cannot reach the workload: workload.base_url has no port to forward", "set base_url in manifest.toml, or use [check] marker");
      const url = healthUrl(baseUrl, endpoint, fwd.host);
      let r;
      try {
        r = await waitHealthy(url, { timeoutMs: Math.max(1, timeoutMs - vm.elapsed()), signal: abort.signal });
      } catch (err) {
        const last = /\(last: (.*)\)$/.exec((err as Error).message)?.[1] ?? (err as Error).message;
        const exit = vm.running ? undefined : await ended;
        throw failed(`the health check ${new URL(endpoint, baseUrl).toString()} never answered 2xx${exit ? "" : ` within ${timeoutMs} ms`} (last probe: ${last})`, exit);
      }
      readyAt = vm.elapsed();
      readyBy = { kind: "health", url: new URL(endpoint, baseUrl).toString(), status: r.status };
    }
    if (!init) throw new VmError("FLEDGE_BOOTCHECK", "boot check: the guest was ready, but fledge's guest helper never reported /init's start", "this is a bug in @fledge/vm");
    const initToReady = Math.round(readyAt - init.hostMs);
    result = {
      readyBy,
      qemuToInitMs: Math.round(init.hostMs),
      kernelToInitMs: init.guestMs,
      initToReadyMs: initToReady,
      kernelToReadyMs: init.guestMs + initToReady,
      totalMs: Math.round(readyAt),
      peakGuestMemoryKb: 0, // below, once the VM has stopped
      memoryMb: vm.memoryMb,
      accel: vm.accel.accel,
      qemu: `${vm.qemu.path} ${vm.qemu.version}`,
    };
  } finally {
    await vm.stop();
  }
  result.peakGuestMemoryKb = vm.peakGuestKb;
  return result;
}
