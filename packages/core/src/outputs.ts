import { accessSync, constants, lstatSync, readlinkSync, realpathSync, renameSync, rmSync, statSync, type Stats } from "node:fs";
import * as fsp from "node:fs/promises";
import { basename, dirname, isAbsolute, join, relative, resolve } from "node:path";
import { FledgeError } from "./errors.js";
import { tempPathFor } from "./temps.js";

/** One file a build writes. */
export interface Output {
  /** What it is, for messages: `artifact`, `manifest`, `sbom`. */
  readonly label: string;
  /** Where it ends up. */
  readonly path: string;
  /**
   * Where it is written until every output is complete: `.fledge-tmp-<pid>-<host8>-<rand>-<name>` in
   * the same directory. Moved to `path` at `AfterBuildStage.COMMIT`, together with the others.
   */
  readonly stagedPath: string;
  /** Who added it (`fledge` for the artifact and the manifest). */
  readonly plugin: string;
  /** Writes the staged file (creating it; it must not exist yet). */
  write(data: string | Uint8Array): Promise<void>;
  /**
   * Takes the output back: nothing is written to `path`, and the staged file is removed. Say why
   * (`reasons`) when the user should know: for the manifest they become `result.manifestReasons`.
   */
  discard(reasons?: string | readonly DiscardReason[]): void;
  readonly discarded: boolean;
  /** Why it was discarded (empty when no reason was given). */
  readonly discardReasons: readonly DiscardReason[];
}

/** Why an output is not written (`output.discard(reasons)`). */
export interface DiscardReason {
  /** The key that is missing or wrong, when there is one: `workload.entrypoint`. */
  key?: string;
  message: string;
  /** What to write to get the output, e.g. the TOML to add. */
  fix?: string;
}

/** The build's outputs (`ctx.outputs`). */
export interface Outputs {
  readonly artifact: Output;
  readonly manifest: Output;
  /**
   * Adds an output. The path is checked at once (a FledgeError when it is unsafe: see
   * docs/plugins.md, "Outputs"); add yours in `hooks.check` or `beforeBuild`, so a bad path
   * fails before any work. The plugin writes `stagedPath` before `AfterBuildStage.COMMIT`.
   */
  add(path: string, opts?: { label?: string }): Output;
  /** Every output not discarded, in the order added. */
  list(): readonly Output[];
}

/** A host path the build reads: an output must not land on it (or, for a directory, in it). */
export interface HostInput {
  path: string;
  /** For messages: `fledge.toml`, `the mapping "./www" = "/srv/www"`, `plugin ./motd.mjs`. */
  what: string;
  /** A mapped directory: everything under it goes into the image. */
  dir?: boolean;
}

/** An output path fledge refuses to write. */
export class OutputPathError extends FledgeError {
  override name = "OutputPathError";
  constructor(
    readonly path: string,
    readonly reason: string,
    hint?: string,
  ) {
    super("FLEDGE_OUTPUT", `${path}: ${reason}`, { hint });
  }
}

/** Injected file operations (tests of the rollback). */
export interface OutputFs {
  rename(from: string, to: string): Promise<void>;
  link(existing: string, newPath: string): Promise<void>;
  copyFile(from: string, to: string): Promise<void>;
  rm(path: string, opts: { force: boolean }): Promise<void>;
  lstat(path: string): Promise<Stats>;
}

// rename is synchronous (wrapped in a promise): commit() moves the outputs one right after the
// other, with no turn of the event loop between the renames (see commit()).
const realFs: OutputFs = { rename: async (from, to) => renameSync(from, to), link: fsp.link, copyFile: fsp.copyFile, rm: fsp.rm, lstat: fsp.lstat };

function kindOf(st: Stats): string {
  if (st.isSymbolicLink()) return "a symlink";
  if (st.isDirectory()) return "a directory";
  if (st.isCharacterDevice()) return "a character device";
  if (st.isBlockDevice()) return "a block device";
  if (st.isFIFO()) return "a FIFO";
  if (st.isSocket()) return "a socket";
  return "not a regular file";
}

