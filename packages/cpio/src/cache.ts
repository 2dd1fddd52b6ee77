import { createHash } from "node:crypto";
import { readFile as readFileCb } from "node:fs";
import { lstat, open, mkdir, readdir, rename, rm, utimes } from "node:fs/promises";
import { reapStaleTemps, tempName } from "@fledge/safe-fs";
import { promisify } from "node:util";

const readFile = promisify(readFileCb);
import { dirname, join } from "node:path";
import { SEGMENT_FILE_HEADER } from "./jobs.js";

/**
 * Compressed segments keyed by sha256(codec id, level, uncompressed bytes). An entry is the
 * sha256 of its payload followed by the payload; one that does not verify is dropped and
 * recomputed, so a damaged cache can cost time but never change an artifact. Writes go to a temp
 * file renamed into place (atomic on one file system).
 */
export class SegmentCache {
  constructor(readonly dir: string) {}

  path(key: string): string {
    return join(this.dir, key.slice(0, 2), `${key}.seg`);
  }

  tempPath(key: string): string {
    return join(this.dir, "tmp", tempName(key));
  }

  /** The payload, or undefined when absent or damaged (a damaged entry is removed). */
  async get(key: string): Promise<Uint8Array | undefined> {
    let buf: Buffer;
    try {
      buf = await readFile(this.path(key));
    } catch {
      return undefined;
    }
    const payload = buf.subarray(SEGMENT_FILE_HEADER);
    if (buf.length < SEGMENT_FILE_HEADER || !createHash("sha256").update(payload).digest().equals(buf.subarray(0, SEGMENT_FILE_HEADER))) {
      await rm(this.path(key), { force: true }).catch(() => {});
      return undefined;
    }
    await this.touch(key);
    return payload;
  }

  /** Checks an entry's payload hash, streaming; returns the payload size (undefined: absent or damaged, then removed). */
  async verify(key: string): Promise<number | undefined> {
    const size = await verifySegmentFile(this.path(key), true);
    if (size !== undefined) await this.touch(key);
    return size;
  }

  /** Marks an entry as used now, so `prune --older-than` keeps what builds still use. */
  async touch(key: string): Promise<void> {
    const now = new Date();
    await utimes(this.path(key), now, now).catch(() => {});
  }

  async put(key: string, payload: Uint8Array): Promise<void> {
    const tmp = this.tempPath(key);
    if (!this.#made.has(dirname(tmp))) {
      await mkdir(dirname(tmp), { recursive: true });
      this.#made.add(dirname(tmp));
    }
    const digest = createHash("sha256").update(payload).digest();
    try {
      const fh = await open(tmp, "w");
      try {
        await fh.writev([digest, payload]);
      } finally {
        await fh.close();
      }
      await this.adopt(key, tmp);
    } catch (err) {
      await rm(tmp, { force: true }).catch(() => {});
      throw err;
    }
  }

  /** Moves a finished segment file (already in entry format) into place. */
  async adopt(key: string, tmp: string): Promise<void> {
    const final = this.path(key);
    const dir = dirname(final);
    if (!this.#made.has(dir)) {
      await mkdir(dir, { recursive: true });
      this.#made.add(dir);
    }
    await rename(tmp, final);
  }

  readonly #made = new Set<string>();
}

/** Streams a segment file, checking sha256(payload) against its header; returns the payload size. */
export async function verifySegmentFile(path: string, removeIfBad = false): Promise<number | undefined> {
  let fh;
  try {
    fh = await open(path, "r");
  } catch {
    return undefined;
  }
  let ok = false;
  let size = 0;
  try {
    const head = Buffer.alloc(SEGMENT_FILE_HEADER);
    const { bytesRead } = await fh.read(head, 0, SEGMENT_FILE_HEADER, 0);
    if (bytesRead === SEGMENT_FILE_HEADER) {
      const h = createHash("sha256");
      const buf = Buffer.allocUnsafe(1 << 20);
      for (;;) {
        const r = await fh.read(buf, 0, buf.length, SEGMENT_FILE_HEADER + size);
        if (r.bytesRead === 0) break;
        h.update(buf.subarray(0, r.bytesRead));
        size += r.bytesRead;
      }
      ok = h.digest().equals(head);
    }
  } finally {
    await fh.close();
  }
  if (!ok && removeIfBad) await rm(path, { force: true }).catch(() => {});
  return ok ? size : undefined;
}

export interface SegmentPruneResult {
  removed: number;
  freedBytes: number;
  kept: number;
}

/**
 * Removes cached segments not used for `olderThanMs` (all of them when undefined), and temp
 * files of builds that are gone (`@fledge/safe-fs`'s `reapStaleTemps`). Only names this cache
 * makes are touched (`<2 hex>/<64 hex>.seg`, temps named by `tempName()`); anything else a user
 * put in the directory stays.
 */
export async function pruneSegments(dir: string, olderThanMs?: number, now = Date.now()): Promise<SegmentPruneResult> {
  const result: SegmentPruneResult = { removed: 0, freedBytes: 0, kept: 0 };
  for (const sub of await readdir(dir).catch(() => [] as string[])) {
    if (sub === "tmp") {
      const r = await reapStaleTemps(join(dir, sub), { now });
      result.removed += r.removed.length;
      result.freedBytes += r.freedBytes;
      continue;
    }
    if (!/^[0-9a-f]{2}$/.test(sub)) continue;
    const subdir = join(dir, sub);
    for (const name of await readdir(subdir).catch(() => [] as string[])) {
      if (!/^[0-9a-f]{64}\.seg$/.test(name) || name.slice(0, 2) !== sub) continue;
      const file = join(subdir, name);
      const st = await lstat(file).catch(() => undefined);
      if (!st?.isFile()) continue;
      const age = now - st.mtimeMs;
      if (olderThanMs === undefined || age >= olderThanMs) {
        await rm(file, { force: true });
        result.removed++;
        result.freedBytes += st.size;
      } else result.kept++;
    }
  }
  return result;
}
