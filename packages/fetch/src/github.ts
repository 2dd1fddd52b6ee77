import { FetchError } from "./errors.js";
import type { Fetcher } from "./fetch.js";
import { parseChecksums } from "./sha.js";

export const DEFAULT_GITHUB_API = "https://api.github.com";

export interface ReleaseRequest {
  /** `owner/name` (default `volantvm/volant`). */
  repo?: string;
  /** `latest` or a tag such as `v0.2.0`. */
  version: string;
  /** The asset to take (default `kestrel`). */
  asset?: string;
  /** The sha256sum-format asset to verify against when present (default `checksums.txt`). */
  checksumsAsset?: string;
  /** What this is, for messages (default the asset name). */
  label?: string;
}

export interface ResolvedRelease {
  repo: string;
  /** The tag the version resolved to. */
  tag: string;
  /** The asset's download URL (`browser_download_url`). */
  url: string;
  /** From the release's checksums asset; undefined when the release has none. */
  sha256?: string;
  checksumsUrl?: string;
  /** Things the user should know (e.g. no checksums asset: the download is not verified). */
  warnings: string[];
}

interface GhRelease {
  tag_name?: string;
  assets?: { name?: string; browser_download_url?: string }[];
}

/**
 * Resolves a GitHub release to one asset through the releases API
 * (`GET /repos/<repo>/releases/latest` or `/releases/tags/<tag>`), reading the API base from
 * `FLEDGE_GITHUB_API` (default https://api.github.com) and sending `GITHUB_TOKEN` as a bearer
 * token to the API only. When the release has a checksums asset, the asset's sha256 comes from
 * it, and a release whose checksums do not list the asset is refused.
 */
export async function resolveGitHubRelease(fetcher: Fetcher, req: ReleaseRequest): Promise<ResolvedRelease> {
  const repo = req.repo ?? "volantvm/volant";
  const assetName = req.asset ?? "kestrel";
  const checksumsName = req.checksumsAsset ?? "checksums.txt";
  const label = req.label ?? assetName;
  const base = (fetcher.env.FLEDGE_GITHUB_API || DEFAULT_GITHUB_API).replace(/\/+$/, "");
  const version = req.version.trim();
  const what = version === "latest" ? "the latest release" : `release ${version}`;
  const apiUrl = version === "latest" ? `${base}/repos/${repo}/releases/latest` : `${base}/repos/${repo}/releases/tags/${encodeURIComponent(version)}`;
  const headers: Record<string, string> = { accept: "application/vnd.github+json", "x-github-api-version": "2022-11-28" };
  const token = fetcher.env.GITHUB_TOKEN?.trim();
  if (token) headers.authorization = `Bearer ${token}`;

  let text: string;
  try {
    ({ text } = await fetcher.getText(apiUrl, { label: `${label} (${repo} ${what})`, headers, maxBytes: 8 * 1024 * 1024 }));
  } catch (err) {
    const e = err as FetchError;
    if (e.code === "FLEDGE_HTTP" && e.status === 404)
      throw new FetchError("FLEDGE_RELEASE", apiUrl, `${label}: ${what} of ${repo} not found (${apiUrl} answered 404)`, {
        cause: err,
        hint: version === "latest" ? `${repo} has no published release yet; pin a tag with [agent] version` : `check the tag in [agent] version; tags look like "v0.1.0"`,
      });
    if (e.code === "FLEDGE_HTTP" && e.status === 401 && token)
      throw new FetchError("FLEDGE_HTTP", apiUrl, e.message, { cause: err, status: 401, hint: "GITHUB_TOKEN was refused: check it, or unset it (public releases need no token)" });
    throw err;
  }
  let rel: GhRelease;
  try {
    rel = JSON.parse(text) as GhRelease;
  } catch {
    throw new FetchError("FLEDGE_RELEASE", apiUrl, `${label}: ${apiUrl} did not answer JSON`, { hint: "check FLEDGE_GITHUB_API" });
  }
  const tag = rel.tag_name;
  if (typeof tag !== "string" || !tag) throw new FetchError("FLEDGE_RELEASE", apiUrl, `${label}: ${apiUrl} answered a release without tag_name`);
  const assets = Array.isArray(rel.assets) ? rel.assets : [];
  const asset = assets.find((a) => a.name === assetName);
  if (!asset?.browser_download_url) {
    const names = assets.map((a) => a.name).filter(Boolean);
    throw new FetchError("FLEDGE_RELEASE", apiUrl, `${label}: release ${tag} of ${repo} has no asset named "${assetName}"${names.length ? ` (it has: ${names.join(", ")})` : " (it has no assets)"}`, {
      hint: 'pick a release that ships kestrel with [agent] version, or use source_strategy = "local" / "http"',
    });
  }
  const out: ResolvedRelease = { repo, tag, url: asset.browser_download_url, warnings: [] };
  const sums = assets.find((a) => a.name === checksumsName);
  if (sums?.browser_download_url) {
    const { text: sumsText } = await fetcher.getText(sums.browser_download_url, { label: `${label} (${checksumsName} of ${tag})`, maxBytes: 1024 * 1024 });
    const sha = parseChecksums(sumsText).get(assetName);
    if (!sha)
      throw new FetchError("FLEDGE_RELEASE", sums.browser_download_url, `${label}: ${checksumsName} of ${repo} ${tag} has no line for "${assetName}", so it cannot be verified`, {
        hint: 'report it to the release\'s maintainers, or pin the agent with source_strategy = "http" and a checksum',
      });
    out.sha256 = sha;
    out.checksumsUrl = sums.browser_download_url;
  } else {
    out.warnings.push(`${label}: release ${tag} of ${repo} has no ${checksumsName}: the download is not verified against a published checksum (fledge.lock pins what was downloaded)`);
  }
  return out;
}
