export { Fetcher, normalizeSha256, type FetchRequest, type FetchResult, type FetcherOptions, type ProgressEvent } from "./fetch.js";
export { ContentCache, defaultCacheDir } from "./cache.js";
export { FetchError } from "./errors.js";
