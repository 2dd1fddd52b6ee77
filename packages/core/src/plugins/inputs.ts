import type { FetchResult, Fetcher } from "@fledge/fetch";
import type { BuildContext } from "../context.js";
import { FledgeError } from "../errors.js";

/**
 * One `[…]` table of fledge.lock: what an input of fledge.toml resolved to.
 * `source` and `version` repeat what fledge.toml asked for, so a changed request is noticed;
 * `url` is the download URL before mirrors and redirects (so the lock is the same on every
 * machine, whatever its mirrors); `sha256` pins the bytes.
 */
export interface LockEntry {
  /** `url` (busybox), `http` or `release` (agent). */
  source: string;
  /** Release version as written in fledge.toml (`latest`, `v0.2.0`). */
  version?: string;
  /** The tag a release version resolved to. */
  tag?: string;
  url: string;
  sha256: string;
}

/** An input resolved to verified bytes on this machine. */
export interface ResolvedInput {
  key: string;
  label: string;
  fetched: FetchResult;
  /** The lock entry to record; undefined for local files (they belong to the project). */
  entry?: LockEntry;
}

export interface ResolveOptions {
  /** Re-resolve even when the lock has a matching entry (fledge update). */
  refresh: boolean;
  warn(message: string): void;
  info(message: string): void;
}

/** Something a build downloads, declared from fledge.toml (busybox, the agent). */
export interface InputSpec {
  /** Table name in fledge.lock. */
  key: string;
  label: string;
  /** False for local files: nothing to pin, and a machine-specific sha256 would not travel. */
  lockable: boolean;
  /** What fledge.toml asks for, for messages ("release latest", "https://…"). */
  request: string;
  /** True when a lock entry was made for this same request. */
  matches(entry: LockEntry): boolean;
  /**
   * Gets verified bytes: from `entry` (a matching lock entry: no API call, same bytes) when
   * given, else by resolving afresh.
   */
  resolve(fetcher: Fetcher, entry: LockEntry | undefined, opts: ResolveOptions): Promise<ResolvedInput>;
}

const store = new WeakMap<BuildContext, Map<string, Promise<ResolvedInput>>>();

/** Records the resolution of a build's inputs (the lock plugin does this in beforeBuild). */
export function setResolvedInputs(ctx: BuildContext, inputs: Map<string, Promise<ResolvedInput>>): void {
  store.set(ctx, inputs);
}

/** The verified bytes of input `key` for this build. */
export async function resolvedInput(ctx: BuildContext, key: string): Promise<ResolvedInput> {
  const p = store.get(ctx)?.get(key);
  if (!p) throw new FledgeError("FLEDGE_INPUT", `input "${key}" was not resolved before the build stages ran`, { hint: "this is a bug in fledge or in a plugin that replaced fledge:lock" });
  return p;
}

/** A short description of an entry for messages. */
export function describeEntry(e: LockEntry): string {
  return e.source === "release" ? `release ${e.version} (${e.tag}) sha256:${e.sha256.slice(0, 12)}…` : `${e.url} sha256:${e.sha256.slice(0, 12)}…`;
}
