export { VolantManifest, MANIFEST_SCHEMA_URL, validateVolantManifest } from "./model.js";
export {
  mergeManifest,
  composeManifest,
  checkManifest,
  ManifestError,
  KESTREL_PORT,
  type BuildMetadata,
  type MergeResult,
  type ComposeResult,
} from "./merge.js";
export { estimateKernelCmdline, volantNormalized, goJson, KERNEL_CMDLINE_MAX, type CmdlineEstimate } from "./cmdline.js";
