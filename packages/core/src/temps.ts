import { randomBytes } from "node:crypto";
import { lstat, readdir, rm } from "node:fs/promises";
import { basename, dirname, join } from "node:path";

/** `.fledge-tmp-<pid>-<12 hex>-<name>`: fledge's own temp files, recognised by this pattern only. */
const TEMP = /^\.fledge-tmp-(\d{1,10})-([0-9a-f]{12})-(.+)$/;

/** A temp path beside `dest` that carries this process's id, so a later build can tell it is stale. */
export function tempPathFor(dest: string): string {
  const prefix = `.fledge-tmp-${process.pid}-${randomBytes(6).toString("hex")}-`;
  let name = basename(dest);
  // Keep the temp's name within NAME_MAX (255 bytes) whatever the output's name.
  while (Buffer.byteLength(prefix + name) > 255) name = name.slice(0, -1);
  return join(dirname(dest), prefix + (name || "out"));
}

/** The pid in a fledge temp name, or undefined when the name is not one of fledge's temps. */
export function tempOwner(name: string): number | undefined {
  const m = TEMP.exec(name);
  return m ? Number(m[1]) : undefined;
}

/** Whether a process with this id is running on this machine (one we may not signal counts too). */
export function processAlive(pid: number): boolean {
  if (pid === process.pid) return true;
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === "EPERM";
  }
}

/**
 * Removes fledge's own temp files in `dir` whose process is gone (a build killed with -9, a
 * power cut): regular files whose name matches `.fledge-tmp-<pid>-<12 hex>-<name>` and nothing
 * else. Returns the names removed. Never follows links, never fails the build.
 */
export async function removeStaleTemps(dir: string): Promise<string[]> {
  let names: string[];
  try {
    names = await readdir(dir);
  } catch {
    return [];
  }
  const removed: string[] = [];
  for (const name of names) {
    const pid = tempOwner(name);
    if (pid === undefined || processAlive(pid)) continue;
    const p = join(dir, name);
    try {
      if (!(await lstat(p)).isFile()) continue;
      await rm(p);
      removed.push(name);
    } catch {
      /* gone already, or not ours to remove */
    }
  }
  return removed;
}
