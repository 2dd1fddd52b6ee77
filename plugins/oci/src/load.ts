import { createReadStream } from "node:fs";
import { rm } from "node:fs/promises";
import type { Fetcher } from "@fledge/fetch";
import { DockerArchiveSource } from "./archive.js";
import { OciError } from "./errors.js";
import { ImageFs } from "./flatten.js";
import type { Platform } from "./image.js";
import { LayerCache, type LayerSpec, type OpenLayer, type UnpackBudget } from "./layers.js";
import { LayoutSource } from "./layout.js";
import { parseReference, type ImageReference } from "./reference.js";
import { RegistrySource, type OciLog } from "./registry.js";
import type { ImageSource, Pin, ResolvedImage } from "./source.js";

/** Default cap on what one image unpacks to (uncompressed layer tars, all layers). */
export const DEFAULT_MAX_UNPACKED = 8 * 1024 ** 3;
/** Default cap on the members of one image. */
export const DEFAULT_MAX_ENTRIES = 2_000_000;
/** Layers downloaded and unpacked at once. */
const CONCURRENCY = 3;

export interface LoadImageOptions {
  /** As written in fledge.toml (`nginx:alpine`, `oci:./dir:tag`, `docker-archive:./x.tar`), or parsed. */
  reference: string | ImageReference;
  /** Where relative `oci:` / `docker-archive:` paths start (the directory of fledge.toml). */
  baseDir?: string;
  platform: Platform;
  /** Downloads, cache, mirrors and `--offline` come from here. */
  fetcher: Fetcher;
  /** A digest fledge.lock pinned: no tag is resolved. */
  pin?: Pin;
  /** Cap on the image's unpacked size in bytes (default 8 GiB). */
  maxUnpackedBytes?: number;
  /** Cap on its members (default 2,000,000). */
  maxEntries?: number;
  /** How to raise the caps, for their error messages. */
  raiseHint?: string;
  log?: OciLog;
  /** Bytes of a layer blob read (download or local file). */
  onProgress?: (e: { label: string; current: number; total?: number; done: boolean }) => void;
  /** For credential files (default the fetcher's env). */
  env?: NodeJS.ProcessEnv;
}

export interface LoadedImage {
  image: ResolvedImage;
  /** The image's layers, verified and open, in order. */
  layers: OpenLayer[];
  /** The merged filesystem (files are ranges of `layers[i].readPath`). */
  fs: ImageFs;
  /** Layers served from the cache without decompressing anything. */
  cachedLayers: number;
  /** Closes the layer handles: call once the artifact is written. */
  close(): Promise<void>;
}

/** The source for a reference: a registry, an OCI layout, a docker-archive. */
export function openSource(ref: ImageReference, opts: { fetcher: Fetcher; log?: OciLog; env?: NodeJS.ProcessEnv }): ImageSource {
  if (ref.transport === "oci") return new LayoutSource(ref);
  if (ref.transport === "docker-archive") return new DockerArchiveSource(ref);
  return new RegistrySource(ref, opts);
}

const short = (d: string | undefined) => (d ? d.replace(/^sha256:/, "").slice(0, 12) : "?");

/**
 * Resolves an image (by reference, or by the digest fledge.lock pins), brings each layer into
 * the cache as an uncompressed tar verified against its diffID (or uses the cached one, verified
 * the same way), and flattens the layers. The single entry point for every image source: the
 * `[source] image` / `[[overlay]] kind = "image"` overlay and other strategies (an ext4 rootfs)
 * use it alike.
 */
