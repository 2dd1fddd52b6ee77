import { readdir, readFile } from "node:fs/promises";
import { createHash } from "node:crypto";
import { createReadStream } from "node:fs";
import { basename, dirname, join, resolve } from "node:path";
import { Fetcher, defaultCacheDir } from "@fledge/fetch";
import { Vm, basePort, healthUrl, selectKernel, type GuestArch, type KernelChoice, type ManifestJson, type VmExit, type VolantKernelPin } from "@fledge/vm";
import { ExitError, colors, type CliIO } from "./io.js";

/** What `fledge run` and `fledge dev` boot: an artifact and the manifest that describes it. */
export interface BootTarget {
  artifact: string;
  manifest: ManifestJson;
  manifestPath: string;
  arch: GuestArch;
}

export async function sha256File(path: string): Promise<string> {
  const h = createHash("sha256");
  for await (const c of createReadStream(path)) h.update(c as Buffer);
  return h.digest("hex");
}

// biome-ignore lint/complexity/useSimpleNumberKeys: e_machine values in hex, as elf.h writes them
const ELF_MACHINE: Record<number, GuestArch> = { 0x3e: "x86_64", 0xb7: "aarch64" };

/**
 * The architecture an artifact was built for, from the ELF header of its /init (else of the
 * first ELF executable in it); undefined when it holds none.
 */
export async function artifactArch(path: string): Promise<GuestArch | undefined> {
  const { readArchive } = await import("@fledge/cpio");
  const { entries } = await readArchive(await readFile(path));
  const elf = (d: Uint8Array | undefined) => (d && d.length > 20 && d[0] === 0x7f && d[1] === 0x45 && d[2] === 0x4c && d[3] === 0x46 ? ELF_MACHINE[d[18]! | (d[19]! << 8)] : undefined);
  const init = entries.find((e) => e.path === "init" && e.type === "file");
  return elf(init?.data) ?? entries.map((e) => (e.type === "file" ? elf(e.data) : undefined)).find(Boolean);
}

/**
 * The manifest of a prebuilt artifact: `--manifest`, else the one `*.manifest.json` beside the
 * artifact whose initramfs checksum is the artifact's sha256.
 */
export async function manifestFor(artifact: string, given?: string): Promise<{ manifest: ManifestJson; path: string }> {
  const read = async (p: string) => {
    try {
      return JSON.parse(await readFile(p, "utf8")) as ManifestJson;
    } catch (err) {
      throw new ExitError(1, `cannot read the manifest ${p}: ${(err as Error).message}`);
    }
  };
  if (given) return { manifest: await read(given), path: given };
  const dir = dirname(artifact);
  const sha = await sha256File(artifact);
  const names = (await readdir(dir)).filter((n) => n.endsWith(".manifest.json")).sort();
  for (const n of names) {
    const p = join(dir, n);
    let m: ManifestJson;
    try {
      m = JSON.parse(await readFile(p, "utf8"));
    } catch {
      continue;
    }
    if (String(m.initramfs?.checksum ?? "").replace(/^sha256:/, "") === sha) return { manifest: m, path: p };
  }
  throw new ExitError(
    1,
    `no manifest for ${artifact}: none of the ${names.length ? names.join(", ") : "*.manifest.json files"} in ${dir} has its sha256 (sha256:${sha.slice(0, 12)}…)\n  hint: pass --manifest <name>.manifest.json, or run "fledge run" in the project directory to build and boot`,
  );
}

export interface KernelRequest {
  arch: GuestArch;
  flag?: string;
  config?: string;
  cacheDir?: string;
  offline?: boolean;
  env: NodeJS.ProcessEnv;
  volantVersion?: string;
  /** The project's directory (fledge.lock), when there is one. */
  projectDir?: string;
}

/**
 * Chooses the kernel (see selectKernel). In a project, Volant's kernel is an input of
 * `fledge run` pinned in the project's fledge.lock (scope "run": builds keep the entry and
 * `--locked` ignores it); for a lone artifact it comes through the download cache alone.
 */
