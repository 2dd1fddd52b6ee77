import { OciError } from "./errors.js";

export const MEDIA = {
  ociManifest: "application/vnd.oci.image.manifest.v1+json",
  ociIndex: "application/vnd.oci.image.index.v1+json",
  ociConfig: "application/vnd.oci.image.config.v1+json",
  dockerManifest: "application/vnd.docker.distribution.manifest.v2+json",
  dockerList: "application/vnd.docker.distribution.manifest.list.v2+json",
  dockerConfig: "application/vnd.docker.container.image.v1+json",
  dockerSchema1: "application/vnd.docker.distribution.manifest.v1+json",
  dockerSchema1Signed: "application/vnd.docker.distribution.manifest.v1+prettyjws",
} as const;

/** What fledge asks a registry for (manifests and indexes, OCI and Docker). */
export const MANIFEST_ACCEPT = [MEDIA.ociIndex, MEDIA.ociManifest, MEDIA.dockerList, MEDIA.dockerManifest].join(", ");

/** Largest manifest, index or config read (the distribution spec's own limit for manifests is 4 MiB). */
export const MAX_DOCUMENT = 4 << 20;

export interface Descriptor {
  mediaType: string;
  digest: string;
  size: number;
  platform?: Platform;
  annotations?: Record<string, string>;
  urls?: string[];
}

export interface Platform {
  os: string;
  architecture: string;
  variant?: string;
}

export interface ImageManifest {
  kind: "manifest";
  mediaType: string;
  config: Descriptor;
  layers: Descriptor[];
}

export interface ImageIndex {
  kind: "index";
  mediaType: string;
  manifests: Descriptor[];
}

/** The parts of an image config fledge uses. */
export interface ImageConfig {
  architecture?: string;
  os?: string;
  variant?: string;
  config: {
    Entrypoint?: string[] | null;
    Cmd?: string[] | null;
    Env?: string[] | null;
    WorkingDir?: string;
    ExposedPorts?: Record<string, unknown> | null;
    User?: string;
  };
  diffIDs: string[];
}

const DIGEST = /^sha256:[0-9a-f]{64}$/;

function formatError(what: string, problem: string): OciError {
  return new OciError("FLEDGE_OCI_FORMAT", `${what}: ${problem}`, { hint: "the image is malformed; rebuild or re-push it with a standard tool" });
}

function descriptor(v: unknown, what: string): Descriptor {
  const d = v as Record<string, unknown>;
  if (!d || typeof d !== "object") throw formatError(what, "a descriptor is not an object");
  if (typeof d.digest !== "string") throw formatError(what, "a descriptor has no digest");
  if (!DIGEST.test(d.digest)) {
    if (/^sha(384|512):/.test(d.digest)) throw new OciError("FLEDGE_OCI_UNSUPPORTED", `${what}: ${d.digest.split(":")[0]} digests are not supported (only sha256)`);
    throw formatError(what, `"${d.digest}" is not a sha256 digest`);
  }
  if (typeof d.size !== "number" || !Number.isSafeInteger(d.size) || d.size < 0) throw formatError(what, `the descriptor of ${d.digest} has no valid size`);
  const out: Descriptor = { mediaType: typeof d.mediaType === "string" ? d.mediaType : "", digest: d.digest, size: d.size };
  const p = d.platform as Record<string, unknown> | undefined;
  if (p && typeof p.os === "string" && typeof p.architecture === "string") out.platform = { os: p.os, architecture: p.architecture, ...(typeof p.variant === "string" && p.variant ? { variant: p.variant } : {}) };
  if (d.annotations && typeof d.annotations === "object") out.annotations = d.annotations as Record<string, string>;
  if (Array.isArray(d.urls)) out.urls = d.urls.filter((u): u is string => typeof u === "string");
  return out;
}

function parseJson(bytes: Uint8Array, what: string): Record<string, unknown> {
  if (bytes.length > MAX_DOCUMENT) throw new OciError("FLEDGE_OCI_TOO_BIG", `${what} is ${bytes.length} bytes, more than the ${MAX_DOCUMENT} fledge reads`);
  let v: unknown;
  try {
    v = JSON.parse(Buffer.from(bytes).toString("utf8"));
  } catch (err) {
    throw formatError(what, `not valid JSON (${(err as Error).message})`);
  }
  if (!v || typeof v !== "object" || Array.isArray(v)) throw formatError(what, "not a JSON object");
  return v as Record<string, unknown>;
}

/**
 * A manifest or an index, from its bytes. The media type comes from the document, else from the
 * transport (`Content-Type`, a descriptor), else from its shape.
 */
