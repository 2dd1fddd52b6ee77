import type { ConfigIssue, FledgeConfig, ManifestConfig } from "@fledge/config";
import type { Fetcher } from "@fledge/fetch";
import type { VolantManifest } from "@fledge/manifest";
import type { FledgeError } from "./errors.js";
import type { BuildInputs } from "./inputs.js";
import type { ManifestDefaults } from "./manifest-defaults.js";
import type { DiscardReason, Output, Outputs } from "./outputs.js";
import type { RootfsTree } from "./tree.js";

export interface BuildOptions {
  /** Where the artifact goes (absolute). */
  output: string;
  /** Where the manifest goes; default `<dir of output>/<name>.manifest.json`. */
  manifestOutput?: string;
  /** Publish the artifact as `<baseUrl>/<file name>` in the manifest instead of its path. */
  baseUrl?: string;
  /** Overrides `[output] compression` / `level`. */
  compression?: string;
  level?: number;
  /** mtime for every entry (seconds). Default: SOURCE_DATE_EPOCH, else 2024-01-01T00:00:00Z. */
  mtime?: number;
  /** Download cache directory (compressed segments and the stat cache live in its `segments/`). */
  cacheDir?: string;
  /** Read and hash every mapped file instead of trusting the stat cache. */
  verify?: boolean;
  /** Never touch the network: inputs come from the cache (and fledge.lock) or the build fails listing what is missing. */
  offline?: boolean;
  /** Fail when fledge.lock is missing or would change, and never write it (CI). */
  locked?: boolean;
  /** Environment for FLEDGE_MIRRORS, FLEDGE_GITHUB_API and GITHUB_TOKEN (default process.env). */
  env?: NodeJS.ProcessEnv;
  /**
   * The build's scratch directory (`ctx.scratchDir`: streams spilled from the tree, plugins'
   * temp files). Default: a new directory under the system's temp dir, removed when the build
   * ends. Given, it is made on first use and left for the caller to remove (to read the tree's
   * files after the build, as `@fledge/core/testing` does).
   */
  scratchDir?: string;
}

/** 2024-01-01T00:00:00Z, the fixed epoch the Go fledge uses too. */
export const DEFAULT_MTIME = 1704067200;

/**
 * A rootfs source to overlay, handed to `hooks.resolveSource.for(kind)` in the overlay stage:
 * `[source] image = "x"` is `{ kind: "image", options: { ref: "x" } }`; `[source] dockerfile`
 * is `{ kind: "dockerfile", options: { dockerfile, context?, target?, build_args? } }`; an
 * `[[overlay]]` table is its `kind` plus the rest of the table as `options`.
 */
export interface SourceRequest {
  kind: string;
  /** The request as written in fledge.toml (relative host paths are relative to `baseDir`). */
  options: Record<string, unknown>;
  /** Where it is written, for messages: `source.image`, `overlay[2]`. Use with `ctx.configError`. */
  keyPath: string;
  /** The directory of fledge.toml. */
  baseDir: string;
}

/** What a strategy made. */
export interface ArtifactInfo {
  /** What the manifest points at: `initramfs {url, checksum}` or `rootfs {url, checksum, format}`. */
  kind: "initramfs" | "rootfs";
  /** Disk image format, for `kind: "rootfs"`. */
  format?: "raw" | "qcow2";
  /** Final path of the artifact (`ctx.outputs.artifact.path`). */
  path: string;
  /** Where it was written (`ctx.outputs.artifact.stagedPath`); moved to `path` at `AfterBuildStage.COMMIT`. */
  stagedPath: string;
  sha256: string;
  size: number;
  /** initramfs: the compressor used. */
  compression?: string;
  /** Number of entries in the image. */
  entries?: number;
  /** The tree the artifact was made from, handed to afterBuild steps as `result.tree`. */
  tree?: RootfsTree;
}

/** One output of the build, as the result reports it. */
export interface OutputInfo {
  label: string;
  path: string;
  /** Who added it (`fledge` for the artifact and the manifest). */
  plugin: string;
}