/** The absolute path `p` would have once its missing parents exist, with the existing part's links resolved. */
function realTarget(p: string): string {
  let dir = dirname(p);
  const rest = [basename(p)];
  for (;;) {
    try {
      return join(realpathSync(dir), ...rest);
    } catch {
      const up = dirname(dir);
      if (up === dir) return p;
      rest.unshift(basename(dir));
      dir = up;
    }
  }
}

const inside = (child: string, dir: string) => {
  const r = relative(dir, child);
  return r !== "" && !r.startsWith("..") && !isAbsolute(r);
};

/**
 * Every output of one build: checked before any work, written under temp names beside their
 * destinations, and moved into place all together only when every one of them is complete. A
 * failure while moving puts back what was there before.
 */
export class OutputTransaction implements Outputs {
  readonly #outputs: OutputImpl[] = [];
  readonly #inputs: { path: string; what: string; dir: boolean; ino?: [number, number] }[] = [];
  readonly #fs: OutputFs;
  #committed = false;
  #artifact?: OutputImpl;
  #manifest?: OutputImpl;

  constructor(opts: { fs?: OutputFs } = {}) {
    this.#fs = opts.fs ?? realFs;
  }

  /**
   * Records a host path the build reads. Returns the outputs already set up that conflict with
   * it (each a reason to refuse the build).
   */
  addInput(input: HostInput): OutputPathError[] {
    const abs = resolve(input.path);
    let real = abs;
    let ino: [number, number] | undefined;
    try {
      real = realpathSync(abs);
      const st = statSync(real);
      ino = [st.dev, st.ino];
    } catch {
      /* not there (yet): compared by path */
    }
    const i = { path: real, what: input.what, dir: !!input.dir, ino };
    this.#inputs.push(i);
    const out: OutputPathError[] = [];
    for (const o of this.#outputs) {
      if (o.discarded) continue;
      const c = conflict(o.real, inodeOf(o.path), i, o.label);
      if (c) out.push(new OutputPathError(o.path, c.message, c.hint));
    }
    return out;
  }