export async function chooseKernel(io: CliIO, req: KernelRequest): Promise<KernelChoice> {
  const fetcher = new Fetcher({ cacheDir: req.cacheDir ?? defaultCacheDir(req.env), offline: req.offline, env: req.env });
  const flag = req.flag && resolve(io.cwd, req.flag);
  try {
    if (flag || req.config || req.arch !== "x86_64" || !req.projectDir) return await selectKernel({ arch: req.arch, flag, config: req.config, fetcher, volantVersion: req.volantVersion });
    const { InputSet, LOCK_FILE } = await import("@fledge/core");
    const { volantKernelInput } = await import("@fledge/plugin-bootcheck");
    const set = new InputSet({ lockFile: join(req.projectDir, LOCK_FILE), baseDir: req.projectDir, fetcher, mode: "auto", scope: "run", log: { warn: (m) => say(io, m, "warn"), info: () => {} } });
    set.add(volantKernelInput(req.volantVersion ?? "latest", "run"));
    await set.resolve();
    const k = (await set.get<{ path?: string; pin?: VolantKernelPin; error?: string }>("kernel")).value;
    if (k.path && k.pin) await set.writeLock();
    return await selectKernel({ arch: req.arch, ...(k.path && k.pin ? { volantFile: k.path, pin: k.pin } : { unavailable: `Volant's kernel (release ${req.volantVersion ?? "latest"}) is not available: ${k.error}` }) });
  } finally {
    await fetcher.close?.();
  }
}

export interface SessionOptions {
  target: BootTarget;
  kernel: KernelChoice;
  /** Extra kernel arguments. */
  append?: string;
  memoryMb?: number;
  /** fledge's cache (unpacked kernels). */
  cacheDir?: string;
  /** Serial console input (a terminal). */
  input?: NodeJS.ReadableStream;
  /** host port for the workload's port (0: any free one). */
  hostPort?: number;
  quiet: boolean;
}

/** Prints "fledge: …" lines on stderr, dimmed on a TTY. */
export function say(io: CliIO, msg: string, kind: "info" | "warn" = "info"): void {
  const c = colors(io, io.stderr);
  io.stderr.write(`${kind === "warn" ? c.yellow("fledge: warning:") : c.cyan("fledge:")} ${msg}\n`);
}

/** Starts the VM with its serial console on stdout (and stdin when it is a terminal), printing what the user needs. */
export async function startSession(io: CliIO, o: SessionOptions): Promise<Vm> {
  const { target, kernel } = o;
  const guestPort = basePort(target.manifest);
  // A disk-image plugin (manifest rootfs.url, no initramfs) boots as Volant boots it: the disk is
  // vda, and the kernel's built-in initramfs (Volant's kestrel) mounts it.
  const disk = !!target.manifest.rootfs?.url && !target.manifest.initramfs?.url;
  if (disk && !kernel.volant)
    say(io, `${basename(target.artifact)} is a disk image: Volant boots it with its kernel's built-in initramfs (kestrel mounts vda); ${kernel.description} has none, so the guest will likely find no root`, "warn");
  const vm = new Vm({
    ...(disk ? { rootfs: target.artifact } : { initramfs: target.artifact }),
    manifest: target.manifest,
    kernel: kernel.kernel,
    arch: target.arch,
    append: o.append,
    memoryMb: o.memoryMb,
    forwards: guestPort ? [{ host: o.hostPort ?? 0, guest: guestPort }] : [],
    env: io.env,
    input: o.input,
    cacheDir: o.cacheDir,
  });
  vm.on("serial", (d: string) => io.stdout.write(d));
  if (kernel.notice) say(io, kernel.notice, "warn");
  await vm.start();
  if (!o.quiet) {
    say(io, `booting ${basename(target.artifact)} (${target.manifest.name ?? "plugin"}) with ${kernel.description}`);
    say(io, `${vm.qemu.path} ${vm.qemu.version}, ${vm.accel.accel === "kvm" ? "KVM" : vm.accel.reason}, ${vm.options.memoryMb ?? target.manifest.resources?.memory_mb ?? 256} MiB`);
    for (const n of vm.notes) say(io, n, "warn");
  }
  const base = String(target.manifest.workload?.base_url ?? "");
  for (const f of vm.forwards) {
    const url = base ? healthUrl(base, "/", f.host) : `http://127.0.0.1:${f.host}/`;
    say(io, `guest port ${f.guest} is forwarded: curl ${url}`);
  }
  if (!o.quiet) say(io, "Ctrl-C stops the VM");
  return vm;
}

/** Exit code for how the VM ended: 0 for a guest power-off. */
export function describeExit(exit: VmExit): { code: number; message: string } {
  switch (exit.reason) {
    case "poweroff":
      return { code: 0, message: "the guest powered off" };
    case "stopped":
      return { code: 130, message: "stopped: the VM is gone" };
    case "panic":
      return { code: 1, message: "the guest's kernel panicked (see the console above)" };
    case "reboot":
      return { code: 1, message: "the guest rebooted (Volant's panic=1 turns a panic or an exiting /init into a reboot)" };
    default:
      return { code: 1, message: `qemu failed (exit ${exit.code ?? exit.signal})${exit.stderr ? `: ${exit.stderr}` : ""}` };
  }
}

export { defaultCacheDir };
