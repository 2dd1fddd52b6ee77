export { ConfigError, formatIssue, type ConfigIssue } from "./errors.js";
export { readToml, parseToml } from "./toml.js";
export {
  FledgeTomlInput,
  AgentInput,
  InitInput,
  SourceInput,
  FilesystemInput,
  OutputInput,
  FetchInput,
  DEFAULT_BUSYBOX_URL,
  DEFAULT_BUSYBOX_SHA256,
} from "./schema.js";
export {
  loadFledgeConfig,
  parseFledgeConfig,
  normalizeFledgeConfig,
  type FledgeConfig,
  type AgentConfig,
  type InitConfig,
  type Mapping,
  type LoadOptions,
} from "./fledge.js";
export {
  ManifestTomlInput,
  loadManifestToml,
  parseManifestToml,
  normalizeManifestToml,
  type ManifestToml,
  type ManifestConfig,
} from "./manifest-toml.js";
export { didYouMean } from "./zod-issues.js";
