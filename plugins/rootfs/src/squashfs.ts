import { spawn, spawnSync } from "node:child_process";
import { createHash } from "node:crypto";
import { createReadStream } from "node:fs";
import { stat } from "node:fs/promises";
import { delimiter, join } from "node:path";
import { Readable } from "node:stream";
import { pipeline } from "node:stream/promises";
import { FledgeError } from "@fledge/core";
import type { Ext4Entry } from "@fledge/ext4";
import { tarStream } from "./tar.js";

export const MKSQUASHFS_HINT = 'install Debian\'s squashfs-tools (apt-get install squashfs-tools; 4.5 or later, for -tar), or use [filesystem] type = "ext4", which needs no host tool';

/** mksquashfs on PATH, or undefined. */
export function findMksquashfs(env: NodeJS.ProcessEnv = process.env): string | undefined {
  const dirs = [...(env.PATH ?? "").split(delimiter), "/usr/sbin", "/sbin", "/usr/bin", "/bin"];
  for (const d of dirs) {
    if (!d) continue;
    const p = join(d, "mksquashfs");
    const r = spawnSync(p, ["-version"], { encoding: "utf8" });
    if (!r.error) return p;
  }
  return undefined;
}

export interface SquashfsOptions {
  mtime: number;
  /** zstd level, 1–22. */
  level: number;
  env: NodeJS.ProcessEnv;
}

/**
 * Writes the entries as a squashfs image with `mksquashfs -tar`, fed a tar stream: owners,
 * modes, devices and times come from the entries (no root, no files staged on disk), and
 * mksquashfs's output is reproducible (fixed times, no host metadata).
 */
export async function writeSquashfs(entries: Ext4Entry[], out: string, opts: SquashfsOptions): Promise<{ size: number; sha256: string }> {
  const bin = findMksquashfs(opts.env);
  if (!bin) throw new FledgeError("FLEDGE_ROOTFS", '[filesystem] type = "squashfs" needs mksquashfs, which is not installed', { hint: MKSQUASHFS_HINT });
  const sized: Ext4Entry[] = [];
  for (const e of entries) {
    if (e.type === "file" && e.file && e.size === undefined && e.linkTo === undefined) sized.push({ ...e, size: (await stat(e.file)).size });
    else sized.push(e);
  }
  const t = String(opts.mtime);
  const args = [
    "-",
    out,
    "-tar",
    "-noappend",
    "-no-progress",
    "-quiet",
    "-no-xattrs",
    "-comp",
    "zstd",
    "-Xcompression-level",
    String(opts.level),
    "-mkfs-time",
    t,
    "-all-time",
    t,
    "-root-mode",
    "755",
    "-root-uid",
    "0",
    "-root-gid",
    "0",
    "-processors",
    "1",
  ];
  for (const e of sized) if (e.type === "socket") args.push("-p", `${e.path} I ${t} ${(e.mode & 0o7777).toString(8)} ${e.uid ?? 0} ${e.gid ?? 0} s`);
  const env = { ...opts.env };
  delete env.SOURCE_DATE_EPOCH; // the times are given explicitly; mksquashfs refuses both at once
  const child = spawn(bin, args, { stdio: ["pipe", "pipe", "pipe"], env });
  let stderr = "";
  child.stderr.setEncoding("utf8").on("data", (d: string) => (stderr += d));
  child.stdout.resume();
  const exited = new Promise<number | null>((resolve, reject) => {
    child.on("error", reject);
    child.on("close", resolve);
  });
  try {
    await pipeline(Readable.from(tarStream(sized, opts.mtime)), child.stdin);
  } catch (err) {
    child.kill();
    await exited.catch(() => {});
    throw new FledgeError("FLEDGE_ROOTFS", `writing the squashfs image failed: ${(err as Error).message}${stderr ? `\nmksquashfs: ${stderr.trim()}` : ""}`);
  }
  const code = await exited;
  if (code !== 0) throw new FledgeError("FLEDGE_ROOTFS", `mksquashfs failed (exit ${code}): ${stderr.trim()}`, { hint: MKSQUASHFS_HINT });
  const hash = createHash("sha256");
  let size = 0;
  await pipeline(createReadStream(out), async (src: AsyncIterable<Buffer>) => {
    for await (const c of src) {
      hash.update(c);
      size += c.length;
    }
  });
  return { size, sha256: hash.digest("hex") };
}