/** What a build produced. Passed to `afterBuild` and `done`, and returned by `build()`. */
export interface BuildResult {
  /** The artifact. Before `AfterBuildStage.COMMIT` read it at `stagedPath`; from then on at `path`. */
  artifact: Omit<ArtifactInfo, "tree">;
  /** Where manifest.json goes; null when none is written (see `manifestReasons`). */
  manifestPath: string | null;
  /**
   * The manifest written; null when the manifest output was discarded in pre-flight
   * (`ctx.outputs.manifest.discard(reasons)`), e.g. without a manifest.toml in the default init
   * mode when fledge cannot tell which program kestrel should start.
   */
  manifest: VolantManifest | null;
  /** Why no manifest.json is written, when `manifest` is null. */
  manifestReasons?: DiscardReason[];
  /** Every output written (artifact, manifest, plugin outputs). */
  outputs: OutputInfo[];
  /** False until the outputs have been moved into place. */
  committed: boolean;
  /** The image's tree, when the strategy gave one (not serialised to JSON). */
  readonly tree?: RootfsTree;
  /** Plugins' reports (a boot check's timings, …), keyed by plugin name: `fledge build --json` prints them. */
  reports?: Record<string, unknown>;
  warnings: string[];
  durationMs: number;
}

export type LogLevel = "debug" | "info" | "warn";
export interface LogEvent {
  level: LogLevel;
  message: string;
  /** The plugin or stage that logged it. */
  source?: string;
}

export interface ProgressInfo {
  /** What is progressing: "fetch", "archive", … */
  kind: string;
  label: string;
  current: number;
  total?: number;
  /** Units per second (bytes for "fetch"), when known. */
  rate?: number;
  /** The last event for this label. */
  done?: boolean;
}

/** Everything a plugin can read and use during one build. */
export interface BuildContext {
  readonly config: FledgeConfig;
  readonly manifestConfig: ManifestConfig;
  readonly options: Readonly<BuildOptions> & { mtime: number };
  /** Downloads: cache, mirrors, retries, `--offline`. Prefer `inputs` (locked) and `fetchBlob`. */
  readonly fetcher: Fetcher;
  /** The build's declared inputs, resolved: `await ctx.inputs.get("busybox")`. */
  readonly inputs: BuildInputs;
  /** The build's outputs: the artifact, the manifest, and any a plugin adds. */
  readonly outputs: Outputs;
  /** Defaults plugins contribute to the manifest; manifest.toml always wins. */
  readonly manifestDefaults: ManifestDefaults;
  /** A directory for this build's scratch files, removed when the build ends (made on first use by you). */
  readonly scratchDir: string;
  /** Warnings collected so far (also sent through hooks.log). */
  readonly warnings: string[];
  /** Logs through `hooks.log`; `source` defaults to the calling plugin's name. */
  warn(message: string, source?: string): void;
  info(message: string, source?: string): void;
  debug(message: string, source?: string): void;
  /**
   * A content-addressed blob (an OCI layer, …) by digest through the download cache: served
   * from the cache without a request when present, else fetched (mirrors, retries,
   * `--offline`), verified against `digest` while it streams, and stored.
   */
  fetchBlob(req: BlobRequest): Promise<FetchedFile>;
  /** An error at a key of fledge.toml, with its file, line and column: `throw ctx.configError("overlay[0].url", "…")`. */
  configError(keyPath: string, message: string, hint?: string): FledgeError;
  /** Registers a temp file to remove if the build fails. */
  trackTemp(path: string): void;
}

/** A blob to fetch by digest. */
export interface BlobRequest {
  url: string;
  /** `sha256:<hex>` or bare hex. */
  digest: string;
  /** For messages and progress. */
  label?: string;
  /** Request headers (e.g. a registry's bearer token); never part of the cache key. */
  headers?: Record<string, string>;
}

/** A verified file on this machine. */
export interface FetchedFile {
  /** A path to the verified content (in the cache, or the local file itself). */
  path: string;
  sha256: string;
  size: number;
  /** The URL as requested (before mirrors). */
  url: string;
  fromCache: boolean;
  /** A local file (`file://` or a path): never cached, never locked. */
  local: boolean;
  /**
   * The verified bytes themselves, for a download or cache hit of at most 64 MiB: use them
   * rather than reading `path` again (a shared cache directory may be writable by others, and
   * what is at `path` could have been swapped since it was verified).
   */
  data?: Uint8Array;
}

/** Pre-flight findings, handed to `hooks.check` taps. */
export interface Check {
  /** A problem at a key of fledge.toml (placed on its line); the build will not start. */
  problem(keyPath: string, message: string, hint?: string): void;
  /** A warning at a key of fledge.toml. */
  warning(keyPath: string, message: string, hint?: string): void;
  /** A problem in another file (manifest.toml, a plugin's own file), already placed or not. */
  issue(issue: ConfigIssue): void;
  /**
   * Says the build reads this host file (or, with `dir`, every file under this directory): no
   * output may be written over it (or into it). Outputs already set up are checked at once.
   */
  readsHostPath(path: string, what: string, opts?: { dir?: boolean }): void;
  readonly problems: readonly ConfigIssue[];
  readonly warnings: readonly ConfigIssue[];
}

export type { Output, Outputs };
