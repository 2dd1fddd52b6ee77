import { randomBytes } from "node:crypto";
import { readFile, rename, rm, writeFile } from "node:fs/promises";
import { basename, dirname, join } from "node:path";
import { parse as parseToml } from "smol-toml";
import { loadFledgeConfig, type FledgeConfig } from "@fledge/config";
import { Fetcher, type FetcherOptions } from "@fledge/fetch";
import type { Builder } from "../builder.js";
import type { BuildContext } from "../context.js";
import { FledgeError } from "../errors.js";
import { agentInput } from "./agent.js";
import { busyboxInput } from "./busybox.js";
import { describeEntry, setResolvedInputs, type InputSpec, type LockEntry, type ResolvedInput } from "./inputs.js";
import { PLUGIN } from "./names.js";

export const LOCK_FILE = "fledge.lock";
export const LOCK_VERSION = 1;

/** fledge.lock: input name (`agent`, `busybox`) → what it resolved to. */
export interface Lockfile {
  version: number;
  inputs: Record<string, LockEntry>;
}

/** How a build treats fledge.lock. */
export type LockMode =
  /** Reuse matching entries, re-resolve the rest, rewrite the lock when it changed. */
  | "auto"
  /** Fail when the lock is missing or would change; never write it (CI). */
  | "locked"
  /** Ignore the entries, resolve everything again and rewrite the lock. */
  | "update";

export function lockPath(config: Pick<FledgeConfig, "rootDir">): string {
  return join(config.rootDir, LOCK_FILE);
}

/** The inputs fledge.toml declares, in lock order. */
export function configInputs(config: FledgeConfig): InputSpec[] {
  return [agentInput(config), busyboxInput(config)].filter((i): i is InputSpec => !!i).sort((a, b) => (a.key < b.key ? -1 : 1));
}

/** Reads fledge.lock; undefined when there is none. */
export async function readLock(path: string): Promise<Lockfile | undefined> {
  let text: string;
  try {
    text = await readFile(path, "utf8");
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === "ENOENT") return undefined;
    throw err;
  }
  const bad = (what: string) =>
    new FledgeError("FLEDGE_LOCK", `${path}: ${what}`, { hint: `delete ${basename(path)} and run "fledge update" to write a new one` });
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
    const e = v as Record<string, unknown>;
    const str = (k: string) => (typeof e?.[k] === "string" ? (e[k] as string) : undefined);
    const source = str("source");
    const url = str("url");
    const sha256 = str("sha256");
    if (!source || !url || !sha256 || !/^[0-9a-f]{64}$/.test(sha256)) throw bad(`[${key}] needs source, url and a sha256 of 64 lowercase hex digits`);
    inputs[key] = { source, url, sha256, ...(str("version") ? { version: str("version") } : {}), ...(str("tag") ? { tag: str("tag") } : {}) };
  }
  return { version: LOCK_VERSION, inputs };
}

const q = (s: string) => JSON.stringify(s); // JSON string escapes are valid TOML basic-string escapes

/** The lock as text: tables sorted by name, fields in a fixed order, nothing machine-specific. */
export function formatLock(lock: Lockfile): string {
  let out =
    "# fledge.lock: what the inputs of fledge.toml resolved to. Written by fledge; commit it.\n" +
    '# Builds reuse these exact bytes; "fledge update" resolves them again.\n' +
    `version = ${LOCK_VERSION}\n`;
  for (const key of Object.keys(lock.inputs).sort()) {
    const e = lock.inputs[key]!;
    out += `\n[${/^[A-Za-z0-9_-]+$/.test(key) ? key : q(key)}]\nsource = ${q(e.source)}\n`;
    if (e.version !== undefined) out += `version = ${q(e.version)}\n`;
    if (e.tag !== undefined) out += `tag = ${q(e.tag)}\n`;
    out += `url = ${q(e.url)}\nsha256 = ${q(e.sha256)}\n`;
  }
  return out;
}

