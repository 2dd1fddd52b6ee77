import type { FledgeConfig, ManifestConfig } from "@fledge/config";
import type { Fetcher } from "@fledge/fetch";
import type { VolantManifest } from "@fledge/manifest";

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
}

/** 2024-01-01T00:00:00Z, the fixed epoch the Go fledge uses too. */
export const DEFAULT_MTIME = 1704067200;

/** A request for a rootfs source, handled by `hooks.resolveSource.for(kind)`. */
export interface SourceRequest {
  kind: string;
  ref: string;
  options?: Record<string, unknown>;
}

export interface ArtifactInfo {
  /** Final path of the artifact. */
  path: string;
  /** Where it is written until the build succeeds. */
  tempPath: string;
  sha256: string;
  size: number;
  compression: string;
  entries: number;
}

export interface BuildResult {
  artifact: Omit<ArtifactInfo, "tempPath">;
  manifestPath: string;
  manifest: VolantManifest;
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

/** Everything a plugin can read during one build. */
export interface BuildContext {
  readonly config: FledgeConfig;
  readonly manifestConfig: ManifestConfig;
  readonly options: Readonly<BuildOptions> & { mtime: number };
  readonly fetcher: Fetcher;
  /** Warnings collected so far (also sent through hooks.log). */
  readonly warnings: string[];
  warn(message: string, source?: string): void;
  info(message: string, source?: string): void;
  debug(message: string, source?: string): void;
  /** Registers a temp file to remove if the build fails. */
  trackTemp(path: string): void;
}
