// The public API of @fledge/core: what plugin authors and the CLI need, documented in
// docs/plugins.md. Everything else is private to this package.

// Building
export { build, preflight, updateLock, type BuildRequest, type PreflightRequest, type Preflight, type UpdateRequest } from "./build.js";
export { Builder, PostBuildError, resolveMtime, type BuilderInit, type FledgePlugin, type CheckReport, type UpdateResult } from "./builder.js";

// Hooks and ordering
export { AfterBuildStage, Stage, TREE_STAGES, tappedKeys, type FledgeHooks, type StageHook, type TapOptions, type TreeStage } from "./hooks.js";
export { runTreeStages, type TreeStagesOptions } from "./stages.js";

// What taps receive
export {
  DEFAULT_MTIME,
  type ArtifactInfo,
  type BlobRequest,
  type BuildContext,
  type BuildOptions,
  type BuildResult,
  type Check,
  type FetchedFile,
  type LogEvent,
  type LogLevel,
  type OutputInfo,
  type ProgressInfo,
  type SourceRequest,
} from "./context.js";
export { RootfsTree, imagePath, STREAM_MEMORY_LIMIT, type NodeMeta, type NodeOptions, type RootfsTreeOptions, type TreeNode } from "./tree.js";

// Inputs and fledge.lock
export {
  InputSet,
  lockChanges,
  type BuildInputs,
  type CustomInput,
  type InputBase,
  type InputHandle,
  type InputIO,
  type InputRegistry,
  type InputRequest,
  type InputSetOptions,
  type LockChange,
  type LockMode,
  type ReleaseInput,
  type ResolvedInput,
  type UrlInput,
} from "./inputs.js";
export { LOCK_FILE, readLock, type LockEntry, type Lockfile } from "./lockfile.js";

// Outputs
export { OutputPathError, type DiscardReason, type Output, type Outputs } from "./outputs.js";

// Manifest defaults
export { MANIFEST_DEFAULT_KEYS, type ManifestDefault, type ManifestDefaultKey, type ManifestDefaults, type ManifestDefaultValues } from "./manifest-defaults.js";

// Plugin modules
export { FIRST_PARTY } from "./first-party.js";
export { defaultArtifactName } from "./artifact-name.js";
export type { BundledPlugins, OptionsSchema, PluginClass, PluginExport, PluginFactory } from "./load-plugins.js";

// Errors
export { CheckError, FledgeError, PluginError, isFledgeError, rootCause } from "./errors.js";
