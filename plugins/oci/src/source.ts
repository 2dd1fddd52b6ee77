import { createHash } from "node:crypto";
import { OciError } from "./errors.js";
import { choosePlatform, formatPlatform, parseConfig, parseManifest, type Descriptor, type ImageConfig, type ImageManifest, type Platform } from "./image.js";
import type { LayerSpec } from "./layers.js";

/** An image resolved to exact content for one platform. */
export interface ResolvedImage {
  /** The reference as fledge shows and records it (`docker.io/library/nginx:alpine`, `oci:/abs/dir:tag`). */
  reference: string;
  /** What the reference resolved to: the index's digest for a multi-platform image, else the manifest's. */
  digest: string;
  /** The platform's image manifest (equal to `digest` without an index); undefined for a docker-archive. */
  manifestDigest?: string;
  /** The digest that identifies the image in Volant's manifest (`image_digest`): the manifest's, else the config's. */
  imageDigest: string;
  platform: Platform;
  /** True when `digest` is an index and `manifestDigest` was chosen from it for `platform`. */
  fromIndex: boolean;
  manifest?: ImageManifest;
  configDigest: string;
  config: ImageConfig;
  layers: LayerSpec[];
}

/** What a lock entry (or an `@sha256:` reference) pins. */
export interface Pin {
  /** The index or manifest digest the reference resolved to. */
  digest: string;
  /** For an index: the platform manifest chosen. */
  manifest?: string;
}

/** Where an image's bytes come from: a registry, an OCI layout directory, a docker-archive tar. */
export interface ImageSource {
  /** For messages. */
  readonly description: string;
  /** Resolves the reference (or the pin) to manifest, config and layers for `platform`. */
  resolve(platform: Platform, pin?: Pin): Promise<ResolvedImage>;
  /**
   * Streams a layer's blob to `consume`. A source that retries (a registry) calls `consume`
   * again, from scratch, for each attempt; the result of the last one is returned.
   */
  withBlob<T>(layer: LayerSpec, label: string, consume: (blob: AsyncIterable<Uint8Array>) => Promise<T>): Promise<T>;
  /** False for local sources (layouts, archives): their content belongs to the project, not the cache. */
  readonly remote: boolean;
  /** The URL a remote source serves a layer's blob at (before mirrors), for the cache's records. */
  blobUrl?(layer: LayerSpec): string | undefined;
  close(): Promise<void>;
}

export const sha256hex = (b: Uint8Array) => createHash("sha256").update(b).digest("hex");

/** Checks a document's bytes against its digest (and size, when known). */
export function verifyDocument(bytes: Uint8Array, digest: string, what: string, size?: number): void {
  const got = `sha256:${sha256hex(bytes)}`;
  if (got !== digest)
    throw new OciError("FLEDGE_OCI_DIGEST", `${what} does not match its digest\n  expected ${digest}\n  actual   ${got}`, {
      hint: "the registry, a mirror or the files served other content than the image refers to; nothing was kept",
    });
  if (size !== undefined && bytes.length !== size) throw new OciError("FLEDGE_OCI_DIGEST", `${what} is ${bytes.length} bytes, its descriptor says ${size}`);
}

/**
 * Walks from a top-level document (index or manifest) to the platform's manifest, its config
 * and layers. `get` returns a document's verified bytes for a descriptor.
 */
export async function resolveDocuments(opts: {
  reference: string;
  top: { bytes: Uint8Array; digest: string; mediaType?: string };
  platform: Platform;
  pin?: Pin;
  get: (d: { digest: string; size?: number; mediaType?: string }, what: string, kind: "manifest" | "config") => Promise<Uint8Array>;
}): Promise<ResolvedImage> {
  const { reference, top, platform, pin, get } = opts;
  const topDoc = parseManifest(top.bytes, `${reference} (${top.digest})`, top.mediaType);
  let manifest: ImageManifest;
  let manifestDigest = top.digest;
  let fromIndex = false;
  let chosen = platform;
  if (topDoc.kind === "index") {
    fromIndex = true;
    let d: Descriptor;
    if (pin?.manifest) {
      // The lock names the platform's manifest: use it, if the index still lists it.
      const listed = topDoc.manifests.find((m) => m.digest === pin.manifest);
      if (!listed) throw new OciError("FLEDGE_OCI_FORMAT", `${reference}: the index ${top.digest} does not list ${pin.manifest}, which fledge.lock pins`, { hint: 'run "fledge update"' });
      d = listed;
    } else d = choosePlatform(topDoc, platform, `${reference} (index ${top.digest})`);
    if (d.platform) chosen = { os: d.platform.os, architecture: d.platform.architecture, ...(d.platform.variant ? { variant: d.platform.variant } : {}) };
    const bytes = await get(d, `${reference}: manifest for ${formatPlatform(chosen)}`, "manifest");
    const inner = parseManifest(bytes, `${reference}: manifest ${d.digest}`, d.mediaType);
    if (inner.kind !== "manifest") throw new OciError("FLEDGE_OCI_UNSUPPORTED", `${reference}: the index entry ${d.digest} is itself an index (nested indexes are not supported)`);
    manifest = inner;
    manifestDigest = d.digest;
  } else {
    manifest = topDoc;
  }
  const cfgBytes = await get(manifest.config, `${reference}: image config ${manifest.config.digest}`, "config");
  const config = parseConfig(cfgBytes, `${reference}: image config ${manifest.config.digest}`);
  if (config.os && config.os !== platform.os) throw new OciError("FLEDGE_OCI_PLATFORM", `${reference} is an image for ${config.os}/${config.architecture}, not ${formatPlatform(platform)}`, { hint: "use a Linux image" });
  if (!fromIndex && config.architecture && config.architecture !== platform.architecture)
    throw new OciError("FLEDGE_OCI_PLATFORM", `${reference} is an image for ${config.os ?? "linux"}/${config.architecture}, not ${formatPlatform(platform)}`, {
      hint: `set [output] arch to match the image, or use a ${formatPlatform(platform)} image (or a multi-platform one)`,
    });
  if (config.diffIDs.length !== manifest.layers.length)
    throw new OciError("FLEDGE_OCI_FORMAT", `${reference}: the manifest has ${manifest.layers.length} layers but the config lists ${config.diffIDs.length} diff_ids`, {
      hint: "the image is malformed; rebuild or re-push it",
    });
  const layers: LayerSpec[] = manifest.layers.map((l, i) => ({ digest: l.digest, size: l.size, diffID: config.diffIDs[i]!, mediaType: l.mediaType }));
  return {
    reference,
    digest: top.digest,
    manifestDigest,
    imageDigest: manifestDigest,
    platform: chosen,
    fromIndex,
    manifest,
    configDigest: manifest.config.digest,
    config,
    layers,
  };
}
