export { Builder, resolveMtime, type BuilderInit, type FledgePlugin } from "./builder.js";
export { build, type BuildRequest } from "./build.js";
export { createHooks, hookMapKeys, AfterBuildStage, STAGE_HOOKS, type FledgeHooks, type StageHook } from "./hooks.js";
export {
  DEFAULT_MTIME,
  type BuildContext,
  type BuildOptions,
  type BuildResult,
  type ArtifactInfo,
  type LogEvent,
  type LogLevel,
  type ProgressInfo,
  type SourceRequest,
} from "./context.js";
export { RootfsTree, imagePath, type TreeNode } from "./tree.js";
export { FledgeError, PluginError, isFledgeError, rootCause } from "./errors.js";
export { mappedFileMode } from "./modes.js";
export { loadPlugins } from "./load-plugins.js";
export * from "./plugins/index.js";
