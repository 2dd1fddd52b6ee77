import { rename, rm, writeFile } from "node:fs/promises";
import { readRegularFile } from "@fledge/safe-fs";
import { basename } from "node:path";
import { parse as parseToml } from "smol-toml";
import { FledgeError } from "./errors.js";
import { tempPathFor } from "./temps.js";

export const LOCK_FILE = "fledge.lock";
export const LOCK_VERSION = 1;

/**
 * One `[…]` table of fledge.lock: what an input resolved to. Every field is a string. `source`
 * names the resolver: `url` (`url`, `sha256`), `release` (`repo`, `asset`, `version` as
 * written, the `tag` it resolved to, `url`, `sha256`), or a plugin's own (`oci`, with the
 * fields its resolver records). `url` is always the URL before mirrors and redirects, so the
 * lock is the same on every machine. `scope` is absent for inputs of `fledge build`.
 */
export interface LockEntry {
  source: string;
  url?: string;
  sha256?: string;
  version?: string;
  tag?: string;
  repo?: string;
  asset?: string;
  scope?: string;
  [field: string]: string | undefined;
}

/** fledge.lock: input name → what it resolved to. */
export interface Lockfile {
  version: number;
  inputs: Record<string, LockEntry>;
}

/** Reads fledge.lock; undefined when there is none. */
export async function readLock(path: string): Promise<Lockfile | undefined> {
  let text: string;
  try {
    // regular files only: a FIFO named fledge.lock must not hang the build
    text = (await readRegularFile(path, { maxBytes: 16 * 2 ** 20 })).toString("utf8");
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === "ENOENT") return undefined;
    throw new FledgeError("FLEDGE_LOCK", (err as Error).message, { cause: err, hint: `${basename(path)} must be a regular file; delete it and run "fledge update"` });
  }
  const bad = (what: string) => new FledgeError("FLEDGE_LOCK", `${path}: ${what}`, { hint: `delete ${basename(path)} and run "fledge update" to write a new one` });
  let data: Record<string, unknown>;
  try {
    data = parseToml(text) as Record<string, unknown>;
  } catch (err) {
    throw bad(`not valid TOML: ${(err as Error).message.split("\n")[0]}`);
  }
  if (data.version !== LOCK_VERSION) throw bad(`version = ${JSON.stringify(data.version)} is not ${LOCK_VERSION}, the only lock version this fledge reads`);
  const inputs: Record<string, LockEntry> = {};
  for (const [key, v] of Object.entries(data)) {
    if (key === "version") continue;
    if (!v || typeof v !== "object" || Array.isArray(v)) throw bad(`${key} is not a table`);
    const e = v as Record<string, unknown>;
    for (const [k, f] of Object.entries(e)) if (typeof f !== "string") throw bad(`[${key}] ${k} is not a string`);
    const entry = e as LockEntry;
    if (!entry.source) throw bad(`[${key}] needs a source`);
    if (entry.sha256 !== undefined && !/^[0-9a-f]{64}$/.test(entry.sha256)) throw bad(`[${key}] sha256 must be 64 lowercase hex digits`);
    if ((entry.source === "url" || entry.source === "release") && (!entry.url || !entry.sha256)) throw bad(`[${key}] needs url and sha256`);
    inputs[key] = entry;
  }
  return { version: LOCK_VERSION, inputs };
}

const q = (s: string) => JSON.stringify(s); // JSON string escapes are valid TOML basic-string escapes
const ORDER = ["source", "scope", "repo", "asset", "version", "tag", "url", "sha256"];

/** The lock as text: tables sorted by name, fields in a fixed order, nothing machine-specific. */
export function formatLock(lock: Lockfile): string {
  let out = "# fledge.lock: what the inputs of fledge.toml resolved to. Written by fledge; commit it.\n" + '# Builds reuse these exact bytes; "fledge update" resolves them again.\n' + `version = ${LOCK_VERSION}\n`;
  for (const key of Object.keys(lock.inputs).sort()) {
    const e = lock.inputs[key]!;
    out += `\n[${/^[A-Za-z0-9_-]+$/.test(key) ? key : q(key)}]\n`;
    const fields = Object.keys(e)
      .filter((k) => e[k] !== undefined)
      .sort((a, b) => {
        const ia = ORDER.indexOf(a);
        const ib = ORDER.indexOf(b);
        if (ia >= 0 || ib >= 0) return (ia < 0 ? ORDER.length : ia) - (ib < 0 ? ORDER.length : ib);
        return a < b ? -1 : a > b ? 1 : 0;
      });
    for (const k of fields) out += `${k} = ${q(e[k]!)}\n`;
  }
  return out;
}

/** Writes fledge.lock atomically (temp file beside it, then rename). */
export async function writeLock(path: string, lock: Lockfile): Promise<void> {
  const temp = tempPathFor(path);
  try {
    await writeFile(temp, formatLock(lock));
    await rename(temp, path);
  } catch (err) {
    await rm(temp, { force: true });
    throw err;
  }
}

/** A short description of an entry for messages. */
export function describeEntry(e: LockEntry): string {
  const sha = e.sha256 ? ` sha256:${e.sha256.slice(0, 12)}…` : "";
  if (e.source === "release") return `release ${e.version} (${e.tag})`;
  if (e.source === "url") return `${e.url}${sha}`;
  const rest = Object.entries(e)
    .filter(([k]) => k !== "source" && k !== "scope")
    .map(([k, v]) => `${k} ${v}`)
    .join(", ");
  return `${e.source}${rest ? ` (${rest})` : ""}`;
}
