import type { Compressor } from "@fledge/cpio";
import type { VolantManifest } from "@fledge/manifest";
import { AsyncSeriesBailHook, AsyncSeriesHook, AsyncSeriesWaterfallHook, HookMap, SyncBailHook, SyncHook } from "./tapable.js";
import type * as T from "tapable";
import type { ArtifactInfo, BuildContext, BuildResult, Check, LogEvent, ProgressInfo, SourceRequest } from "./context.js";
import type { InputRegistry } from "./inputs.js";
import type { RootfsTree } from "./tree.js";

/**
 * Extra tap options every fledge hook takes besides tapable's `name`, `stage` and `before`:
 * `enforce: "pre"` runs the tap before fledge's built-in taps of the hook, `"post"` after
 * them (see `Stage`).
 */
export interface TapOptions {
  enforce?: "pre" | "post";
}

type Opts = TapOptions;

/** A stage of the tree: plugins edit the tree in place. */
export type StageHook = T.AsyncSeriesHook<[RootfsTree, BuildContext], Opts>;

/**
 * Every extension point of a build, in the order a build reaches them. Created once per
 * Builder, frozen: plugins tap these, they never add or replace hooks. docs/plugins.md says
 * for each when it runs, whether it is sync or async, and what a tap returns.
 */
export interface FledgeHooks {
  /**
   * Pre-flight: everything that can be known before anything is fetched or written. Runs in
   * `fledge build`, `fledge validate` and `fledge update`. Report problems with
   * `check.problem(keyPath, message, hint)`; every tap runs, and every problem is listed.
   */
  check: T.AsyncSeriesHook<[Check, BuildContext], Opts>;
  /** After pre-flight passed, before inputs are declared and resolved. */
  beforeBuild: T.AsyncSeriesHook<[BuildContext], Opts>;
  /** Declare the build's downloads with `inputs.add(…)`; they are resolved together, then locked. */
  inputs: T.AsyncSeriesHook<[InputRegistry, BuildContext], Opts>;
  /** Build strategies keyed by `strategy` in fledge.toml (`initramfs` is built in). Bail with the artifact. */
  strategy: T.HookMap<T.AsyncSeriesBailHook<[BuildContext], ArtifactInfo | undefined, Opts>>;
  /** Rootfs sources keyed by overlay kind (`image`, `tarball`, …): overlay the request's entries into the tree, return true. */
  resolveSource: T.HookMap<T.AsyncSeriesBailHook<[SourceRequest, RootfsTree, BuildContext], true | undefined, Opts>>;
  /** Tree stage 1: directories and the device nodes the kernel needs before /init. */
  skeleton: StageHook;
  /** Tree stage 2: rootfs sources (`[source] image`, `[[overlay]]`), through `resolveSource`. */
  overlay: StageHook;
  /** Tree stage 3: busybox and its applet links. */
  busybox: StageHook;
  /** Tree stage 4: /init, by init mode. */
  init: StageHook;
  /** Tree stage 5: the kestrel agent (default mode). */
  agent: StageHook;
  /** Tree stage 6: the user's [mappings]. */
  mappings: StageHook;
  /** Tree stage 7: last chance to edit the tree. */
  beforeArchive: StageHook;
  /** initramfs: serialise and compress the tree to the artifact's staged file. Bail with the artifact. */
  archive: T.AsyncSeriesBailHook<[RootfsTree, BuildContext], ArtifactInfo | undefined, Opts>;
  /** Compressors keyed by name; a tap returns the Compressor. */
  compressor: T.HookMap<T.SyncBailHook<[], Compressor | undefined, Opts>>;
  /** The manifest object, passed through every tap (waterfall) before it is written. */
  manifest: T.AsyncSeriesWaterfallHook<[VolantManifest, BuildContext], VolantManifest, Opts>;
  /**
   * Post-build steps ordered by `stage: AfterBuildStage.*`. Below `COMMIT` (VERIFY, SBOM,
   * SIGN) they run on the staged files and a failure leaves nothing under the output names;
   * from `COMMIT` on (UPLOAD, REPORT) the outputs are in place, and a failure keeps them.
   */
  afterBuild: T.AsyncSeriesHook<[BuildResult, BuildContext], Opts>;
  /** The build succeeded, everything is written. */
  done: T.AsyncSeriesHook<[BuildResult], Opts>;
  /** The build failed. */
  failed: T.SyncHook<[Error], void, Opts>;
  /** Messages for the user (core never prints: the CLI taps this). */
  log: T.SyncHook<[LogEvent], void, Opts>;
  /** Progress of long work (downloads, archiving). */
  progress: T.SyncHook<[ProgressInfo], void, Opts>;
}