/** Writes fledge.lock atomically (temp file beside it, then rename). */
export async function writeLock(path: string, lock: Lockfile): Promise<void> {
  const temp = join(dirname(path), `.fledge-tmp-${randomBytes(6).toString("hex")}-${basename(path)}`);
  try {
    await writeFile(temp, formatLock(lock));
    await rename(temp, path);
  } catch (err) {
    await rm(temp, { force: true });
    throw err;
  }
}

export interface InputsResolution {
  /** Input key → its resolution (settled or not). */
  inputs: Map<string, Promise<ResolvedInput>>;
  /** Resolves to the lock these inputs produce, once all are resolved; rejects like them. */
  lock: Promise<Lockfile>;
}

/**
 * Resolves every input against the lock. Offline misses are collected so the error lists
 * everything missing, not just the first.
 */
export function resolveInputs(
  specs: InputSpec[],
  fetcher: Fetcher,
  existing: Lockfile | undefined,
  mode: LockMode,
  log: { warn(m: string): void; info(m: string): void },
  lockFile: string,
): InputsResolution {
  const lockable = specs.filter((s) => s.lockable);
  if (mode === "locked") {
    const hint = `run "fledge update" (or a build without --locked) and commit ${LOCK_FILE}`;
    if (!existing && lockable.length)
      throw new FledgeError("FLEDGE_LOCKED", `--locked: ${lockFile} is missing, so ${lockable.map((s) => s.label).join(" and ")} would be resolved afresh`, { hint });
    const problems: string[] = [];
    for (const s of lockable) {
      const e = existing?.inputs[s.key];
      if (!e) problems.push(`${s.label}: no [${s.key}] entry for ${s.request}`);
      else if (!s.matches(e)) problems.push(`${s.label}: fledge.toml asks for ${s.request}, the lock has ${describeEntry(e)}`);
    }
    for (const key of Object.keys(existing?.inputs ?? {})) if (!lockable.some((s) => s.key === key)) problems.push(`[${key}] is no longer an input of fledge.toml`);
    if (problems.length) throw new FledgeError("FLEDGE_LOCKED", `--locked: ${lockFile} is out of date:\n  ${problems.join("\n  ")}`, { hint });
  }
  const inputs = new Map<string, Promise<ResolvedInput>>();
  for (const s of specs) {
    const e = mode !== "update" ? existing?.inputs[s.key] : undefined;
    const entry = e && s.lockable && s.matches(e) ? e : undefined;
    if (e && !entry && s.lockable) log.info(`${LOCK_FILE}: ${s.label} changed in fledge.toml (now ${s.request}); resolving it again`);
    const p = s.resolve(fetcher, entry, { refresh: mode === "update", warn: log.warn, info: log.info }).catch((err: Error & { code?: string }) => {
      if (entry && err?.code === "ECHECKSUM")
        throw new FledgeError("ECHECKSUM", err.message, {
          cause: err,
          hint: `${LOCK_FILE} pins ${s.label} to sha256:${entry.sha256}; if the new content is expected, run "fledge update"`,
        });
      throw err;
    });
    p.catch(() => {}); // observed below and by the stage that uses it
    inputs.set(s.key, p);
  }
  const lock = (async () => {
    const settled = await Promise.allSettled([...inputs.values()]);
    const errors = settled.flatMap((r) => (r.status === "rejected" ? [r.reason as Error & { code?: string; hint?: string }] : []));
    if (errors.length) {
      const offline = errors.filter((e) => e.code === "EOFFLINE");
      if (offline.length === errors.length && offline.length > 1)
        throw new FledgeError("FLEDGE_OFFLINE", `--offline: ${offline.length} inputs are not available without the network:\n  ${offline.map((e) => e.message).join("\n  ")}`, {
          hint: 'run a build once with the network (it fills the cache and fledge.lock), or seed the cache with "fledge cache add <file> [--url <url>]"',
        });
      throw errors.find((e) => e.code !== "EOFFLINE") ?? errors[0];
    }
    const out: Lockfile = { version: LOCK_VERSION, inputs: {} };
    for (const r of settled) {
      const v = (r as PromiseFulfilledResult<ResolvedInput>).value;
      if (v.entry) out.inputs[v.key] = v.entry;
    }
    return out;
  })();
  lock.catch(() => {});
  return { inputs, lock };
}

