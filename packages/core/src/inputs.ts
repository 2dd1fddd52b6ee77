import { resolveGitHubRelease, normalizeSha256, type Fetcher, type FetchResult } from "@fledge/fetch";
import type { BlobRequest, FetchedFile } from "./context.js";
import { FledgeError } from "./errors.js";
import { describeEntry, formatLock, LOCK_FILE, readLock, writeLock, type LockEntry, type Lockfile } from "./lockfile.js";

/** What every input declares. */
export interface InputBase {
  /**
   * The input's table in fledge.lock, unique in the build: `busybox`, `agent`,
   * `image:docker.io/library/nginx:alpine`. Letters, digits and `_ - . : / @ +`.
   */
  name: string;
  /** For messages and progress (default `name`). */
  label?: string;
  /**
   * Who pins it: `build` (default) for what `fledge build` needs. Another command (e.g. one that
   * boots the artifact and needs a kernel) uses its own scope, so builds keep its entries.
   */
  scope?: string;
}

/** (a) A file at a URL: `http(s)://` (cached, locked), `file://` or a host path (read in place, not locked). */
export interface UrlInput extends InputBase {
  url: string;
  /** Expected sha256 (`sha256:<hex>` or hex). Without one, fledge.lock pins what was downloaded. */
  sha256?: string;
  /** The fledge.toml key that would hold the checksum, for the "not verified" warning. */
  checksumKey?: string;
}

/** (b) An asset of a GitHub release, resolved to a tag (`latest` moves only with `fledge update`). */
export interface ReleaseInput extends InputBase {
  release: {
    /** `owner/name`. */
    repo: string;
    /** `latest` or a tag. */
    version: string;
    /** The asset's file name. */
    asset: string;
    /** A sha256sum-format asset verifying it when present (default `checksums.txt`). */
    checksumsAsset?: string;
  };
}

/**
 * (c) An input with a resolver of its own (an OCI image reference resolved to a manifest
 * digest, …). Its lock entry may carry any string fields besides `source`.
 */
export interface CustomInput<T = unknown> extends InputBase {
  /** What fledge.toml asks for, in words, for messages: `nginx:alpine for linux/amd64`. */
  request: string;
  /** False for an input that must not be locked (a local directory, …). Default true. */
  lock?: boolean;
  /** True when a lock entry was made for this same request (then `resolve` receives it). */
  matches(entry: LockEntry): boolean;
  /**
   * Resolves the input. With `entry` (a matching entry of fledge.lock), fetch exactly what it
   * pins, without lookups that could move (no tag resolution); without, resolve afresh.
   * Returns the entry to record (`source` names your resolver; all fields are strings) and the
   * value stages read with `ctx.inputs.get(name)`. Download through `io`.
   */
  resolve(entry: LockEntry | undefined, io: InputIO): Promise<{ entry?: LockEntry; value: T }>;
}

export type InputRequest = UrlInput | ReleaseInput | CustomInput<unknown>;

/** What a custom resolver downloads with: everything goes through @fledge/fetch. */
export interface InputIO {
  readonly fetcher: Fetcher;
  /** `--offline`: the network is off (cache and fledge.lock only). */
  readonly offline: boolean;
  /** `fledge update`: look again, even where an earlier answer is cached. */
  readonly refresh: boolean;
  /** The directory of fledge.toml (relative host paths). */
  readonly baseDir: string;
  /** A file at a URL (cache, mirrors, retries, offline), verified when `sha256` is given. */
  fetch(req: { url: string; sha256?: string; label?: string; headers?: Record<string, string> }): Promise<FetchedFile>;
  /** A content-addressed blob by digest: from the cache without a request when present. */
  fetchBlob(req: BlobRequest): Promise<FetchedFile>;
  /** A small document (JSON, a checksums list), never cached. */
  getText(url: string, opts: { label: string; headers?: Record<string, string>; maxBytes?: number }): Promise<{ text: string; finalUrl: string }>;
  warn(message: string): void;
  info(message: string): void;
}

