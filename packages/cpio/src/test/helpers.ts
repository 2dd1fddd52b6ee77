import { spawnSync } from "node:child_process";
import { createHash } from "node:crypto";
import type { CpioEntry } from "../entry.js";

export { rng } from "./rng.mjs";
import { rng } from "./rng.mjs";

const NAMES = ["bin", "etc", "usr", "lib", "a", "b-c", "Z", "x.y", "ünï", "long_name_here", "sp ace", "0", "9"];

/** A random tree: nested dirs, files (text, random bytes, empty), symlinks, hardlinks, devices, fifos. */
export function randomTree(seed: number, count = 60, opts: { devices?: boolean } = {}): CpioEntry[] {
  const r = rng(seed);
  const pick = <T>(a: T[]) => a[Math.floor(r() * a.length)]!;
  const dirs = [""];
  const files: string[] = [];
  const entries = new Map<string, CpioEntry>();
  for (let i = 0; i < count; i++) {
    const parent = pick(dirs);
    const path = (parent ? parent + "/" : "") + pick(NAMES) + (r() < 0.5 ? String(i) : "");
    if (entries.has(path) || dirs.includes(path)) continue;
    const k = r();
    let e: CpioEntry;
    if (k < 0.2) {
      e = { path, type: "dir", mode: pick([0o755, 0o700, 0o1777, 0o555]) };
      dirs.push(path);
    } else if (k < 0.65) {
      const size = pick([0, 1, 3, 4, 5, 100, 4096, 70000]);
      const data = new Uint8Array(size);
      const text = r() < 0.5;
      for (let j = 0; j < size; j++) data[j] = text ? 97 + ((j * 7 + i) % 26) : Math.floor(r() * 256);
      e = { path, type: "file", mode: pick([0o644, 0o755, 0o600, 0o4755, 0o444]), data };
      files.push(path);
    } else if (k < 0.75) e = { path, type: "symlink", mode: 0o777, target: pick(["busybox", "../lib/x", "/abs/target", "ünï"]) };
    else if (k < 0.82 && files.length) e = { path, type: "file", mode: 0o644, linkTo: pick(files) };
    else if (k < 0.9 && opts.devices !== false) e = { path, type: pick(["char", "block"] as const), mode: 0o600, major: Math.floor(r() * 300), minor: Math.floor(r() * 300) };
    else e = { path, type: "fifo", mode: 0o644 };
    if (dirs.some((d) => d !== "" && entries.get(d)?.type !== "dir" && path.startsWith(d + "/"))) continue;
    entries.set(path, e);
  }
  return [...entries.values()];
}

export function sha256(b: Uint8Array): string {
  return createHash("sha256").update(b).digest("hex");
}

export function run(cmd: string, args: string[], opts: { input?: Uint8Array; cwd?: string } = {}): { stdout: Buffer; stderr: string; status: number | null } {
  const r = spawnSync(cmd, args, { input: opts.input, cwd: opts.cwd, maxBuffer: 1 << 30 });
  return { stdout: r.stdout, stderr: r.stderr?.toString() ?? "", status: r.status };
}

export const isRoot = process.getuid?.() === 0;

/** Bytes that compress somewhat: text-like runs, random bytes and zeros, in random lengths. */
export function mixedBytes(seed: number, size: number): Uint8Array {
  const r = rng(seed);
  const out = new Uint8Array(size);
  let p = 0;
  while (p < size) {
    const n = Math.min(size - p, 1 + Math.floor(r() * 5000));
    const k = r();
    for (let i = 0; i < n; i++) out[p + i] = k < 0.5 ? 97 + ((i * 7 + n) % 26) : k < 0.8 ? Math.floor(r() * 256) : 0;
    p += n;
  }
  return out;
}