const canonical = (e: LockEntry | undefined) => (e ? JSON.stringify([e.source, e.version, e.tag, e.url, e.sha256]) : "");

/** What changed between two locks, for messages. */
export function lockChanges(before: Lockfile | undefined, after: Lockfile): { key: string; from?: LockEntry; to?: LockEntry }[] {
  const keys = [...new Set([...Object.keys(before?.inputs ?? {}), ...Object.keys(after.inputs)])].sort();
  return keys
    .map((key) => ({ key, from: before?.inputs[key], to: after.inputs[key] }))
    .filter(({ from, to }) => canonical(from) !== canonical(to));
}

const lockModes = new WeakMap<BuildContext, LockMode>();

/**
 * Resolves the build's inputs (busybox, the agent) in `beforeBuild`, after the cheap checks
 * of the other plugins and all at once, using fledge.lock beside fledge.toml; writes the
 * lock (atomically) once the build has succeeded, when it changed.
 */
export class LockPlugin {
  readonly name = PLUGIN.lock;
  apply(builder: Builder): void {
    const { hooks } = builder;
    let resolution: InputsResolution | undefined;
    let before: Lockfile | undefined;
    hooks.beforeBuild.tapPromise({ name: this.name, stage: 100 }, async (ctx) => {
      const strategy = hooks.strategy.get(ctx.config.strategy);
      if (!strategy?.isUsed()) return; // the builder reports the unknown strategy next
      const mode: LockMode = ctx.options.locked ? "locked" : "auto";
      lockModes.set(ctx, mode);
      const file = lockPath(ctx.config);
      before = await readLock(file);
      resolution = resolveInputs(configInputs(ctx.config), ctx.fetcher, before, mode, { warn: (m) => ctx.warn(m, this.name), info: (m) => ctx.info(m, this.name) }, file);
      setResolvedInputs(ctx, resolution.inputs);
      await resolution.lock;
    });
    hooks.done.tapPromise(this.name, async () => {
      const ctx = builder.context;
      if (!resolution || lockModes.get(ctx) === "locked") return;
      const after = await resolution.lock;
      const file = lockPath(ctx.config);
      if (!before && Object.keys(after.inputs).length === 0) return; // nothing to pin: no lock file
      if (before && formatLock(before) === formatLock(after)) return;
      try {
        await writeLock(file, after);
        ctx.info(`${before ? "updated" : "wrote"} ${file}`, this.name);
      } catch (err) {
        ctx.warn(`could not write ${file}: ${(err as Error).message}`, this.name);
      }
    });
  }
}

export interface UpdateLockRequest {
  /** fledge.toml path. */
  config: string;
  cacheDir?: string;
  env?: NodeJS.ProcessEnv;
  http?: FetcherOptions["http"];
  onLog?: (level: "debug" | "info" | "warn", message: string) => void;
  onProgress?: FetcherOptions["onProgress"];
}

export interface UpdateLockResult {
  path: string;
  lock: Lockfile;
  changes: { key: string; from?: LockEntry; to?: LockEntry }[];
  written: boolean;
}

/** `fledge update`: resolves every input afresh (downloading into the cache) and rewrites fledge.lock. */
export async function updateLock(req: UpdateLockRequest): Promise<UpdateLockResult> {
  const config = await loadFledgeConfig(req.config);
  const log = req.onLog ?? (() => {});
  const fetcher = new Fetcher({ cacheDir: req.cacheDir, env: req.env, mirrors: config.fetch.mirrors, http: req.http, onLog: log, onProgress: req.onProgress });
  const path = lockPath(config);
  try {
    const before = await readLock(path);
    const r = resolveInputs(configInputs(config), fetcher, before, "update", { warn: (m) => log("warn", m), info: (m) => log("info", m) }, path);
    const lock = await r.lock;
    const changes = lockChanges(before, lock);
    const write = before ? formatLock(before) !== formatLock(lock) : Object.keys(lock.inputs).length > 0;
    if (write) await writeLock(path, lock);
    return { path, lock, changes, written: write };
  } finally {
    await fetcher.close();
  }
}
