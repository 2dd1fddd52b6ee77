import { existsSync, readdirSync, readFileSync, statSync } from "node:fs";
import { open } from "node:fs/promises";
import { dirname, join, resolve } from "node:path";
import { gunzipSync } from "node:zlib";
import { VmError, type GuestArch } from "./qemu.js";

/** What fledge can tell about a kernel image from its bytes. */
export interface KernelInfo {
  path: string;
  arch: GuestArch;
  /** The release (`uname -r`), e.g. "6.1.0-57-amd64"; undefined when the image does not say. */
  release?: string;
  /** The kernel's own config (config-<release> beside it), when found. */
  configPath?: string;
  /** Where its modules are (lib/modules/<release>), when found. */
  modulesDir?: string;
}

const LINUX_VERSION = Buffer.from("Linux version ");

/**
 * Reads a kernel image: an x86 bzImage (setup header "HdrS"), an arm64 Image ("ARM\x64" at 0x38)
 * or a gzip-compressed arm64 Image. Throws a clear error for anything else.
 */
export async function inspectKernel(path: string): Promise<KernelInfo> {
  const abs = resolve(path);
  let st;
  try {
    st = statSync(abs);
  } catch {
    throw new VmError("FLEDGE_KERNEL", `kernel ${abs} does not exist`, "point --kernel or [run] kernel at a bzImage (x86_64) or Image (aarch64)");
  }
  if (!st.isFile()) throw new VmError("FLEDGE_KERNEL", `kernel ${abs} is not a regular file`);
  const fh = await open(abs, "r");
  let head: Buffer;
  try {
    head = Buffer.alloc(Math.min(st.size, 0x10000));
    await fh.read(head, 0, head.length, 0);
  } finally {
    await fh.close();
  }
  let arch: GuestArch | undefined;
  let release: string | undefined;
  if (head.length > 0x210 && head.toString("latin1", 0x202, 0x206) === "HdrS") {
    arch = "x86_64";
    const ptr = head.readUInt16LE(0x20e);
    const at = 0x200 + ptr;
    if (ptr && at < head.length) {
      const end = head.indexOf(0, at);
      release = head.toString("latin1", at, end < 0 ? Math.min(head.length, at + 256) : end).split(" ")[0] || undefined;
    }
  } else {
    let image: Buffer | undefined;
    if (head.length > 0x40 && head.toString("latin1", 0x38, 0x3c) === "ARM\x64") image = readFileSync(abs);
    else if (head[0] === 0x1f && head[1] === 0x8b) {
      try {
        const un = gunzipSync(readFileSync(abs));
        if (un.toString("latin1", 0x38, 0x3c) === "ARM\x64") image = un;
      } catch {
        /* not a gzip'd kernel */
      }
    }
    if (image) {
      arch = "aarch64";
      const i = image.indexOf(LINUX_VERSION);
      if (i >= 0) release = image.toString("latin1", i + LINUX_VERSION.length, i + LINUX_VERSION.length + 128).split(/[\s\0]/)[0] || undefined;
    }
  }
  if (!arch) throw new VmError("FLEDGE_KERNEL", `${abs} is not a kernel fledge can boot (expected an x86 bzImage or an arm64 Image)`, "use the vmlinuz/bzImage/Image file, not an ELF vmlinux or an initrd");
  const info: KernelInfo = { path: abs, arch, release };
  if (release) {
    const dir = dirname(abs);
    const cfg = join(dir, `config-${release}`);
    if (existsSync(cfg)) info.configPath = cfg;
    for (const m of [join(dir, "..", "lib", "modules", release), join(dir, "..", "usr", "lib", "modules", release), `/lib/modules/${release}`, `/usr/lib/modules/${release}`]) {
      if (existsSync(join(m, "kernel"))) {
        info.modulesDir = resolve(m);
        break;
      }
    }
  }
  return info;
}

/** The host's kernels in /boot for `arch`, newest first (by release, numerically). */
export async function hostKernels(arch: GuestArch, bootDir = "/boot"): Promise<KernelInfo[]> {
  let names: string[];
  try {
    names = readdirSync(bootDir).filter((f) => /^(vmlinuz|bzImage)(-|$)/.test(f));
  } catch {
    return [];
  }
  const found: KernelInfo[] = [];
  for (const n of names) {
    try {
      const k = await inspectKernel(join(bootDir, n));
      if (k.arch === arch) found.push(k);
    } catch {
      /* unreadable (not root on a distro that makes /boot/vmlinuz-* 0600) or not a kernel */
    }
  }
  return found.sort((a, b) => (b.release ?? "").localeCompare(a.release ?? "", "en", { numeric: true }));
}

/** The value of a CONFIG_ option in a kernel config file ("y", "m"), or undefined when unset. */
export function kernelConfigValue(configText: string, option: string): string | undefined {
  const m = new RegExp(`^CONFIG_${option}=(.*)$`, "m").exec(configText);
  return m?.[1];
}

/** The modules a guest needs for its NIC (virtio-net on PCI), in load order, from a kernel's modules directory. */
export const NET_MODULES = ["virtio_pci", "virtio_net"];

export interface ModuleFile {
  name: string;
  path: string;
}

/**
 * Resolves `wanted` and their dependencies (read from each module's own .modinfo "depends=", so
 * no modules.dep is needed) to files under `modulesDir`, dependencies first. Compressed modules
 * (.ko.xz, .ko.zst) are skipped with a reason; .ko and .ko.gz are used.
 */
export function resolveModules(modulesDir: string, wanted: string[]): { modules: ModuleFile[]; missing: string[] } {
  const index = new Map<string, string>();
  const walk = (dir: string) => {
    let ents;
    try {
      ents = readdirSync(dir, { withFileTypes: true });
    } catch {
      return;
    }
    for (const e of ents) {
      const p = join(dir, e.name);
      if (e.isDirectory()) walk(p);
      else if (/\.ko(\.gz)?$/.test(e.name)) index.set(e.name.replace(/\.ko(\.gz)?$/, "").replace(/-/g, "_"), p);
    }
  };
  walk(join(modulesDir, "kernel"));
  const out: ModuleFile[] = [];
  const seen = new Set<string>();
  const missing: string[] = [];
  const visit = (name: string, depth: number) => {
    const key = name.replace(/-/g, "_");
    if (seen.has(key) || depth > 32) return;
    seen.add(key);
    const path = index.get(key);
    if (!path) {
      missing.push(key);
      return;
    }
    for (const dep of moduleDepends(readModule(path))) visit(dep, depth + 1);
    out.push({ name: key, path });
  };
  for (const w of wanted) visit(w, 0);
  return { modules: out, missing };
}

/** A module's bytes, gunzipped when it is a .ko.gz. */
export function readModule(path: string): Buffer {
  const b = readFileSync(path);
  return path.endsWith(".gz") ? gunzipSync(b) : b;
}

/** The `depends=` list of a module's .modinfo section. */
export function moduleDepends(ko: Buffer): string[] {
  const tag = Buffer.from("\0depends=");
  const i = ko.indexOf(tag);
  if (i < 0) return [];
  const start = i + tag.length;
  const end = ko.indexOf(0, start);
  const list = ko.toString("latin1", start, end < 0 ? start : end);
  return list ? list.split(",").filter(Boolean) : [];
}
