import { readFile, rm, writeFile } from "node:fs/promises";
import type { Readable } from "node:stream";
import type { Fetcher } from "@fledge/fetch";
import { findCredentials, parseChallenges, type Challenge, type CredentialLookup } from "./auth.js";
import { OciError } from "./errors.js";
import { MANIFEST_ACCEPT, MAX_DOCUMENT, type Platform } from "./image.js";
import type { LayerSpec } from "./layers.js";
import { formatReference, isLoopbackHost, registryBaseUrl, type RegistryReference } from "./reference.js";
import { resolveDocuments, sha256hex, verifyDocument, type ImageSource, type Pin, type ResolvedImage } from "./source.js";

export type OciLog = (level: "debug" | "info" | "warn", message: string) => void;

export interface RegistryOptions {
  fetcher: Fetcher;
  /** For credential files (HOME, REGISTRY_AUTH_FILE, DOCKER_CONFIG, XDG_*). */
  env?: NodeJS.ProcessEnv;
  log?: OciLog;
}

interface HttpLikeError extends Error {
  code?: string;
  status?: number;
  hint?: string;
  headers?: Record<string, string | string[] | undefined>;
}

const isFetchError = (e: unknown): e is HttpLikeError => e instanceof Error && e.name === "FetchError";
const header = (h: Record<string, string | string[] | undefined> | undefined, n: string) => {
  const v = h?.[n];
  return Array.isArray(v) ? v[0] : v;
};

/** The error a sink threw, if the HTTP client wrapped it. */
function unwrap(err: unknown): unknown {
  const cause = (err as { cause?: unknown })?.cause;
  if (isFetchError(err) && cause instanceof Error && cause.name === "OciError") return cause;
  return err;
}

/**
 * An image in an OCI distribution (Docker registry v2) registry, over @fledge/fetch's HTTP client
 * (timeouts, retries with backoff, `Retry-After`, redirects that never carry credentials to another
 * origin). Anonymous or credentialed bearer tokens, or basic auth, as the registry's challenge asks;
 * `FLEDGE_MIRRORS` / `[fetch] mirrors` rewrite the API URLs; plain HTTP only for loopback
 * registries. Manifests, indexes and configs are verified against their digests and kept in the
 * download cache by digest, so a pinned image resolves with no request at all.
 */
export class RegistrySource implements ImageSource {
  readonly remote = true;
  readonly description: string;
  readonly #fetcher: Fetcher;
  readonly #env: NodeJS.ProcessEnv;
  readonly #log: OciLog;
  readonly #base: string;
  #authorization?: string;
  #creds?: Promise<CredentialLookup>;

  constructor(
    readonly ref: RegistryReference,
    opts: RegistryOptions,
  ) {
    this.description = formatReference(ref);
    this.#fetcher = opts.fetcher;
    this.#env = opts.env ?? opts.fetcher.env ?? process.env;
    this.#log = opts.log ?? (() => {});
    this.#base = registryBaseUrl(ref.registry);
  }

