export { VolantManifest, MANIFEST_SCHEMA_URL } from "./model.js";
export { mergeManifest, ManifestError, type BuildMetadata, type MergeResult } from "./merge.js";
