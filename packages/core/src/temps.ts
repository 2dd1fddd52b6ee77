import { dirname, join } from "node:path";
import { reapStaleTemps, tempName } from "@fledge/safe-fs";

/**
 * A temp path beside `dest`, named by @fledge/safe-fs's one recogniser for every file fledge
 * writes then renames: `.fledge-tmp-<pid>-<host8>-<12 hex>-<name>` (cut to NAME_MAX), so a
 * later build (and `fledge cache prune`) can tell a leftover of a dead process.
 */
export function tempPathFor(dest: string): string {
  const name = dest.split("/").pop() || "out";
  return join(dirname(dest), tempName(name));
}

/**
 * Removes fledge's own temps in `dir` whose process is gone (a build killed with -9, a power
 * cut): regular files whose name @fledge/safe-fs recognises, nothing else. Returns the names.
 */
export async function removeStaleTemps(dir: string): Promise<string[]> {
  const r = await reapStaleTemps(dir);
  return r.removed.map((p) => p.slice(dir.length + 1));
}