  /** The API URL before mirrors (what URL records are keyed by). */
  #url(path: string): string {
    return `${this.#base}/v2/${this.ref.repository}/${path}`;
  }

  #credentials(): Promise<CredentialLookup> {
    this.#creds ??= findCredentials(this.ref.registry, this.ref.repository, this.#env).then((c) => {
      for (const n of c.notes) this.#log("warn", n);
      if (c.credential) this.#log("debug", `${this.ref.registry}: using credentials from ${c.credential.source}`);
      return c;
    });
    return this.#creds;
  }

  #offline(what: string): OciError {
    return new OciError("FLEDGE_OCI_OFFLINE", `${this.description}: ${what} is not in the cache and the network is off (--offline)`, {
      hint: "build once with the network (fledge.lock then pins the digest and the cache holds the layers), then --offline works",
    });
  }

  /** One GET to the registry API, authenticating when challenged (once). */
  async #get(path: string, label: string, accept: string, sink: (body: Readable, headers: Record<string, string | string[] | undefined>) => Promise<void>, maxBytes?: number): Promise<void> {
    if (this.#fetcher.offline) throw this.#offline(label);
    const url = this.#fetcher.mirrored(this.#url(path), label);
    for (let attempt = 0; ; attempt++) {
      try {
        await this.#fetcher.http.get(url, {
          label,
          headers: { accept, ...(this.#authorization ? { authorization: this.#authorization } : {}) },
          maxBytes,
          sink: (body, info) => sink(body, info.headers),
        });
        return;
      } catch (e) {
        const err = unwrap(e);
        if (!isFetchError(err)) throw err;
        if (err.status === 401 && attempt === 0) {
          await this.#authenticate(parseChallenges(err.headers?.["www-authenticate"]), url);
          continue;
        }
        if (err.status === 401 || err.status === 403) throw await this.#denied(err.status);
        throw err;
      }
    }
  }

  async #denied(status: number): Promise<OciError> {
    const c = await this.#credentials();
    const where = `${this.ref.registry} refused access to ${this.ref.repository} (HTTP ${status})`;
    if (c.credential)
      return new OciError("FLEDGE_OCI_AUTH", `${where} with the credentials from ${c.credential.source}`, {
        hint: `check that this account may pull ${this.ref.repository}, or log in again: docker login ${this.ref.registry} (or podman login)`,
      });
    return new OciError("FLEDGE_OCI_AUTH", `${where}: the repository does not exist, or it needs credentials and none are configured`, {
      hint: `log in with "docker login ${this.ref.registry}" or "podman login ${this.ref.registry}"; fledge reads ${authFilesHint(c)}`,
    });
  }

  /** Answers a 401 challenge: a bearer token from the realm (anonymous or with credentials), or basic auth. */
  async #authenticate(challenges: Challenge[], url: string): Promise<void> {
    const bearer = challenges.find((c) => c.scheme === "bearer");
    const basic = challenges.find((c) => c.scheme === "basic");
    const { credential } = await this.#credentials();
    const userpass = credential?.username !== undefined && credential.password !== undefined ? Buffer.from(`${credential.username}:${credential.password}`).toString("base64") : undefined;
    if (credential?.identityToken && !userpass) this.#log("warn", `${credential.source} holds an OAuth identity token for ${this.ref.registry}, which fledge cannot use yet; trying without credentials`);
    if (bearer) {
      const realm = bearer.params.realm;
      if (!realm) throw new OciError("FLEDGE_OCI_REGISTRY", `${this.ref.registry} asked for a bearer token without saying where to get it (no realm)`);
      let token: URL;
      try {
        token = new URL(realm);
      } catch {
        throw new OciError("FLEDGE_OCI_REGISTRY", `${this.ref.registry}: the token realm ${JSON.stringify(realm)} is not a URL`);
      }
      if (token.protocol !== "https:" && token.protocol !== "http:") throw new OciError("FLEDGE_OCI_REGISTRY", `${this.ref.registry}: the token realm ${realm} is not http(s)`);
      if (userpass && token.protocol === "http:" && !isLoopbackHost(token.host))
        throw new OciError("FLEDGE_OCI_AUTH", `${this.ref.registry} wants credentials sent to ${realm} over plain HTTP; fledge refuses`, {
          hint: "use the registry over HTTPS",
        });
      if (bearer.params.service) token.searchParams.set("service", bearer.params.service);
      token.searchParams.set("scope", `repository:${this.ref.repository}:pull`);
      let text = "";
      try {
        const r = await this.#fetcher.http.get(token.href, {
          label: `token for ${this.ref.registry}`,
          headers: userpass ? { authorization: `Basic ${userpass}` } : {},
          maxBytes: 1 << 20,
          sink: async (body) => {
            const parts: Buffer[] = [];
            for await (const c of body) parts.push(c as Buffer);
            text = Buffer.concat(parts).toString("utf8");
          },
        });
        void r;
      } catch (err) {
        if (isFetchError(err) && (err.status === 401 || err.status === 403)) {
          throw new OciError(
            "FLEDGE_OCI_AUTH",
            credential ? `${token.origin} refused the credentials for ${this.ref.registry} from ${credential.source}` : `${token.origin} refused an anonymous token for ${this.ref.repository}`,
            {
              hint: credential
                ? `log in again: docker login ${this.ref.registry} (or podman login)`
                : `log in with "docker login ${this.ref.registry}" or "podman login ${this.ref.registry}"; fledge reads ${authFilesHint(await this.#credentials())}`,
            },
          );
        }
        throw err;
      }
      let json: { token?: unknown; access_token?: unknown };
      try {
        json = JSON.parse(text) as typeof json;
      } catch {
        throw new OciError("FLEDGE_OCI_REGISTRY", `${token.origin} answered the token request with something that is not JSON`);
      }
      const t = typeof json.token === "string" && json.token ? json.token : typeof json.access_token === "string" ? json.access_token : "";
      if (!t) throw new OciError("FLEDGE_OCI_REGISTRY", `${token.origin} answered the token request without a token`);
      this.#authorization = `Bearer ${t}`;
      this.#log("debug", `${this.ref.registry}: ${credential ? "authenticated" : "anonymous"} token for ${this.ref.repository} from ${token.origin}`);
      return;
    }
    if (basic) {
      if (!userpass) throw await this.#denied(401);
      if (new URL(url).protocol === "http:" && !isLoopbackHost(new URL(url).host))
        throw new OciError("FLEDGE_OCI_AUTH", `${this.ref.registry} wants a password over plain HTTP; fledge refuses`, { hint: "use the registry over HTTPS" });
      this.#authorization = `Basic ${userpass}`;
      return;
    }
    throw new OciError("FLEDGE_OCI_AUTH", `${this.ref.registry} asked for authentication fledge does not speak (${challenges.map((c) => c.scheme).join(", ") || "no WWW-Authenticate header"})`);
  }

  /** A small document (manifest, index, config) by tag or digest: bytes and headers. */
  async #document(reference: string, kind: "manifests" | "blobs", label: string): Promise<{ bytes: Buffer; headers: Record<string, string | string[] | undefined> }> {
    let bytes = Buffer.alloc(0);
    let headers: Record<string, string | string[] | undefined> = {};
    try {
      await this.#get(
        `${kind}/${reference}`,
        label,
        kind === "manifests" ? MANIFEST_ACCEPT : "*/*",
        async (body, h) => {
          const parts: Buffer[] = [];
          let n = 0;
          for await (const c of body) {
            n += (c as Buffer).length;
            if (n > MAX_DOCUMENT) {
              body.destroy();
              throw new OciError("FLEDGE_OCI_TOO_BIG", `${label} is larger than ${MAX_DOCUMENT} bytes`);
            }
            parts.push(c as Buffer);
          }
          bytes = Buffer.concat(parts);
          headers = h;
        },
        MAX_DOCUMENT,
      );
    } catch (err) {
      if (isFetchError(err) && err.status === 404) throw await this.#notFound(reference, kind);
      throw this.#wrap(err);
    }
    return { bytes, headers };
  }

  #wrap(err: unknown): unknown {
    if (!isFetchError(err)) return err;
    return new OciError("FLEDGE_OCI_REGISTRY", `${this.description}: ${err.message}`, {
      cause: err,
      hint: err.hint ?? (/NETWORK$/.test(err.code ?? "") ? `is the registry at ${this.ref.registry} up and reachable? (a mirror in FLEDGE_MIRRORS or [fetch] mirrors may stand in for it)` : undefined),
    });
  }

  /** Says what is missing: the repository, or the tag (listing the tags there are). */
  async #notFound(reference: string, kind: "manifests" | "blobs"): Promise<OciError> {
    let tags: string[] | undefined;
    let repoMissing = false;
    try {
      let text = "";
      await this.#get(
        "tags/list",
        `tags of ${this.description}`,
        "application/json",
        async (body) => {
          const parts: Buffer[] = [];
          for await (const c of body) parts.push(c as Buffer);
          text = Buffer.concat(parts).toString("utf8");
        },
        1 << 20,
      );
      const j = JSON.parse(text) as { tags?: unknown };
      tags = Array.isArray(j.tags) ? j.tags.filter((t): t is string => typeof t === "string").sort() : [];
    } catch (err) {
      if (isFetchError(err) && err.status === 404) repoMissing = true;
    }
    if (repoMissing) return new OciError("FLEDGE_OCI_NOT_FOUND", `${this.ref.registry} has no repository ${this.ref.repository}`, { hint: "check the image name (and the registry host) in fledge.toml" });
    if (kind === "blobs")
      return new OciError("FLEDGE_OCI_NOT_FOUND", `${this.description}: the registry has no blob ${reference}, which the image refers to`, { hint: "the image in the registry is incomplete; push it again" });
    const what = reference.startsWith("sha256:") ? `digest ${reference}` : `tag "${reference}"`;
    const list = tags?.length ? `; its tags: ${tags.slice(0, 20).join(", ")}${tags.length > 20 ? `, … (${tags.length} in all)` : ""}` : "";
    return new OciError("FLEDGE_OCI_NOT_FOUND", `${this.ref.registry}/${this.ref.repository} has no ${what}${list}`, {
      hint: reference.startsWith("sha256:") ? 'the digest is no longer in the registry; run "fledge update" to resolve the tag again' : "check the tag in fledge.toml",
    });
  }

  /** A document by digest from the download cache, verified; a mismatch is removed and is a miss. */
  async #cached(digest: string): Promise<Buffer | undefined> {
    const hex = digest.slice("sha256:".length);
    const path = this.#fetcher.cache.pathFor(hex);
    let bytes: Buffer;
    try {
      bytes = await readFile(path);
    } catch {
      return undefined;
    }
    if (bytes.length > MAX_DOCUMENT || sha256hex(bytes) !== hex) {
      await rm(path, { force: true });
      return undefined;
    }
    await this.#fetcher.cache.touch(hex);
    return bytes;
  }

  blobUrl(layer: LayerSpec): string | undefined {
    return layer.digest ? this.#url(`blobs/${layer.digest}`) : undefined;
  }

  async #store(digest: string, bytes: Buffer, url?: string): Promise<void> {
    const cache = this.#fetcher.cache;
    const temp = await cache.tempPath();
    try {
      await writeFile(temp, bytes, { mode: 0o644 });
      await cache.commit(temp, digest.slice("sha256:".length));
      if (url) await cache.recordUrl(url, digest.slice("sha256:".length));
    } catch (err) {
      await cache.discard(temp);
      this.#log("debug", `could not cache ${digest}: ${(err as Error).message}`);
    }
  }

  /** A document by digest: from the cache, else from the registry (verified, then cached). */
  async #byDigest(d: { digest: string; size?: number }, kind: "manifests" | "blobs", label: string): Promise<Buffer> {
    const hit = await this.#cached(d.digest);
    if (hit) {
      verifyDocument(hit, d.digest, label, d.size);
      return hit;
    }
    if (this.#fetcher.offline) throw this.#offline(label);
    const { bytes } = await this.#document(d.digest, kind, label);
    verifyDocument(bytes, d.digest, label, d.size);
    await this.#store(d.digest, bytes, this.#url(`${kind}/${d.digest}`));
    return bytes;
  }

  async resolve(platform: Platform, pin?: Pin): Promise<ResolvedImage> {
    const ref = this.ref;
    let digest = pin?.digest ?? ref.digest;
    let top: Buffer;
    let mediaType: string | undefined;
    const tagUrl = ref.tag ? this.#url(`manifests/${ref.tag}`) : undefined;
    if (!digest && this.#fetcher.offline && tagUrl) {
      // Offline without a lock: what this tag served last time, if the cache remembers it.
      const rec = await this.#fetcher.cache.lookupUrl(tagUrl);
      if (!rec) throw this.#offline(`what tag "${ref.tag}" points at`);
      digest = `sha256:${rec.sha256}`;
      this.#log("info", `${this.description}: --offline, using ${digest}, what the tag pointed at on ${rec.fetchedAt}`);
    }
    if (digest) {
      top = await this.#byDigest({ digest }, "manifests", `${this.description}`);
    } else {
      const got = await this.#document(ref.tag!, "manifests", this.description);
      top = got.bytes;
      digest = `sha256:${sha256hex(top)}`;
      mediaType = header(got.headers, "content-type");
      const said = header(got.headers, "docker-content-digest");
      if (said && said !== digest)
        throw new OciError("FLEDGE_OCI_DIGEST", `${this.description}: the registry says the manifest is ${said}, but its bytes hash to ${digest}`, {
          hint: "the registry or a proxy changed the manifest; nothing was kept",
        });
      await this.#store(digest, top, tagUrl);
      this.#log("debug", `${this.description} → ${digest}`);
    }
    return resolveDocuments({
      reference: this.description,
      top: { bytes: top, digest, mediaType },
      platform,
      pin,
      get: (d, label, kind) => this.#byDigest(d, kind === "manifest" ? "manifests" : "blobs", label),
    });
  }

  async withBlob<T>(layer: LayerSpec, label: string, consume: (blob: AsyncIterable<Uint8Array>) => Promise<T>): Promise<T> {
    if (!layer.digest) throw new OciError("FLEDGE_OCI_FORMAT", `${label}: the layer has no digest`);
    let result: T | undefined;
    let received = 0;
    try {
      await this.#get(
        `blobs/${layer.digest}`,
        label,
        "*/*",
        async (body) => {
          received = 0;
          const counted = (async function* () {
            for await (const c of body) {
              received += (c as Buffer).length;
              yield c as Buffer;
            }
          })();
          result = await consume(counted);
        },
        layer.size !== undefined ? layer.size + 1 : undefined,
      );
    } catch (err) {
      if (isFetchError(err) && err.status === 404) throw await this.#notFound(layer.digest, "blobs");
      if (isFetchError(err) && layer.size !== undefined && received < layer.size && /(NETWORK|TIMEOUT)$/.test(err.code ?? ""))
        throw new OciError("FLEDGE_OCI_TRUNCATED", `${label}: the download ended after ${received} of ${layer.size} bytes (${err.message})`, {
          cause: err,
          hint: "the registry or the network cut the blob short; nothing was kept. Try again later, or use a mirror (FLEDGE_MIRRORS)",
        });
      throw this.#wrap(err);
    }
    return result as T;
  }

  async close(): Promise<void> {}
}

function authFilesHint(c: CredentialLookup): string {
  // biome-ignore lint/suspicious/noTemplateCurlyInString: the message names the variable as the containers docs write it
  return c.searched.length ? c.searched.join(", ") : "REGISTRY_AUTH_FILE, ${XDG_RUNTIME_DIR}/containers/auth.json, ~/.config/containers/auth.json and ~/.docker/config.json (none exists)";
}
