export { ConfigError, formatIssue, type ConfigIssue } from "./errors.js";
export { readToml, readTomlText, parseToml, stripBom, MAX_TOML_BYTES, MAX_TOML_DEPTH } from "./toml.js";
export {
  FledgeTomlInput,
  AgentInput,
  InitInput,
  SourceInput,
  FilesystemInput,
  OutputInput,
  FetchInput,
  OverlayInput,
  PluginInput,
  DEFAULT_BUSYBOX_URL,
  DEFAULT_BUSYBOX_SHA256,
} from "./schema.js";
export {
  loadFledgeConfig,
  parseFledgeConfig,
  normalizeFledgeConfig,
  checkFledgeConfig,
  checkFledgeData,
  byPosition,
  dropEchoes,
  type FledgeConfig,
  type FledgeCheck,
  type AgentConfig,
  type InitConfig,
  type Mapping,
  type PluginSpec,
  type OverlaySpec,
  type LoadOptions,
} from "./fledge.js";
export {
  ManifestTomlInput,
  loadManifestToml,
  parseManifestToml,
  normalizeManifestToml,
  checkManifestToml,
  checkManifestTomlData,
  defaultPluginName,
  type ManifestToml,
  type ManifestConfig,
  type ManifestTomlCheck,
} from "./manifest-toml.js";
export { fledgeTomlJsonSchema, manifestTomlJsonSchema, jsonSchemaText } from "./json-schema.js";
export { didYouMean, keyPathOf } from "./zod-issues.js";
export { indexKeys, locateKey, type Position } from "./locate.js";
export { placeIssues, parseKeyPath } from "./place.js";
