import { spawn, type ChildProcess } from "node:child_process";
import { EventEmitter } from "node:events";
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { createServer, connect, type Socket } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { chooseAccel, findQemu, VmError, type AccelChoice, type GuestArch, type QemuBinary } from "./qemu.js";
import { NET_MODULES, kernelConfigValue, resolveModules, type KernelInfo, type ModuleFile } from "./kernel.js";
import { GUEST_INIT, guestPiece, writeInitrd } from "./guest.js";
import { volantCmdline, type ManifestJson } from "./volant.js";
import { pvhKernel } from "./pvh.js";
import { defaultCacheDir } from "@fledge/fetch";

export interface PortForward {
  /** Port on 127.0.0.1 (0: pick a free one). */
  host: number;
  guest: number;
}

export interface VmOptions {
  /** The initramfs artifact (plugin.cpio.gz). */
  initramfs?: string;
  /** A root disk image (manifest rootfs.url), attached as the first virtio disk (vda). */
  rootfs?: string;
  /** The plugin's manifest.json content: the command line carries it, resources size the VM. */
  manifest: ManifestJson;
  kernel: KernelInfo;
  /** Default: the kernel's architecture. */
  arch?: GuestArch;
  /** Default: the manifest's resources.memory_mb (at least 64). */
  memoryMb?: number;
  /** Default: the manifest's resources.cpu_cores. */
  cpus?: number;
  /** TCP ports forwarded from 127.0.0.1 to the guest; default: the port of workload.base_url. */
  forwards?: PortForward[];
  /** Extra kernel arguments (after Volant's). */
  append?: string;
  /** Put fledge's guest helper before /init (timings; networking with a modular kernel). Default true. */
  guestHelper?: boolean;
  /** Sample the guest RAM the VM has touched (Linux hosts). Default true. */
  measureMemory?: boolean;
  env?: NodeJS.ProcessEnv;
  /** fledge's cache (default $FLEDGE_CACHE_DIR, …): unpacked kernels are kept in <cache>/kernels. */
  cacheDir?: string;
  /** Boot an x86 bzImage's vmlinux through its PVH entry when it has one (much faster under emulation). Default true. */
  pvh?: boolean;
  /** Serial console input (e.g. process.stdin); default none. */
  input?: NodeJS.ReadableStream;
}

export type ExitReason =
  /** The guest powered off. */
  | "poweroff"
  /** The guest rebooted (with Volant's panic=1, a kernel panic ends in a reboot). */
  | "reboot"
  /** The guest's kernel panicked (seen on the console). */
  | "panic"
  /** stop() was called (Ctrl-C). */
  | "stopped"
  /** qemu itself failed. */
  | "error";

export interface VmExit {
  reason: ExitReason;
  /** qemu's exit code, or null when it was killed. */
  code: number | null;
  signal: NodeJS.Signals | null;
  /** qemu's stderr, when it said anything. */
  stderr: string;
  /** ms from qemu's start to its exit. */
  durationMs: number;
}

export interface InitEvent {
  /** The guest's CLOCK_BOOTTIME when /init was about to run (ms since the kernel started its clock). */
  guestMs: number;
  /** ms from qemu's start until the host read the line. */
  hostMs: number;
}

/** Events: "serial" (string chunk), "line" (string), "init" (InitEvent), "exit" (VmExit). */
export class Vm extends EventEmitter {
  readonly options: VmOptions;
  readonly arch: GuestArch;
  qemu!: QemuBinary;
  accel!: AccelChoice;
  /** The kernel command line given to the guest. */
  cmdline = "";
  /** The kernel file qemu loads (an unpacked vmlinux for PVH, or the kernel as given). */
  kernelPath = "";
  /** The argv qemu was started with. */
  argv: string[] = [];
  /** Forwards with the host ports actually used. */
  forwards: PortForward[] = [];
  /** Modules put in the guest helper's piece (modular kernels). */
  modules: ModuleFile[] = [];
  /** Notes for the user (no network driver, …). */
  readonly notes: string[] = [];
  /** Guest memory (MiB), once started. */
  memoryMb = 0;
  /** Peak guest RAM the VM touched, in KiB (0 until measured). */
  peakGuestKb = 0;
  /** The serial output so far (kept to 1 MiB). */
  serial = "";
  exited: Promise<VmExit>;
  #resolveExit!: (e: VmExit) => void;
  #child?: ChildProcess;
  #qmp?: Socket;
  #tmp?: string;
  #stopping = false;
  #shutdown?: "poweroff" | "reboot";
  #started = 0;
  #memTimer?: NodeJS.Timeout;
  #lineBuf = "";

