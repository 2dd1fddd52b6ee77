import { createReadStream } from "node:fs";
import { open, readFile, stat } from "node:fs/promises";
import { join } from "node:path";
import { OciError } from "./errors.js";
import { MAX_DOCUMENT, parseManifest, type Descriptor, type Platform } from "./image.js";
import type { LayerSpec } from "./layers.js";
import { describeReference, type LayoutReference } from "./reference.js";
import { resolveDocuments, verifyDocument, type ImageSource, type Pin, type ResolvedImage } from "./source.js";

const REF_NAME = "org.opencontainers.image.ref.name";

/** Reads at most `max` bytes of a file; an error when it is larger. */
async function readSmall(path: string, max: number, what: string): Promise<Buffer> {
  const fh = await open(path, "r").catch((err: NodeJS.ErrnoException) => {
    throw new OciError(err.code === "ENOENT" ? "FLEDGE_OCI_NOT_FOUND" : "FLEDGE_OCI_FORMAT", `${what}: cannot read ${path}: ${err.message}`);
  });
  try {
    const st = await fh.stat();
    if (!st.isFile()) throw new OciError("FLEDGE_OCI_FORMAT", `${what}: ${path} is not a regular file`);
    if (st.size > max) throw new OciError("FLEDGE_OCI_TOO_BIG", `${what}: ${path} is ${st.size} bytes, more than the ${max} fledge reads`);
    return await fh.readFile();
  } finally {
    await fh.close();
  }
}

/** An OCI image layout directory (`oci:<dir>[:<ref>]`), as `skopeo copy … oci:<dir>:<tag>` writes it. */
export class LayoutSource implements ImageSource {
  readonly remote = false;
  readonly description: string;

  constructor(readonly ref: LayoutReference) {
    this.description = describeReference(ref);
  }

  #blob(digest: string): string {
    return join(this.ref.path, "blobs", "sha256", digest.slice("sha256:".length));
  }

  async resolve(platform: Platform, pin?: Pin): Promise<ResolvedImage> {
    const dir = this.ref.path;
    const what = this.description;
    const st = await stat(dir).catch(() => undefined);
    if (!st?.isDirectory()) throw new OciError("FLEDGE_OCI_NOT_FOUND", `${what}: ${dir} is not a directory`, { hint: "give the directory of an OCI image layout (skopeo copy … oci:<dir>:<tag> writes one)" });
    const layoutFile = await readFile(join(dir, "oci-layout"), "utf8").catch(() => undefined);
    if (layoutFile === undefined)
      throw new OciError("FLEDGE_OCI_FORMAT", `${what}: ${dir} has no oci-layout file, so it is not an OCI image layout`, { hint: "write it with skopeo copy … oci:<dir>:<tag>, buildah push … oci:<dir>:<tag> or umoci" });
    let version: unknown;
    try {
      version = (JSON.parse(layoutFile) as { imageLayoutVersion?: unknown }).imageLayoutVersion;
    } catch {
      throw new OciError("FLEDGE_OCI_FORMAT", `${what}: ${join(dir, "oci-layout")} is not valid JSON`);
    }
    if (typeof version !== "string" || !version.startsWith("1.")) throw new OciError("FLEDGE_OCI_UNSUPPORTED", `${what}: image layout version ${JSON.stringify(version)} is not 1.x`);
    const indexBytes = await readSmall(join(dir, "index.json"), MAX_DOCUMENT, what);
    const index = parseManifest(indexBytes, `${what}: index.json`, "application/vnd.oci.image.index.v1+json");
    if (index.kind !== "index") throw new OciError("FLEDGE_OCI_FORMAT", `${what}: index.json is not an image index`);
    const named = (d: Descriptor) => d.annotations?.[REF_NAME];
    let top: Descriptor | undefined;
    if (this.ref.ref !== undefined) {
      top = index.manifests.find((d) => named(d) === this.ref.ref);
      if (!top) {
        const tags = index.manifests.map(named).filter(Boolean);
        throw new OciError("FLEDGE_OCI_NOT_FOUND", `${what}: the layout has no image tagged "${this.ref.ref}"${tags.length ? `; it has ${tags.map((t) => `"${t}"`).join(", ")}` : ""}`, {
          hint: tags.length ? `write oci:${dir}:${tags[0]}` : "write the layout with a tag: skopeo copy … oci:<dir>:<tag>",
        });
      }
    } else if (index.manifests.length === 1) top = index.manifests[0];
    else {
      const tags = index.manifests.map(named).filter(Boolean);
      throw new OciError("FLEDGE_OCI_REFERENCE", `${what}: the layout holds ${index.manifests.length} images; say which one`, {
        hint: tags.length ? `write oci:${dir}:<tag>, one of ${tags.map((t) => `"${t}"`).join(", ")}` : "write oci:<dir>:<tag>",
      });
    }
    if (!top) throw new OciError("FLEDGE_OCI_NOT_FOUND", `${what}: the layout's index.json lists no image`);
    if (pin && pin.digest !== top.digest) throw new OciError("FLEDGE_OCI_DIGEST", `${what}: the layout's image is ${top.digest}, not ${pin.digest}`);
    const get = async (d: { digest: string; size?: number }, label: string) => {
      const bytes = await readSmall(this.#blob(d.digest), MAX_DOCUMENT, label);
      verifyDocument(bytes, d.digest, label, d.size);
      return bytes;
    };
    const topBytes = await get(top, `${what}: ${top.digest}`);
    return resolveDocuments({ reference: what, top: { bytes: topBytes, digest: top.digest, mediaType: top.mediaType }, platform, pin, get });
  }

  async withBlob<T>(layer: LayerSpec, label: string, consume: (blob: AsyncIterable<Uint8Array>) => Promise<T>): Promise<T> {
    if (!layer.digest) throw new OciError("FLEDGE_OCI_FORMAT", `${label}: the layer has no digest`);
    const path = this.#blob(layer.digest);
    const st = await stat(path).catch(() => undefined);
    if (!st?.isFile()) throw new OciError("FLEDGE_OCI_NOT_FOUND", `${label}: the layout has no blob ${layer.digest} (${path})`, { hint: "the layout is incomplete; copy the image again" });
    return consume(createReadStream(path, { highWaterMark: 1 << 20 }));
  }

  async close(): Promise<void> {}
}
