import { existsSync, readFileSync } from "node:fs";
import { basename, join } from "node:path";
import { INSTALL_HINT } from "./qemu.js";

/** The release of a Debian kernel image path (`/boot/vmlinuz-6.1.0-57-amd64` → `6.1.0-57-amd64`). */
export function kernelRelease(kernel: string): string {
  const m = /^vmlinuz-(.+)$/.exec(basename(kernel));
  if (!m) throw new Error(`cannot tell the kernel release of ${kernel} (expected /boot/vmlinuz-<release>)`);
  return m[1]!;
}

export interface KernelModule {
  name: string;
  /** Absolute path of the .ko file. */
  file: string;
}

/**
 * The modules `names` need, dependencies first, from the kernel's modules.dep — what modprobe
 * would load, for an initramfs that loads them with busybox insmod.
 */
export function moduleClosure(release: string, names: string[]): KernelModule[] {
  const base = `/lib/modules/${release}`;
  const depFile = join(base, "modules.dep");
  if (!existsSync(depFile)) throw new Error(`${depFile} is missing: ${INSTALL_HINT}`);
  const deps = new Map<string, { file: string; deps: string[] }>();
  const nameOf = (p: string) =>
    basename(p)
      .replace(/\.ko(\.(xz|zst|gz))?$/, "")
      .replace(/-/g, "_");
  for (const line of readFileSync(depFile, "utf8").split("\n")) {
    const [mod, rest] = line.split(":");
    if (!mod || rest === undefined) continue;
    deps.set(nameOf(mod), { file: join(base, mod), deps: rest.trim() ? rest.trim().split(/\s+/).map(nameOf) : [] });
  }
  const out: KernelModule[] = [];
  const seen = new Set<string>();
  const visit = (n: string) => {
    const key = n.replace(/-/g, "_");
    if (seen.has(key)) return;
    seen.add(key);
    const d = deps.get(key);
    if (!d) throw new Error(`kernel ${release} has no module ${n} (it may be built in: check /boot/config-${release})`);
    if (/\.ko\.(xz|zst|gz)$/.test(d.file)) throw new Error(`${d.file} is compressed; this helper loads uncompressed modules only`);
    for (const dep of [...d.deps].reverse()) visit(dep);
    out.push({ name: key, file: d.file });
  };
  for (const n of names) visit(n);
  return out;
}