/** An input resolved on this machine. */
export interface ResolvedInput<T = FetchedFile> {
  name: string;
  label: string;
  /** What fledge.lock records for it (undefined for local files). */
  entry?: LockEntry;
  /** URL and release inputs: the verified file. Custom inputs: what `resolve` returned. */
  value: T;
}

/** A declared input, to read once resolved. */
export interface InputHandle<T = FetchedFile> {
  readonly name: string;
  get(): Promise<ResolvedInput<T>>;
}

/** `hooks.inputs` taps declare the build's downloads here. */
export interface InputRegistry {
  add(req: UrlInput | ReleaseInput): InputHandle<FetchedFile>;
  add<T>(req: CustomInput<T>): InputHandle<T>;
}

/** The build's resolved inputs (`ctx.inputs`). */
export interface BuildInputs {
  /** The resolution of input `name`; waits for it. */
  get<T = FetchedFile>(name: string): Promise<ResolvedInput<T>>;
  /** The verified file of a URL or release input. */
  file(name: string): Promise<FetchedFile>;
  /** The names declared, sorted. */
  names(): string[];
}

/** How fledge.lock is used. */
export type LockMode =
  /** Reuse matching entries, re-resolve the rest, rewrite the lock when it changed. */
  | "auto"
  /** Fail when the lock is missing or would change; never write it (CI). */
  | "locked"
  /** Ignore the entries, resolve everything again and rewrite the lock. */
  | "update";

export interface InputSetOptions {
  /** fledge.lock's path. */
  lockFile: string;
  /** The directory relative host paths resolve against (fledge.toml's). */
  baseDir: string;
  fetcher: Fetcher;
  mode: LockMode;
  /** The scope whose entries this set checks and rewrites (default `build`). */
  scope?: string;
  log?: { warn(message: string, source?: string): void; info(message: string, source?: string): void };
}

interface Declared {
  req: InputRequest;
  name: string;
  label: string;
  scope: string;
  lockable: boolean;
  /** Who declared it, for messages. */
  source?: string;
  promise?: Promise<ResolvedInput<unknown>>;
}

const NAME = /^[A-Za-z0-9_][A-Za-z0-9_.:/@+-]*$/;
const isRemote = (url: string) => /^https?:\/\//i.test(url);

function fetched(r: FetchResult): FetchedFile {
  return { path: r.path, sha256: r.sha256, size: r.size, url: r.url, fromCache: r.fromCache, local: r.local, ...(r.data ? { data: r.data } : {}) };
}

/**
 * A set of inputs resolved together against fledge.lock: what a build does with the inputs its
 * plugins declare, and what another command can do with its own (in its own `scope`).
 */
export class InputSet implements InputRegistry, BuildInputs {
  readonly #opts: Required<Pick<InputSetOptions, "scope">> & InputSetOptions;
  readonly #declared = new Map<string, Declared>();
  #before: Lockfile | undefined;
  #after: Promise<Lockfile> | undefined;
  #resolving = false;
  /** Set while a plugin declares inputs, to name it in messages. */
  declaringPlugin: string | undefined;

  constructor(opts: InputSetOptions) {
    this.#opts = { scope: "build", ...opts };
  }

