export {
  Fetcher,
  KEEP_IN_MEMORY_MAX,
  normalizeSha256,
  type FetchRequest,
  type FetchResult,
  type FetcherOptions,
  type FetchLog,
  type ProgressEvent,
} from "./fetch.js";
export { ContentCache, defaultCacheDir, type CacheEntry, type PruneResult, type UrlRecord, type VerifyResult } from "./cache.js";
export { FetchError, isFetchError } from "./errors.js";
export { HttpClient, HTTP_DEFAULTS, HTTP_ENV, httpOptionsFromEnv, parseDuration, formatDuration, parseRetryAfter, type HttpOptions, type GetOptions, type ResponseInfo } from "./http.js";
export { applyMirrors, parseMirrors, type Mirror } from "./mirrors.js";
export { hashFile, parseChecksums } from "./sha.js";
export { resolveGitHubRelease, DEFAULT_GITHUB_API, type ReleaseRequest, type ResolvedRelease } from "./github.js";