  get artifact(): Output {
    if (!this.#artifact) throw new FledgeError("FLEDGE_OUTPUT", "the artifact output is not set up yet");
    return this.#artifact;
  }

  get manifest(): Output {
    if (!this.#manifest) throw new FledgeError("FLEDGE_OUTPUT", "the manifest output is not set up yet");
    return this.#manifest;
  }

  /** Sets up the artifact and manifest outputs (the builder does this in pre-flight). */
  setMain(artifact: string, manifest: string): OutputPathError[] {
    const problems: OutputPathError[] = [];
    const add = (path: string, label: string) => {
      try {
        return this.#add(path, label, "fledge");
      } catch (err) {
        if ((err as Error).name !== "OutputPathError") throw err;
        problems.push(err as OutputPathError);
        return undefined;
      }
    };
    this.#artifact = add(artifact, "artifact");
    this.#manifest = add(manifest, "manifest");
    return problems;
  }

  add(path: string, opts: { label?: string; plugin?: string } = {}): Output {
    return this.#add(path, opts.label ?? basename(path), opts.plugin ?? "a plugin");
  }

  list(): readonly Output[] {
    return this.#outputs.filter((o) => !o.discarded);
  }

  get committed(): boolean {
    return this.#committed;
  }

  #add(path: string, label: string, plugin: string): OutputImpl {
    if (this.#committed) throw new FledgeError("FLEDGE_OUTPUT", `${plugin} added the output ${path} after the outputs were written`, { hint: "add outputs in hooks.check or beforeBuild" });
    const abs = resolve(path);
    const problem = this.#problem(abs, label);
    if (problem) throw new OutputPathError(abs, problem.message, problem.hint);
    const o = new OutputImpl(label, abs, tempPathFor(abs), plugin, realTarget(abs));
    this.#outputs.push(o);
    return o;
  }

  /** Why `abs` may not be written, or undefined. */
  #problem(abs: string, label: string): { message: string; hint?: string } | undefined {
    let st: Stats | undefined;
    try {
      st = lstatSync(abs);
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === "ENOTDIR") return { message: "a parent of it is not a directory" };
    }
    if (st && !st.isFile())
      return {
        message: `is ${kindOf(st)}${st.isSymbolicLink() ? ` (to ${safeReadlink(abs)})` : ""}; fledge writes its ${label} only as a regular file, never through or over anything else`,
        hint: "choose a path that does not exist yet, or a regular file to replace",
      };
    // The nearest existing ancestor must be a writable directory.
    let dir = dirname(abs);
    for (;;) {
      let ds: Stats | undefined;
      try {
        ds = statSync(dir);
      } catch {
        /* missing: created when the output is written */
      }
      if (ds) {
        if (!ds.isDirectory()) return { message: `${dir} is not a directory` };
        try {
          accessSync(dir, constants.W_OK);
        } catch {
          return { message: `cannot write in ${dir} (permission denied)` };
        }
        break;
      }
      const up = dirname(dir);
      if (up === dir) break;
      dir = up;
    }
    const real = realTarget(abs);
    const ino = st ? inodeOf(abs) : undefined;
    for (const i of this.#inputs) {
      const c = conflict(real, ino, i, label);
      if (c) return c;
    }
    for (const o of this.#outputs)
      if (!o.discarded && o.real === real) return { message: `is also where the ${o.label} goes: every output needs its own path`, hint: "give each output its own path (-o, --manifest-output)" };
    return undefined;
  }

  /** Directories the outputs are written in. */
  dirs(): string[] {
    return [...new Set(this.#outputs.map((o) => dirname(o.path)))].sort();
  }

  /** Creates the outputs' directories (before staging). */
  async prepare(): Promise<void> {
    for (const d of this.dirs()) await fsp.mkdir(d, { recursive: true });
  }

  /**
   * Moves every output into place. Each must have been written; each destination is checked
   * again. What was at a destination is kept aside (a hard link) until all are in place; a
   * failure puts it back and removes what was already moved.
   */
  async commit(): Promise<void> {
    const fs = this.#fs;
    const active = this.list() as OutputImpl[];
    for (const o of active) {
      const st = await fs.lstat(o.stagedPath).catch(() => undefined);
      if (!st?.isFile())
        throw new FledgeError("FLEDGE_OUTPUT", `${o.plugin === "fledge" ? "" : `${o.plugin} added the output `}${o.label} (${o.path}) but it was never written`, {
          hint: `write it at output.stagedPath before AfterBuildStage.COMMIT, or call output.discard()`,
        });
      const dest = await fs.lstat(o.path).catch(() => undefined);
      if (dest && !dest.isFile()) throw new FledgeError("FLEDGE_OUTPUT", `${o.path} became ${kindOf(dest)} during the build; nothing was written`);
    }
    // What is at each destination is kept aside first, for every output; only then are the outputs
    // renamed into place, back to back. A process killed outright (kill -9, power loss) between two
    // renames leaves outputs of two builds side by side; doing all the slow work before the first
    // rename shrinks that window from several awaited file operations to the gap between two
    // rename(2) calls. (Two files cannot be replaced in one atomic step on POSIX.)
    const backups = new Map<OutputImpl, string>();
    try {
      for (const o of active) {
        const dest = await fs.lstat(o.path).catch(() => undefined);
        if (!dest) continue;
        const backup = tempPathFor(o.path);
        backups.set(o, backup);
        await fs.link(o.path, backup).catch(() => fs.copyFile(o.path, backup));
      }
    } catch (err) {
      for (const b of backups.values()) await fs.rm(b, { force: true }).catch(() => {});
      throw new FledgeError("FLEDGE_OUTPUT", `could not keep aside what is at the outputs' paths before replacing them: ${(err as Error).message}; nothing was replaced`, { cause: err });
    }
    const moved: { o: OutputImpl; backup?: string }[] = [];
    try {
      for (const o of active) {
        moved.push({ o, backup: backups.get(o) });
        await fs.rename(o.stagedPath, o.path);
      }
    } catch (err) {
      const failed = moved[moved.length - 1]!.o;
      for (const { o, backup } of moved.reverse()) {
        // The failed one was not moved: its destination still is the old file (the backup is a
        // second name of it, and renaming a link over its twin does nothing), so drop the backup.
        if (o === failed) {
          if (backup) await fs.rm(backup, { force: true }).catch(() => {});
        } else if (backup) await fs.rename(backup, o.path).catch(() => {});
        else await fs.rm(o.path, { force: true }).catch(() => {});
      }
      // the outputs after the failed one were never moved: their destinations are untouched
      for (const o of active.slice(moved.length)) {
        const backup = backups.get(o);
        if (backup) await fs.rm(backup, { force: true }).catch(() => {});
      }
      throw new FledgeError("FLEDGE_OUTPUT", `could not move the ${failed.label} into place at ${failed.path}: ${(err as Error).message}; what was there before is back`, { cause: err });
    }
    this.#committed = true;
    for (const { backup } of moved) if (backup) await fs.rm(backup, { force: true }).catch(() => {});
  }

  /** Removes every staged file (a failed build). */
  async abort(): Promise<void> {
    if (this.#committed) return;
    await Promise.all(this.#outputs.map((o) => this.#fs.rm(o.stagedPath, { force: true }).catch(() => {})));
  }

  /** The same, synchronously (a signal handler). */
  abortSync(): void {
    if (this.#committed) return;
    for (const o of this.#outputs) rmSync(o.stagedPath, { force: true });
  }
}

function inodeOf(p: string): readonly [number, number] | undefined {
  try {
    const s = statSync(p);
    return [s.dev, s.ino];
  } catch {
    return undefined;
  }
}

/** Why an output at `real` (with inode `ino` when it exists) may not be written because of input `i`. */
function conflict(real: string, ino: readonly [number, number] | undefined, i: { path: string; what: string; dir: boolean; ino?: [number, number] }, label: string): { message: string; hint?: string } | undefined {
  const same = i.path === real || (!!ino && !!i.ino && i.ino[0] === ino[0] && i.ino[1] === ino[1]);
  if (same && !i.dir) return { message: `is ${i.what}, an input of this build: fledge never writes its ${label} over an input`, hint: "write the output somewhere else" };
  if (i.dir && (same || inside(real, i.path)))
    return {
      message: `is inside ${i.what}, whose files all go into the image: the next build would pack this ${label}`,
      hint: "write the outputs outside the mapped directory",
    };
  return undefined;
}

function safeReadlink(p: string): string {
  try {
    return readlinkSync(p);
  } catch {
    return "?";
  }
}

class OutputImpl implements Output {
  #discarded = false;
  constructor(
    readonly label: string,
    readonly path: string,
    readonly stagedPath: string,
    readonly plugin: string,
    /** The destination with links in its existing parents resolved (duplicate detection). */
    readonly real: string,
  ) {}
  async write(data: string | Uint8Array): Promise<void> {
    await fsp.mkdir(dirname(this.stagedPath), { recursive: true });
    await fsp.writeFile(this.stagedPath, data, { flag: "wx", mode: 0o644 });
  }
  #reasons: DiscardReason[] = [];
  discard(reasons?: string | readonly DiscardReason[]): void {
    this.#discarded = true;
    if (reasons !== undefined) this.#reasons.push(...(typeof reasons === "string" ? [{ message: reasons }] : reasons.map((r) => ({ ...r }))));
    rmSync(this.stagedPath, { force: true });
  }
  get discarded(): boolean {
    return this.#discarded;
  }
  get discardReasons(): readonly DiscardReason[] {
    return this.#reasons;
  }
}