  add(req: UrlInput | ReleaseInput): InputHandle<FetchedFile>;
  add<T>(req: CustomInput<T>): InputHandle<T>;
  add(req: InputRequest): InputHandle<unknown> {
    if (this.#resolving) throw new FledgeError("FLEDGE_INPUT", `input "${req.name}" was declared after the inputs were resolved`, { hint: "declare inputs in hooks.inputs" });
    if (typeof req?.name !== "string" || !NAME.test(req.name))
      throw new FledgeError("FLEDGE_INPUT", `input name ${JSON.stringify(req?.name)} is not usable as a fledge.lock table`, { hint: "use letters, digits and _ - . : / @ +" });
    const kinds = ["url" in req, "release" in req, "resolve" in req].filter(Boolean).length;
    if (kinds !== 1) throw new FledgeError("FLEDGE_INPUT", `input "${req.name}" must give exactly one of url, release or resolve()`);
    const prev = this.#declared.get(req.name);
    if (prev) {
      throw new FledgeError("FLEDGE_INPUT", `input "${req.name}" is declared twice${prev.source ? ` (first by ${prev.source})` : ""}`, {
        hint: "input names are fledge.lock tables: each must be unique in a build",
      });
    }
    const lockable = "url" in req ? isRemote(req.url) : "release" in req ? true : req.lock !== false;
    this.#declared.set(req.name, { req, name: req.name, label: req.label ?? req.name, scope: req.scope ?? this.#opts.scope, lockable, source: this.declaringPlugin });
    return { name: req.name, get: () => this.get(req.name) };
  }

  names(): string[] {
    return [...this.#declared.keys()].sort();
  }

  /** What each declared input asks for, in words. */
  describe(): { name: string; label: string; request: string; lockable: boolean }[] {
    return [...this.#declared.values()].map((d) => ({ name: d.name, label: d.label, request: requestOf(d.req), lockable: d.lockable }));
  }

  async get<T = FetchedFile>(name: string): Promise<ResolvedInput<T>> {
    const d = this.#declared.get(name);
    if (!d) throw new FledgeError("FLEDGE_INPUT", `input "${name}" was never declared`, { hint: `declare it in hooks.inputs: inputs.add({ name: "${name}", … })` });
    if (!d.promise) throw new FledgeError("FLEDGE_INPUT", `input "${name}" is read before the inputs were resolved`, { hint: "read inputs in the tree stages or later" });
    return d.promise as Promise<ResolvedInput<T>>;
  }

  async file(name: string): Promise<FetchedFile> {
    const r = await this.get<FetchedFile>(name);
    const d = this.#declared.get(name)!;
    if (!("url" in d.req) && !("release" in d.req)) throw new FledgeError("FLEDGE_INPUT", `input "${name}" has a resolver of its own: read it with inputs.get()`);
    return r.value;
  }

  /** The io handed to resolvers. */
  #io(label: string): InputIO {
    const { fetcher, baseDir, mode } = this.#opts;
    const log = this.#opts.log;
    return {
      fetcher,
      offline: fetcher.offline,
      refresh: mode === "update",
      baseDir,
      fetch: async (r) => fetched(await fetcher.fetch({ url: r.url, sha256: r.sha256, label: r.label ?? label, baseDir, refresh: mode === "update", ...(r.headers ? { headers: r.headers } : {}) })),
      fetchBlob: async (r) => fetched(await fetcher.fetch({ url: r.url, sha256: r.digest, label: r.label ?? label, ...(r.headers ? { headers: r.headers } : {}) })),
      getText: (url, o) => fetcher.getText(url, o),
      warn: (m) => log?.warn(m, label),
      info: (m) => log?.info(m, label),
    };
  }

  /**
   * Resolves every declared input concurrently against fledge.lock. Offline misses are
   * collected so the error lists everything missing, not just the first. Rejects like the
   * first failure.
   */
  async resolve(): Promise<void> {
    this.#resolving = true;
    const { lockFile, mode, scope } = this.#opts;
    this.#before = await readLock(lockFile);
    const mine = (e: LockEntry) => (e.scope ?? "build") === scope;
    const existing = new Map(Object.entries(this.#before?.inputs ?? {}).filter(([, e]) => mine(e)));
    const declared = [...this.#declared.values()].filter((d) => d.scope === scope);
    const lockable = declared.filter((d) => d.lockable);
    if (mode === "locked") {
      const hint = `run "fledge update" (or a build without --locked) and commit ${LOCK_FILE}`;
      if (!this.#before && lockable.length) throw new FledgeError("FLEDGE_LOCKED", `--locked: ${lockFile} is missing, so ${lockable.map((s) => s.label).join(" and ")} would be resolved afresh`, { hint });
      const problems: string[] = [];
      for (const d of lockable) {
        const e = existing.get(d.name);
        if (!e) problems.push(`${d.label}: no [${d.name}] entry for ${requestOf(d.req)}`);
        else if (!matches(d.req, e)) problems.push(`${d.label}: fledge.toml asks for ${requestOf(d.req)}, the lock has ${describeEntry(e)}`);
      }
      for (const key of existing.keys()) if (!lockable.some((d) => d.name === key)) problems.push(`[${key}] is no longer an input of fledge.toml`);
      if (problems.length) throw new FledgeError("FLEDGE_LOCKED", `--locked: ${lockFile} is out of date:\n  ${problems.join("\n  ")}`, { hint });
    }
    for (const d of this.#declared.values()) {
      const e = mode !== "update" && d.scope === scope ? existing.get(d.name) : undefined;
      const entry = e && d.lockable && matches(d.req, e) ? e : undefined;
      if (e && !entry && d.lockable) this.#opts.log?.info(`${LOCK_FILE}: ${d.label} changed in fledge.toml (now ${requestOf(d.req)}); resolving it again`, d.label);
      const p = this.#resolveOne(d, entry).catch((err: Error & { code?: string }) => {
        if (entry && err?.code === "FLEDGE_CHECKSUM")
          throw new FledgeError("FLEDGE_CHECKSUM", err.message, {
            cause: err,
            hint: `${LOCK_FILE} pins ${d.label}${entry.sha256 ? ` to sha256:${entry.sha256}` : ""}; if the new content is expected, run "fledge update"`,
          });
        throw err;
      });
      p.catch(() => {}); // observed below and by the stage that uses it
      d.promise = p;
    }
    const settled = await Promise.allSettled([...this.#declared.values()].map((d) => d.promise!));
    const errors = settled.flatMap((r) => (r.status === "rejected" ? [r.reason as Error & { code?: string; hint?: string }] : []));
    if (errors.length) {
      const offline = errors.filter((e) => e.code === "FLEDGE_OFFLINE");
      if (offline.length === errors.length && offline.length > 1)
        throw new FledgeError("FLEDGE_OFFLINE", `--offline: ${offline.length} inputs are not available without the network:\n  ${offline.map((e) => e.message).join("\n  ")}`, {
          hint: 'run a build once with the network (it fills the cache and fledge.lock), or seed the cache with "fledge cache add <file> [--url <url>]"',
        });
      throw errors.find((e) => e.code !== "FLEDGE_OFFLINE") ?? errors[0];
    }
    const after: Lockfile = { version: 1, inputs: {} };
    // Entries of other scopes are kept as they are: another command pins them.
    for (const [k, e] of Object.entries(this.#before?.inputs ?? {})) if (!mine(e)) after.inputs[k] = e;
    for (const r of settled) {
      const v = (r as PromiseFulfilledResult<ResolvedInput<unknown> & { scope: string }>).value;
      const d = this.#declared.get(v.name)!;
      if (v.entry && d.lockable) after.inputs[v.name] = d.scope === "build" ? v.entry : { ...v.entry, scope: d.scope };
    }
    this.#after = Promise.resolve(after);
  }

  async #resolveOne(d: Declared, entry: LockEntry | undefined): Promise<ResolvedInput<unknown>> {
    const io = this.#io(d.label);
    const { req } = d;
    if ("url" in req) {
      if (!req.sha256) io.warn(`${d.label} from ${req.url} has no ${req.checksumKey ?? "sha256"}: its content is not verified${d.lockable ? " (fledge.lock pins what was downloaded)" : ""}`);
      const got = await this.#opts.fetcher.fetch({ url: req.url, sha256: req.sha256 ?? entry?.sha256, label: d.label, refresh: io.refresh, baseDir: io.baseDir });
      return { name: d.name, label: d.label, value: fetched(got), ...(d.lockable ? { entry: { source: "url", url: req.url, sha256: got.sha256 } } : {}) };
    }
    if ("release" in req) {
      const { repo, version, asset } = req.release;
      if (entry) {
        // Pinned by fledge.lock: the same bytes, and no API call.
        const got = await this.#opts.fetcher.fetch({ url: entry.url!, sha256: entry.sha256, label: d.label });
        return { name: d.name, label: d.label, value: fetched(got), entry };
      }
      if (io.offline)
        throw new FledgeError("FLEDGE_OFFLINE", `${d.label}: release ${version} of ${repo} is not in fledge.lock, and resolving it needs the GitHub API`, {
          hint: "run fledge build (or fledge update) once with the network, and keep fledge.lock",
        });
      const rel = await resolveGitHubRelease(this.#opts.fetcher, { repo, version, asset, label: d.label, ...(req.release.checksumsAsset ? { checksumsAsset: req.release.checksumsAsset } : {}) });
      for (const w of rel.warnings) io.warn(w);
      io.info(`${d.label}: release ${version} of ${repo} is ${rel.tag}`);
      const got = await this.#opts.fetcher.fetch({ url: rel.url, sha256: rel.sha256, label: d.label, refresh: io.refresh });
      return { name: d.name, label: d.label, value: fetched(got), entry: { source: "release", repo, asset, version, tag: rel.tag, url: rel.url, sha256: got.sha256 } };
    }
    const r = await req.resolve(entry, io);
    if (r.entry !== undefined) checkEntry(d.name, r.entry);
    return { name: d.name, label: d.label, value: r.value, ...(r.entry ? { entry: r.entry } : {}) };
  }

  /** The lock these inputs produce (after `resolve()`), entries of other scopes kept. */
  async lock(): Promise<Lockfile> {
    if (!this.#after) throw new FledgeError("FLEDGE_INPUT", "the inputs were not resolved");
    return this.#after;
  }

  /** fledge.lock as read before resolving. */
  get before(): Lockfile | undefined {
    return this.#before;
  }

  /** Writes fledge.lock when it changed (never in `locked` mode). */
  async writeLock(): Promise<{ path: string; written: boolean; lock: Lockfile; changes: LockChange[] }> {
    const after = await this.lock();
    const path = this.#opts.lockFile;
    const before = this.#before;
    const changes = lockChanges(before, after);
    const write = this.#opts.mode !== "locked" && (before ? formatLock(before) !== formatLock(after) : Object.keys(after.inputs).length > 0);
    if (write) await writeLock(path, after);
    return { path, written: write, lock: after, changes };
  }
}

function checkEntry(name: string, e: LockEntry): void {
  if (typeof e !== "object" || !e || typeof e.source !== "string" || !e.source) throw new FledgeError("FLEDGE_INPUT", `input "${name}": the lock entry needs a "source" string naming its resolver`);
  for (const [k, v] of Object.entries(e))
    if (typeof v !== "string") throw new FledgeError("FLEDGE_INPUT", `input "${name}": lock entry field "${k}" is a ${typeof v}; every field is a string`);
    else if (!/^[a-z][a-z0-9_]*$/.test(k)) throw new FledgeError("FLEDGE_INPUT", `input "${name}": lock entry field "${k}" must be lowercase letters, digits and _`);
  if (e.sha256 !== undefined && !/^[0-9a-f]{64}$/.test(e.sha256)) throw new FledgeError("FLEDGE_INPUT", `input "${name}": lock entry sha256 must be 64 lowercase hex digits`);
}

function requestOf(req: InputRequest): string {
  if ("url" in req) return req.url;
  if ("release" in req) return `release ${req.release.version} of ${req.release.repo}`;
  return req.request;
}

function matches(req: InputRequest, e: LockEntry): boolean {
  if ("url" in req) {
    if (e.source !== "url" || e.url !== req.url) return false;
    if (!req.sha256) return true;
    try {
      return normalizeSha256(req.sha256) === e.sha256;
    } catch {
      return false;
    }
  }
  if ("release" in req) {
    const r = req.release;
    return e.source === "release" && e.repo === r.repo && e.asset === r.asset && e.version === r.version && !!e.tag && !!e.url && !!e.sha256;
  }
  return req.matches(e);
}

export interface LockChange {
  key: string;
  from?: LockEntry;
  to?: LockEntry;
}

/** What changed between two locks, for messages. */
export function lockChanges(before: Lockfile | undefined, after: Lockfile): LockChange[] {
  const keys = [...new Set([...Object.keys(before?.inputs ?? {}), ...Object.keys(after.inputs)])].sort();
  const canonical = (e: LockEntry | undefined) => (e ? JSON.stringify(Object.entries(e).sort(([a], [b]) => (a < b ? -1 : 1))) : "");
  return keys.map((key) => ({ key, from: before?.inputs[key], to: after.inputs[key] })).filter(({ from, to }) => canonical(from) !== canonical(to));
}