export function parseManifest(bytes: Uint8Array, what: string, declared?: string): ImageManifest | ImageIndex {
  const m = parseJson(bytes, what);
  const mediaType = (typeof m.mediaType === "string" && m.mediaType) || (declared && declared.split(";")[0]!.trim()) || "";
  if (mediaType === MEDIA.dockerSchema1 || mediaType === MEDIA.dockerSchema1Signed || m.schemaVersion === 1)
    throw new OciError("FLEDGE_OCI_UNSUPPORTED", `${what} is a Docker schema 1 manifest, which is deprecated and not supported`, {
      hint: "re-push the image with a current docker, buildah or skopeo (they write schema 2 / OCI)",
    });
  if (m.schemaVersion !== 2) throw formatError(what, `schemaVersion is ${JSON.stringify(m.schemaVersion)}, not 2`);
  const isIndex = mediaType === MEDIA.ociIndex || mediaType === MEDIA.dockerList || (!mediaType && Array.isArray(m.manifests) && !m.layers);
  if (isIndex) {
    if (!Array.isArray(m.manifests)) throw formatError(what, "an index without a manifests array");
    return { kind: "index", mediaType: mediaType || MEDIA.ociIndex, manifests: m.manifests.map((d) => descriptor(d, what)) };
  }
  if (mediaType && mediaType !== MEDIA.ociManifest && mediaType !== MEDIA.dockerManifest)
    throw new OciError("FLEDGE_OCI_UNSUPPORTED", `${what} has media type ${mediaType}, which is not an image manifest or index`, {
      hint: "this reference points at an artifact that is not a container image",
    });
  if (!Array.isArray(m.layers)) throw formatError(what, "a manifest without a layers array");
  const config = descriptor(m.config, what);
  return { kind: "manifest", mediaType: mediaType || MEDIA.ociManifest, config, layers: m.layers.map((d) => descriptor(d, what)) };
}

const strings = (v: unknown): string[] | null | undefined => (v === null ? null : Array.isArray(v) && v.every((s) => typeof s === "string") ? (v as string[]) : undefined);

/** The image config, from its bytes. */
export function parseConfig(bytes: Uint8Array, what: string): ImageConfig {
  const c = parseJson(bytes, what);
  const rootfs = c.rootfs as { type?: unknown; diff_ids?: unknown } | undefined;
  if (!rootfs || !Array.isArray(rootfs.diff_ids)) throw formatError(what, "no rootfs.diff_ids");
  if (rootfs.type !== undefined && rootfs.type !== "layers") throw formatError(what, `rootfs.type is ${JSON.stringify(rootfs.type)}, not "layers"`);
  const diffIDs = rootfs.diff_ids.map((d) => {
    if (typeof d !== "string" || !DIGEST.test(d)) throw formatError(what, `diff_id ${JSON.stringify(d)} is not a sha256 digest`);
    return d;
  });
  const cc = (c.config ?? {}) as Record<string, unknown>;
  const str = (v: unknown) => (typeof v === "string" ? v : undefined);
  return {
    architecture: str(c.architecture),
    os: str(c.os),
    variant: str(c.variant),
    config: {
      Entrypoint: strings(cc.Entrypoint),
      Cmd: strings(cc.Cmd),
      Env: strings(cc.Env),
      WorkingDir: str(cc.WorkingDir),
      ExposedPorts: cc.ExposedPorts && typeof cc.ExposedPorts === "object" ? (cc.ExposedPorts as Record<string, unknown>) : undefined,
      User: str(cc.User),
    },
    diffIDs,
  };
}

/** `[output] arch` → the OCI platform an image is chosen for. */
export function platformForArch(arch: string): Platform {
  switch (arch) {
    case "x86_64":
    case "amd64":
      return { os: "linux", architecture: "amd64" };
    case "aarch64":
    case "arm64":
      return { os: "linux", architecture: "arm64" };
    default:
      throw new OciError("FLEDGE_OCI_PLATFORM", `no OCI platform is known for [output] arch = "${arch}"`, { hint: 'use "x86_64" or "aarch64"' });
  }
}

export function formatPlatform(p: Platform): string {
  return `${p.os}/${p.architecture}${p.variant ? `/${p.variant}` : ""}`;
}

/** Entries of an index that are attestations or other non-images (buildx's `unknown/unknown`). */
function isAttestation(d: Descriptor): boolean {
  return d.annotations?.["vnd.docker.reference.type"] === "attestation-manifest" || (d.platform?.os === "unknown" && d.platform.architecture === "unknown");
}

/**
 * The index entry for `want`: same os and architecture; for arm64 the variant may be absent or
 * `v8`. Errors list what the index offers.
 */
export function choosePlatform(index: ImageIndex, want: Platform, what: string): Descriptor {
  const images = index.manifests.filter((d) => !isAttestation(d));
  const ok = (d: Descriptor) => {
    const p = d.platform;
    if (!p || p.os !== want.os || p.architecture !== want.architecture) return false;
    if (want.architecture === "arm64") return !p.variant || p.variant === "v8" || p.variant === want.variant;
    return !want.variant || p.variant === want.variant;
  };
  const found = images.filter(ok);
  if (found.length) {
    // Prefer an exact variant match, then the first listed (as docker does).
    return found.find((d) => d.platform?.variant === want.variant) ?? found[0]!;
  }
  const offered = [...new Set(images.map((d) => (d.platform ? formatPlatform(d.platform) : "(no platform)")))];
  throw new OciError("FLEDGE_OCI_PLATFORM", `${what} has no image for ${formatPlatform(want)}; it offers ${offered.length ? offered.join(", ") : "nothing"}`, {
    hint:
      offered.some((o) => o.startsWith("linux/arm64")) || offered.some((o) => o.startsWith("linux/amd64"))
        ? 'set [output] arch to one the index offers ("x86_64" for linux/amd64, "aarch64" for linux/arm64), or use an image built for your platform'
        : "use an image built for your platform",
  });
}