/**
 * Where a tap runs within its hook: lower stages first; taps of one stage run in the order
 * they were tapped — plugins before fledge's built-ins, which tap at `DEFAULT`.
 */
export const Stage = {
  /** `enforce: "pre"`: before everything of the default stage, built-ins included. */
  PRE: -1000,
  /** tapable's default: your taps, then fledge's built-in tap of the same hook. */
  DEFAULT: 0,
  /** `enforce: "post"`: after fledge's built-in taps. */
  POST: 1000,
} as const;

/** Stages of `afterBuild` taps: lower runs first. */
export const AfterBuildStage = {
  /** Verify the staged artifact (e.g. a boot smoke test of `result.artifact.stagedPath`). */
  VERIFY: -100,
  /** Produce an SBOM or other attestations (also the stage of a tap that gives none). */
  SBOM: 0,
  /** Sign the staged artifact. */
  SIGN: 100,
  /** fledge moves every output into place, all together (the built-in `fledge:outputs` tap). */
  COMMIT: 150,
  /** Upload or publish the written files. A failure keeps them. */
  UPLOAD: 200,
  /** Report. A failure keeps the files. */
  REPORT: 1000,
} as const;

/** The tree stages, in the order `runTreeStages` runs them. */
export const TREE_STAGES = ["skeleton", "overlay", "busybox", "init", "agent", "mappings", "beforeArchive"] as const;
export type TreeStage = (typeof TREE_STAGES)[number];

/** Hooks whose taps must be synchronous. */
export const SYNC_HOOKS: ReadonlySet<string> = new Set(["failed", "log", "progress", "compressor"]);

const mapKeys = new WeakMap<object, Set<string>>();

function keyed<H>(factory: (key: string) => H): T.HookMap<H> {
  const map = new HookMap<H>(factory);
  const keys = new Set<string>();
  mapKeys.set(map, keys);
  map.intercept({
    factory: (key: string, hook: H) => {
      keys.add(key);
      return hook;
    },
  });
  return map as T.HookMap<H>;
}

/** The keys of a HookMap of `createHooks` that have at least one tap (e.g. the strategies on offer), sorted. */
export function tappedKeys<H extends { isUsed(): boolean }>(map: T.HookMap<H>): string[] {
  const keys = mapKeys.get(map) ?? new Set<string>();
  return [...keys].filter((k) => map.get(k)?.isUsed()).sort();
}

export function createHooks(): FledgeHooks {
  const stage = () => new AsyncSeriesHook<[RootfsTree, BuildContext], Opts>(["tree", "ctx"]);
  return {
    check: new AsyncSeriesHook(["check", "ctx"]),
    beforeBuild: new AsyncSeriesHook(["ctx"]),
    inputs: new AsyncSeriesHook(["inputs", "ctx"]),
    strategy: keyed(() => new AsyncSeriesBailHook<[BuildContext], ArtifactInfo | undefined, Opts>(["ctx"])),
    resolveSource: keyed(() => new AsyncSeriesBailHook<[SourceRequest, RootfsTree, BuildContext], true | undefined, Opts>(["request", "tree", "ctx"])),
    skeleton: stage(),
    overlay: stage(),
    busybox: stage(),
    init: stage(),
    agent: stage(),
    mappings: stage(),
    beforeArchive: stage(),
    archive: new AsyncSeriesBailHook(["tree", "ctx"]),
    compressor: keyed(() => new SyncBailHook<[], Compressor | undefined, Opts>([])),
    manifest: new AsyncSeriesWaterfallHook(["manifest", "ctx"]),
    afterBuild: new AsyncSeriesHook(["result", "ctx"]),
    done: new AsyncSeriesHook(["result"]),
    failed: new SyncHook(["error"]),
    log: new SyncHook(["event"]),
    progress: new SyncHook(["info"]),
  };
}