  constructor(options: VmOptions) {
    super();
    this.options = options;
    this.arch = options.arch ?? options.kernel.arch;
    this.exited = new Promise((r) => (this.#resolveExit = r));
  }

  get pid(): number | undefined {
    return this.#child?.pid;
  }

  get running(): boolean {
    return !!this.#child && this.#child.exitCode === null && this.#child.signalCode === null;
  }

  /** Starts qemu; resolves once the VM is running (its QMP monitor answered). */
  async start(): Promise<void> {
    const o = this.options;
    const env = o.env ?? process.env;
    if (o.kernel.arch !== this.arch) throw new VmError("FLEDGE_KERNEL_ARCH", `kernel ${o.kernel.path} is ${o.kernel.arch}, the artifact is ${this.arch}`, `give a ${this.arch} kernel with --kernel`);
    if (!o.initramfs && !o.rootfs) throw new VmError("FLEDGE_VM", "nothing to boot: no initramfs and no root disk");
    this.qemu = findQemu(this.arch, env);
    this.accel = chooseAccel(this.arch, env);
    const memoryMb = Math.max(64, Math.trunc(o.memoryMb ?? Number(o.manifest.resources?.memory_mb ?? 0)) || 256);
    this.memoryMb = memoryMb;
    const cpus = Math.max(1, Math.trunc(o.cpus ?? Number(o.manifest.resources?.cpu_cores ?? 1)) || 1);
    this.#tmp = mkdtempSync(join(tmpdir(), "fledge-vm-"));

    // The NIC: virtio-net on PCI, as Volant's Cloud Hypervisor gives it; qemu's user network.
    const mode =
      String(o.manifest.network?.mode ?? "bridged")
        .trim()
        .toLowerCase() || "bridged";
    const wantNet = mode !== "vsock";
    if (!wantNet) this.notes.push('network mode "vsock": the VM gets no network card (fledge run has no vsock bridge), so nothing is forwarded');
    const forwards = wantNet ? (o.forwards ?? defaultForwards(o.manifest)) : [];
    this.forwards = [];
    for (const f of forwards) this.forwards.push({ guest: f.guest, host: f.host || (await freePort()) });

    const helper = o.guestHelper !== false;
    if (helper && wantNet) this.modules = this.#netModules();
    const console = this.arch === "aarch64" ? "ttyAMA0" : "ttyS0";
    // Under software emulation a loaded host can make the kernel's IO-APIC timer check fail and
    // panic ("IO-APIC + timer doesn't work!"); Volant runs on KVM, where the check passes. So
    // with TCG the check is skipped.
    const tcgOnly = this.accel.accel === "tcg" && this.arch === "x86_64" ? "no_timer_check" : "";
    this.cmdline = volantCmdline({ manifest: o.manifest, console, extra: [o.append, tcgOnly, helper && o.initramfs ? `rdinit=${GUEST_INIT}` : ""].filter(Boolean).join(" ") });
    if (this.cmdline.length > 2047) this.notes.push(`the kernel command line is ${this.cmdline.length} bytes; x86 kernels keep only 2047`);

    const args: string[] = [];
    const machine = this.arch === "aarch64" ? "virt" : "pc";
    args.push("-machine", `${machine},accel=${this.accel.accel},memory-backend=ram`);
    args.push("-object", `memory-backend-memfd,id=ram,size=${memoryMb}M`, "-m", `${memoryMb}M`, "-smp", String(cpus));
    if (this.accel.accel === "kvm") args.push("-cpu", "host");
    else if (this.arch === "aarch64") args.push("-cpu", "cortex-a57");
    // x86: the bzImage's vmlinux through its PVH entry when it has one (no in-guest decompression)
    const kernelPath = (this.arch === "x86_64" && o.pvh !== false && pvhKernel(o.kernel.path, o.cacheDir ?? defaultCacheDir(env))) || o.kernel.path;
    this.kernelPath = kernelPath;
    args.push("-kernel", kernelPath);
    if (o.initramfs) {
      let initrd = o.initramfs;
      if (helper) {
        initrd = join(this.#tmp, "initrd");
        await writeInitrd(initrd, await guestPiece(this.arch, this.modules), o.initramfs);
      }
      args.push("-initrd", initrd);
    }
    args.push("-append", this.cmdline);
    if (o.rootfs) args.push("-drive", `file=${o.rootfs},format=raw,if=virtio`);
    if (wantNet) {
      const fwd = this.forwards.map((f) => `,hostfwd=tcp:127.0.0.1:${f.host}-:${f.guest}`).join("");
      args.push("-netdev", `user,id=net0${fwd}`, "-device", "virtio-net-pci,netdev=net0,romfile=");
    }
    const qmpPath = join(this.#tmp, "qmp.sock");
    args.push("-nodefaults", "-no-user-config", "-display", "none", "-serial", "stdio", "-monitor", "none", "-no-reboot");
    args.push("-chardev", `socket,id=qmp,path=${qmpPath},server=on,wait=on`, "-mon", "chardev=qmp,mode=control");
    this.argv = [this.qemu.path, ...args];

    this.#started = performance.now();
    const child = spawn(this.qemu.path, args, { stdio: [o.input ? "pipe" : "ignore", "pipe", "pipe"] });
    this.#child = child;
    let stderr = "";
    child.stderr!.setEncoding("utf8").on("data", (d: string) => {
      if (stderr.length < 65536) stderr += d;
    });
    child.stdout!.setEncoding("utf8").on("data", (d: string) => this.#onSerial(d));
    if (o.input && child.stdin) {
      o.input.pipe(child.stdin);
      child.stdin.on("error", () => {});
    }
    const spawnError = new Promise<never>((_, reject) => child.once("error", (err) => reject(new VmError("FLEDGE_VM", `cannot start ${this.qemu.path}: ${err.message}`))));
    spawnError.catch(() => {});
    child.once("close", (code, signal) => {
      clearInterval(this.#memTimer);
      this.#sampleMemory(); // never throws
      this.#qmp?.destroy();
      if (o.input && child.stdin) o.input.unpipe(child.stdin);
      if (this.#tmp) rmSync(this.#tmp, { recursive: true, force: true });
      const panicked = /Kernel panic/.test(this.serial);
      const reason: ExitReason = this.#stopping ? "stopped" : this.#shutdown === "poweroff" ? "poweroff" : this.#shutdown === "reboot" ? (panicked ? "panic" : "reboot") : panicked ? "panic" : "error";
      // qemu announces the monitor socket it waits on: not news for the user
      stderr = stderr.replace(/^.*QEMU waiting for connection on.*\n?/gm, "");
      const exit: VmExit = { reason, code, signal, stderr: stderr.trim(), durationMs: performance.now() - this.#started };
      this.emit("exit", exit);
      this.#resolveExit(exit);
    });
    // The monitor makes qemu wait (wait=on) until we are listening for its events.
    this.#qmp = await Promise.race([this.#connectQmp(qmpPath), spawnError, this.exited.then((e) => Promise.reject(new VmError("FLEDGE_VM", `qemu exited at start (${e.code ?? e.signal}): ${e.stderr || "no message"}`)))]);
    if (o.measureMemory !== false && process.platform === "linux") this.#memTimer = setInterval(() => this.#sampleMemory(), 100);
  }

  /** Stops the VM: qemu is told to quit (as if the power were cut), killed if it has not gone within `graceMs`. */
  async stop(graceMs = 5000): Promise<VmExit> {
    if (!this.#child) throw new Error("the VM was never started");
    if (!this.running) return this.exited;
    this.#stopping = true;
    this.#qmpSend({ execute: "quit" });
    const timer = setTimeout(() => this.#child?.kill("SIGKILL"), graceMs);
    const t2 = setTimeout(() => this.#child?.kill("SIGTERM"), Math.min(1000, graceMs / 2));
    const exit = await this.exited;
    clearTimeout(timer);
    clearTimeout(t2);
    return exit;
  }

  /** Kills qemu at once (synchronous: for process exit handlers). */
  killSync(): void {
    if (this.running) {
      this.#stopping = true;
      this.#child?.kill("SIGKILL");
    }
    if (this.#tmp) rmSync(this.#tmp, { recursive: true, force: true });
  }

  /** ms since qemu started. */
  elapsed(): number {
    return performance.now() - this.#started;
  }

  #netModules(): ModuleFile[] {
    const k = this.options.kernel;
    let config = "";
    try {
      if (k.configPath) config = readFileSync(k.configPath, "utf8");
    } catch {
      /* unreadable: treat as unknown */
    }
    const builtIn = config && kernelConfigValue(config, "VIRTIO_NET") === "y" && kernelConfigValue(config, "VIRTIO_PCI") === "y";
    if (builtIn || (!config && !k.modulesDir)) return []; // built in, or a kernel we know nothing of (Volant's builds it in)
    if (!k.modulesDir) {
      this.notes.push(`kernel ${k.release ?? k.path} has virtio-net as a module and its modules were not found (lib/modules/${k.release}): the guest will have no network`);
      return [];
    }
    const { modules, missing } = resolveModules(k.modulesDir, NET_MODULES);
    if (missing.length) this.notes.push(`modules not found in ${k.modulesDir}: ${missing.join(", ")}: the guest may have no network`);
    return modules;
  }

  #onSerial(d: string): void {
    this.emit("serial", d);
    if (this.serial.length < 1 << 20) this.serial += d.replace(/\r\n/g, "\n");
    this.#lineBuf += d;
    for (let i = this.#lineBuf.indexOf("\n"); i >= 0; i = this.#lineBuf.indexOf("\n")) {
      const line = this.#lineBuf.slice(0, i).replace(/\r$/, "");
      this.#lineBuf = this.#lineBuf.slice(i + 1);
      const m = /fledge-run: \/init at (\d+) ms/.exec(line);
      if (m) this.emit("init", { guestMs: Number(m[1]), hostMs: this.elapsed() } satisfies InitEvent);
      this.emit("line", line);
    }
  }

  async #connectQmp(path: string): Promise<Socket> {
    const deadline = Date.now() + 30_000;
    for (;;) {
      try {
        const sock = await new Promise<Socket>((resolve, reject) => {
          const s = connect(path);
          s.once("connect", () => resolve(s));
          s.once("error", reject);
        });
        let buf = "";
        sock.setEncoding("utf8").on("data", (d: string) => {
          buf += d;
          for (let i = buf.indexOf("\n"); i >= 0; i = buf.indexOf("\n")) {
            const line = buf.slice(0, i).trim();
            buf = buf.slice(i + 1);
            if (line) this.#onQmp(line);
          }
        });
        sock.on("error", () => {});
        this.#qmp = sock;
        this.#qmpSend({ execute: "qmp_capabilities" });
        return sock;
      } catch (err) {
        if (!this.running || Date.now() > deadline) throw new VmError("FLEDGE_VM", `cannot reach qemu's monitor at ${path}: ${(err as Error).message}`);
        await new Promise((r) => setTimeout(r, 20));
      }
    }
  }

  #onQmp(line: string): void {
    let msg: { event?: string; data?: { reason?: string; guest?: boolean } };
    try {
      msg = JSON.parse(line);
    } catch {
      return;
    }
    if (msg.event === "SHUTDOWN" && !this.#stopping) {
      const reason = msg.data?.reason ?? "";
      this.#shutdown = reason === "guest-reset" ? "reboot" : reason === "guest-shutdown" ? "poweroff" : this.#shutdown;
    } else if (msg.event === "RESET" && !this.#stopping) this.#shutdown = "reboot";
  }

  #qmpSend(cmd: object): void {
    this.#qmp?.write(JSON.stringify(cmd) + "\n");
  }

  #sampleMemory(): void {
    const pid = this.#child?.pid;
    if (!pid) return;
    const kb = guestRamRssKb(pid);
    if (kb > this.peakGuestKb) this.peakGuestKb = kb;
  }
}

/** The resident size (KiB) of a qemu process's guest RAM (its memory-backend-memfd mapping); 0 when unknown. */
export function guestRamRssKb(pid: number): number {
  let smaps: string;
  try {
    smaps = readFileSync(`/proc/${pid}/smaps`, "utf8");
  } catch {
    return 0;
  }
  const i = smaps.indexOf("/memfd:memory-backend-memfd");
  if (i < 0) return 0;
  const m = /\nRss:\s+(\d+) kB/.exec(smaps.slice(i));
  return m ? Number(m[1]) : 0;
}

/** The guest port of workload.base_url (http://127.0.0.1:8000 → 8000; no port: 80 or 443). */
export function basePort(manifest: ManifestJson): number | undefined {
  const base = String(manifest.workload?.base_url ?? "").trim();
  if (!base) return undefined;
  try {
    const u = new URL(base);
    return u.port ? Number(u.port) : u.protocol === "https:" ? 443 : 80;
  } catch {
    return undefined;
  }
}

function defaultForwards(manifest: ManifestJson): PortForward[] {
  const p = basePort(manifest);
  return p ? [{ host: 0, guest: p }] : [];
}

/** A free TCP port on 127.0.0.1. */
export function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const s = createServer();
    s.unref();
    s.once("error", reject);
    s.listen(0, "127.0.0.1", () => {
      const port = (s.address() as { port: number }).port;
      s.close(() => resolve(port));
    });
  });
}
