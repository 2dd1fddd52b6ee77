import { spawnSync } from "node:child_process";
import { chmod, link, lutimes, mkdir, symlink, utimes, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { CpioError } from "./errors.js";
import type { ReadEntry } from "./reader.js";

export interface ExtractResult {
  /** Entries not created: devices, fifos and sockets need root (or `mknod`/`mkfifo`). */
  skipped: { path: string; reason: string }[];
}

/**
 * Writes entries (from readArchive) under `dir`, like `cpio -idm`: modes, mtimes, symlinks,
 * hardlinks; device nodes and fifos through mknod/mkfifo when running as root. Owners are not
 * changed. Paths are checked again: nothing is written outside `dir`.
 */
export async function extractEntries(entries: ReadEntry[], dir: string): Promise<ExtractResult> {
  const skipped: ExtractResult["skipped"] = [];
  const root = process.getuid?.() === 0;
  const dirs: ReadEntry[] = [];
  for (const e of entries) {
    if (e.path.startsWith("/") || e.path.split("/").some((c) => c === ".." || c === "")) throw new CpioError("EPATH", `refusing to extract ${JSON.stringify(e.path)} outside the target directory`, e.path);
    const p = join(dir, e.path);
    switch (e.type) {
      case "dir":
        await mkdir(p, { recursive: true });
        dirs.push(e);
        break;
      case "file":
        if (e.linkTo) await link(join(dir, e.linkTo), p);
        else {
          await writeFile(p, e.data ?? new Uint8Array(0));
          await chmod(p, e.mode);
          await utimes(p, e.mtime, e.mtime);
        }
        break;
      case "symlink":
        await symlink(e.target!, p);
        await lutimes(p, e.mtime, e.mtime).catch(() => {});
        break;
      case "char":
      case "block":
      case "fifo": {
        if (!root && e.type !== "fifo") {
          skipped.push({ path: e.path, reason: `${e.type} devices need root` });
          break;
        }
        const args = e.type === "fifo" ? ["-m", (e.mode & 0o7777).toString(8), p] : ["-m", (e.mode & 0o7777).toString(8), p, e.type === "char" ? "c" : "b", String(e.rdevmajor), String(e.rdevminor)];
        const r = spawnSync(e.type === "fifo" ? "mkfifo" : "mknod", args, { encoding: "utf8" });
        if (r.status !== 0) skipped.push({ path: e.path, reason: (r.stderr || r.error?.message || "failed").trim() });
        break;
      }
      case "socket":
        skipped.push({ path: e.path, reason: "sockets cannot be created from an archive" });
        break;
    }
  }
  for (const d of dirs.reverse()) {
    const p = join(dir, d.path);
    await chmod(p, d.mode);
    await utimes(p, d.mtime, d.mtime);
  }
  return { skipped };
}
