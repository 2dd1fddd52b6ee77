import type { Compressor } from "@fledge/cpio";
import type { VolantManifest } from "@fledge/manifest";
import {
  AsyncSeriesBailHook,
  AsyncSeriesHook,
  AsyncSeriesWaterfallHook,
  HookMap,
  SyncBailHook,
  SyncHook,
} from "./tapable.js";
import type * as T from "tapable";
import type { BuildContext, BuildResult, ArtifactInfo, LogEvent, ProgressInfo, SourceRequest } from "./context.js";
import type { RootfsTree } from "./tree.js";

/** A stage of the initramfs pipeline: plugins edit the tree in place. */
export type StageHook = T.AsyncSeriesHook<[RootfsTree, BuildContext]>;

/**
 * Every extension point of a build, in the order a build reaches them. Created once per
 * Builder, frozen: plugins tap these, they never add or replace hooks.
 */
export interface FledgeHooks {
  /** Before anything is fetched or written: validate inputs, fail early. */
  beforeBuild: T.AsyncSeriesHook<[BuildContext]>;
  /** Build strategies keyed by `strategy` in fledge.toml (`initramfs` is built in). Bail with the artifact. */
  strategy: T.HookMap<T.AsyncSeriesBailHook<[BuildContext], ArtifactInfo | undefined>>;
  /** Rootfs sources keyed by kind (`oci-image`, `tarball`, …): tap to overlay entries into the tree. */
  resolveSource: T.HookMap<T.AsyncSeriesBailHook<[SourceRequest, RootfsTree, BuildContext], true | undefined>>;
  /** initramfs stage 1: directories and the device nodes the kernel needs before /init. */
  skeleton: StageHook;
  /** initramfs stage 2: rootfs sources (OCI images etc.) from plugins. */
  overlay: StageHook;
  /** initramfs stage 3: busybox and its applet links. */
  busybox: StageHook;
  /** initramfs stage 4: /init, by init mode. */
  init: StageHook;
  /** initramfs stage 5: the kestrel agent (default mode). */
  agent: StageHook;
  /** initramfs stage 6: the user's [mappings]. */
  mappings: StageHook;
  /** initramfs stage 7: last chance to edit the tree. */
  beforeArchive: StageHook;
  /** initramfs stage 8: serialise and compress the tree to a temp file. Bail with the artifact. */
  archive: T.AsyncSeriesBailHook<[RootfsTree, BuildContext], ArtifactInfo | undefined>;
  /** Compressors keyed by name; a tap returns the Compressor. */
  compressor: T.HookMap<T.SyncBailHook<[], Compressor | undefined>>;
  /** The manifest object, passed through every tap (waterfall) before it is written. */
  manifest: T.AsyncSeriesWaterfallHook<[VolantManifest, BuildContext]>;
  /** After the artifact and manifest are in place. Order taps with `stage: AfterBuildStage.*`. */
  afterBuild: T.AsyncSeriesHook<[BuildResult, BuildContext]>;
  /** The build succeeded. */
  done: T.AsyncSeriesHook<[BuildResult]>;
  /** The build failed; nothing partial was left behind. */
  failed: T.SyncHook<[Error]>;
  /** Messages for the user (core never prints: the CLI taps this). */
  log: T.SyncHook<[LogEvent]>;
  /** Progress of long work (downloads, archiving). */
  progress: T.SyncHook<[ProgressInfo]>;
}

/** Stage numbers for `afterBuild` taps: lower runs first. */
export const AfterBuildStage = {
  /** Verify the artifact (e.g. a boot smoke test). */
  VERIFY: -100,
  /** Produce an SBOM or other attestations. */
  SBOM: 0,
  /** Sign the artifact. */
  SIGN: 100,
  /** Upload or publish. */
  UPLOAD: 200,
  /** Report. */
  REPORT: 1000,
} as const;

export const STAGE_HOOKS = ["skeleton", "overlay", "busybox", "init", "agent", "mappings", "beforeArchive"] as const;

export function createHooks(): FledgeHooks {
  const stage = () => new AsyncSeriesHook<[RootfsTree, BuildContext]>(["tree", "ctx"]);
  return {
    beforeBuild: new AsyncSeriesHook(["ctx"]),
    strategy: new HookMap(() => new AsyncSeriesBailHook<[BuildContext], ArtifactInfo | undefined>(["ctx"])),
    resolveSource: new HookMap(() => new AsyncSeriesBailHook<[SourceRequest, RootfsTree, BuildContext], true | undefined>(["request", "tree", "ctx"])),
    skeleton: stage(),
    overlay: stage(),
    busybox: stage(),
    init: stage(),
    agent: stage(),
    mappings: stage(),
    beforeArchive: stage(),
    archive: new AsyncSeriesBailHook(["tree", "ctx"]),
    compressor: new HookMap(() => new SyncBailHook<[], Compressor | undefined>([])),
    manifest: new AsyncSeriesWaterfallHook(["manifest", "ctx"]),
    afterBuild: new AsyncSeriesHook(["result", "ctx"]),
    done: new AsyncSeriesHook(["result"]),
    failed: new SyncHook(["error"]),
    log: new SyncHook(["event"]),
    progress: new SyncHook(["info"]),
  };
}

/** The keys of a HookMap that have at least one tap (e.g. the compressors on offer). */
export function hookMapKeys(map: T.HookMap<any>): string[] {
  const inner = (map as unknown as { _map: Map<string, { isUsed(): boolean }> })._map;
  return [...inner.entries()].filter(([, h]) => h.isUsed()).map(([k]) => k).sort();
}
