import { spawn } from "node:child_process";
import { createHash, randomBytes } from "node:crypto";
import { lstatSync, readdirSync, rmSync } from "node:fs";
import { lstat, readdir, rm } from "node:fs/promises";
import { hostname } from "node:os";
import { join } from "node:path";

/**
 * Every file fledge writes and then renames into place starts as a temp named
 * `.fledge-tmp-<pid>-<host8>-<rand12>[-<label>]`:
 * - `<pid>` the writing process, so a later run can tell a leftover of a dead process from a
 *   write in progress;
 * - `<host8>` the first 8 hex digits of sha256(hostname), because a cache directory may be shared
 *   over NFS or between containers, where a pid means nothing;
 * - `<rand12>` 12 random hex digits (two temps of one process never collide);
 * - `<label>` optional, for people (the output's file name, a segment key); cut so the whole
 *   name fits NAME_MAX (255 bytes).
 * Nothing else ever matches, so reaping never touches a file fledge did not create.
 */
export const TEMP_PREFIX = ".fledge-tmp-";
const NAME_MAX = 255;
const TEMP_RE = /^\.fledge-tmp-([1-9][0-9]{0,9})-([0-9a-f]{8})-([0-9a-f]{12})(?:-(.+))?$/s;

let hostTagCache: string | undefined;
/** This machine's tag in temp names. */
export function hostTag(): string {
  hostTagCache ??= createHash("sha256").update(hostname()).digest("hex").slice(0, 8);
  return hostTagCache;
}

/** A fresh temp file name (no directory) owned by this process. */
export function tempName(label?: string): string {
  const base = `${TEMP_PREFIX}${process.pid}-${hostTag()}-${randomBytes(6).toString("hex")}`;
  if (!label) return base;
  let l = label.replace(/[/\0]/g, "_");
  const room = NAME_MAX - Buffer.byteLength(base) - 1;
  while (Buffer.byteLength(l) > room) l = l.slice(0, -1);
  return l ? `${base}-${l}` : base;
}

export interface TempNameParts {
  pid: number;
  host: string;
  label?: string;
}

/** The parts of a name made by `tempName`, or undefined for any other name. */
export function parseTempName(name: string): TempNameParts | undefined {
  const m = TEMP_RE.exec(name);
  if (!m) return undefined;
  return { pid: Number(m[1]), host: m[2]!, ...(m[4] !== undefined ? { label: m[4] } : {}) };
}

/** True when a process with this pid exists on this machine (EPERM: it exists, owned by someone else). */
export function processAlive(pid: number): boolean {
  if (pid === process.pid) return true;
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === "EPERM";
  }
}

export interface ReapOptions {
  /** A temp of another host is stale after this long without a write (default 24 h). */
  foreignMaxAgeMs?: number;
  /** Also remove this host's temps older than this even when their pid is alive (pid reuse); default 7 days. */
  maxAgeMs?: number;
  now?: number;
}

export interface ReapResult {
  removed: string[];
  freedBytes: number;
}

/**
 * Removes, directly in `dir` (not recursively), the temps of processes that are gone: regular
 * files (never symlinks or directories) whose name `parseTempName` accepts and whose owner is not
 * running on this host, or that belong to another host and have not been written for a day.
 * Everything else in `dir` is left alone. Missing `dir` is fine. Never throws for one file.
 */
export async function reapStaleTemps(dir: string, opts: ReapOptions = {}): Promise<ReapResult> {
  const now = opts.now ?? Date.now();
  const foreignMax = opts.foreignMaxAgeMs ?? 24 * 3_600_000;
  const maxAge = opts.maxAgeMs ?? 7 * 24 * 3_600_000;
  const out: ReapResult = { removed: [], freedBytes: 0 };
  let names: string[];
  try {
    names = await readdir(dir);
  } catch {
    return out;
  }
  const me = hostTag();
  for (const name of names) {
    const t = parseTempName(name);
    if (!t) continue;
    const file = join(dir, name);
    const st = await lstat(file).catch(() => undefined);
    if (!st?.isFile()) continue;
    const age = now - st.mtimeMs;
    const stale = t.host === me ? !processAlive(t.pid) || age > maxAge : age > foreignMax;
    if (!stale) continue;
    try {
      await rm(file);
      out.removed.push(file);
      out.freedBytes += st.size;
    } catch {
      // someone else removed or renamed it first
    }
  }
  return out;
}

/**
 * Synchronously removes this process's own temps directly in each of `dirs` (for a SIGINT or
 * SIGTERM handler, which must not wait: work still in flight — a compression worker, a download —
 * cannot be asked to finish first). Returns how many were removed. Never throws.
 */
export function removeOwnTempsSync(dirs: Iterable<string>): number {
  let n = 0;
  const me = hostTag();
  for (const dir of new Set(dirs)) {
    let names: string[];
    try {
      names = readdirSync(dir);
    } catch {
      continue;
    }
    for (const name of names) {
      const t = parseTempName(name);
      if (!t || t.pid !== process.pid || t.host !== me) continue;
      try {
        if (!lstatSync(join(dir, name)).isFile()) continue;
        rmSync(join(dir, name), { force: true });
        n++;
      } catch {
        // gone already
      }
    }
  }
  return n;
}

/**
 * For a signal handler, after `removeOwnTempsSync`: compression workers and downloads still in
 * flight may create a temp between that scan and the process's exit. This starts a tiny detached
 * shell that waits for this process to be gone, then removes this process's temps (regular files
 * named `.fledge-tmp-<this pid>-<this host>-…`) from `dirs`, and exits. POSIX only; a no-op where
 * there is no /bin/sh.
 */
export function removeOwnTempsAfterExit(dirs: Iterable<string>): void {
  const list = [...new Set(dirs)];
  if (!list.length || process.platform === "win32") return;
  const prefix = `${TEMP_PREFIX}${process.pid}-${hostTag()}-`;
  const script =
    'p=$1; pre=$2; shift 2; n=0; while kill -0 "$p" 2>/dev/null && [ $n -lt 600 ]; do sleep 0.05; n=$((n+1)); done; ' +
    'for d in "$@"; do for f in "$d/$pre"*; do if [ -f "$f" ] && [ ! -L "$f" ]; then rm -f -- "$f"; fi; done; done';
  try {
    spawn("/bin/sh", ["-c", script, "fledge-janitor", String(process.pid), prefix, ...list], { detached: true, stdio: "ignore" }).unref();
  } catch {
    // best effort: the next build or `fledge cache prune` removes what is left
  }
}