export async function loadImage(opts: LoadImageOptions): Promise<LoadedImage> {
  const ref = typeof opts.reference === "string" ? parseReference(opts.reference, opts.baseDir) : opts.reference;
  const log = opts.log ?? (() => {});
  const source = openSource(ref, { fetcher: opts.fetcher, log, env: opts.env });
  const cache = new LayerCache(opts.fetcher.cache);
  try {
    const image = await source.resolve(opts.platform, opts.pin);
    const budget: UnpackBudget = {
      cap: opts.maxUnpackedBytes ?? DEFAULT_MAX_UNPACKED,
      used: 0,
      image: image.reference,
      raise: opts.raiseHint ?? "set max_unpacked_size",
      maxEntries: opts.maxEntries ?? DEFAULT_MAX_ENTRIES,
      entries: 0,
    };
    const n = image.layers.length;
    const label = (i: number, l: LayerSpec) => `${image.reference} layer ${i + 1}/${n} (${short(l.digest ?? l.diffID)})`;
    const missing: string[] = [];
    const one = async (i: number): Promise<OpenLayer | undefined> => {
      const l = image.layers[i]!;
      const what = label(i, l);
      const hit = await cache.get(l.diffID, budget, what);
      if (hit) {
        log("debug", `${what}: unpacked layer ${short(l.diffID)} from the cache (verified)`);
        return hit;
      }
      // The compressed blob may still be cached (a registry image's): unpack it without the network.
      if (source.remote && l.digest && l.digest !== l.diffID && (await opts.fetcher.cache.has(l.digest.slice(7)))) {
        const path = opts.fetcher.cache.pathFor(l.digest.slice(7));
        try {
          const got = await cache.unpack(l, createReadStream(path, { highWaterMark: 1 << 20 }), { budget, label: what, names: { tar: `oci-layer:${image.reference}@${l.diffID}` } });
          log("debug", `${what}: unpacked from the cached blob`);
          return got;
        } catch (err) {
          const code = (err as OciError).code;
          if (code !== "FLEDGE_OCI_DIGEST" && code !== "FLEDGE_OCI_TRUNCATED" && code !== "FLEDGE_OCI_FORMAT") throw err;
          await rm(path, { force: true }); // a damaged or forged blob is a miss
        }
      }
      if (source.remote && opts.fetcher.offline) {
        missing.push(what);
        return undefined;
      }
      let read = 0;
      const progress = (bytes: number) => {
        read += bytes;
        opts.onProgress?.({ label: what, current: read, total: l.size, done: false });
      };
      const got = await source.withBlob(l, what, (blob) => {
        read = 0;
        return cache.unpack(l, blob, { budget, label: what, keepBlob: source.remote, onBytes: progress, names: { blob: source.blobUrl?.(l), tar: `oci-layer:${image.reference}@${l.diffID}` } });
      });
      opts.onProgress?.({ label: what, current: read, total: l.size, done: true });
      log("debug", `${what}: ${source.remote ? "downloaded and " : ""}unpacked (${got.size} bytes)`);
      return got;
    };
    const layers: (OpenLayer | undefined)[] = new Array(n);
    let next = 0;
    let failed = false;
    const lane = async () => {
      while (next < n && !failed) {
        const i = next++;
        try {
          layers[i] = await one(i);
        } catch (err) {
          failed = true; // the other lanes finish the layer they are on and stop
          throw err;
        }
      }
    };
    const settled = await Promise.allSettled(Array.from({ length: Math.min(CONCURRENCY, n) }, lane));
    const rejected = settled.find((r): r is PromiseRejectedResult => r.status === "rejected");
    if (rejected) throw rejected.reason;
    if (missing.length)
      throw new OciError("FLEDGE_OCI_OFFLINE", `--offline: ${missing.length} layer(s) of ${image.reference} are not in the cache:\n  ${missing.join("\n  ")}`, {
        hint: "build once with the network to fill the cache, then --offline works",
      });
    const fs = new ImageFs({ maxEntries: opts.maxEntries ?? DEFAULT_MAX_ENTRIES });
    for (let i = 0; i < n; i++) {
      const l = layers[i]!;
      fs.apply(i, { name: `${i + 1}/${n} (${short(image.layers[i]!.digest ?? image.layers[i]!.diffID)})`, entries: l.entries });
      l.entries = []; // the flattened tree holds what is needed from here on
    }
    return {
      image,
      layers: layers as OpenLayer[],
      fs,
      cachedLayers: layers.filter((l) => l?.cached).length,
      close: () => cache.close(),
    };
  } catch (err) {
    await cache.close();
    throw err;
  } finally {
    await source.close();
  }
}
