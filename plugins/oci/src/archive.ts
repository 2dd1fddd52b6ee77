import { createReadStream } from "node:fs";
import { open, stat } from "node:fs/promises";
import { OciError } from "./errors.js";
import { MAX_DOCUMENT, parseConfig, formatPlatform, type Platform } from "./image.js";
import type { LayerSpec } from "./layers.js";
import { describeReference, parseRegistryReference, formatReference, type ArchiveReference } from "./reference.js";
import { sha256hex, type ImageSource, type Pin, type ResolvedImage } from "./source.js";
import { TarIndexer, type TarEntry } from "./tar.js";

interface ArchiveImage {
  Config: string;
  RepoTags?: string[] | null;
  Layers: string[];
}

/** Normalises `nginx:alpine` / `docker.io/library/nginx:alpine` alike, for matching RepoTags. */
function canonicalTag(t: string): string | undefined {
  try {
    return formatReference(parseRegistryReference(t));
  } catch {
    return undefined;
  }
}

/** A `docker save` tarball (`docker-archive:<file>[:<name:tag>|:@<n>]`), as skopeo and docker write it. */
export class DockerArchiveSource implements ImageSource {
  readonly remote = false;
  readonly description: string;
  #members?: Map<string, TarEntry>;

  constructor(readonly ref: ArchiveReference) {
    this.description = describeReference(ref);
  }

  /** Indexes the archive once (names → data ranges), streaming it through tar-stream. */
  async #index(): Promise<Map<string, TarEntry>> {
    if (this.#members) return this.#members;
    const st = await stat(this.ref.path).catch(() => undefined);
    if (!st?.isFile()) throw new OciError("FLEDGE_OCI_NOT_FOUND", `${this.description}: ${this.ref.path} is not a file`, { hint: "give the tar that docker save or skopeo copy … docker-archive:<file> wrote" });
    const members = new Map<string, TarEntry>();
    const ix = new TarIndexer((e) => members.set(e.name.replace(/^\.\//, ""), e));
    try {
      for await (const c of createReadStream(this.ref.path, { highWaterMark: 1 << 20 })) await ix.write(c as Buffer);
      await ix.end();
    } catch (err) {
      ix.destroy();
      throw new OciError("FLEDGE_OCI_FORMAT", `${this.description}: not a readable docker-archive tar: ${(err as Error).message}`, { cause: err });
    }
    this.#members = members;
    return members;
  }

  async #read(name: string, what: string): Promise<Buffer> {
    const m = (await this.#index()).get(name);
    if (m?.type !== "file") throw new OciError("FLEDGE_OCI_FORMAT", `${this.description}: the archive has no ${name} (${what})`, { hint: "the archive is incomplete or not a docker-archive" });
    if (m.size > MAX_DOCUMENT) throw new OciError("FLEDGE_OCI_TOO_BIG", `${this.description}: ${name} is ${m.size} bytes, more than the ${MAX_DOCUMENT} fledge reads`);
    const fh = await open(this.ref.path, "r");
    try {
      const buf = Buffer.alloc(m.size);
      const { bytesRead } = await fh.read(buf, 0, m.size, m.offset);
      if (bytesRead !== m.size) throw new OciError("FLEDGE_OCI_TRUNCATED", `${this.description}: ${name} is cut short`);
      return buf;
    } finally {
      await fh.close();
    }
  }

  async resolve(platform: Platform, pin?: Pin): Promise<ResolvedImage> {
    const what = this.description;
    let list: ArchiveImage[];
    try {
      list = JSON.parse((await this.#read("manifest.json", "its list of images")).toString("utf8")) as ArchiveImage[];
    } catch (err) {
      if ((err as OciError).name === "OciError") throw err;
      throw new OciError("FLEDGE_OCI_FORMAT", `${what}: manifest.json is not valid JSON`);
    }
    if (!Array.isArray(list) || list.some((i) => !i || typeof i.Config !== "string" || !Array.isArray(i.Layers))) throw new OciError("FLEDGE_OCI_FORMAT", `${what}: manifest.json is not a docker-archive image list`);
    const tags = (i: ArchiveImage) => (i.RepoTags ?? []).filter((t) => typeof t === "string");
    let img: ArchiveImage | undefined;
    if (this.ref.index !== undefined) {
      img = list[this.ref.index];
      if (!img) throw new OciError("FLEDGE_OCI_NOT_FOUND", `${what}: the archive holds ${list.length} image(s); there is no @${this.ref.index}`, { hint: `use @0 to @${list.length - 1}` });
    } else if (this.ref.ref !== undefined) {
      const want = canonicalTag(this.ref.ref);
      img = list.find((i) => tags(i).some((t) => t === this.ref.ref || (want && canonicalTag(t) === want)));
      if (!img) {
        const all = list.flatMap(tags);
        throw new OciError("FLEDGE_OCI_NOT_FOUND", `${what}: the archive has no image named "${this.ref.ref}"${all.length ? `; it has ${all.map((t) => `"${t}"`).join(", ")}` : ""}`, {
          hint: "name one of its images, or pick one by position: docker-archive:<file>:@0",
        });
      }
    } else if (list.length === 1) img = list[0];
    else
      throw new OciError("FLEDGE_OCI_REFERENCE", `${what}: the archive holds ${list.length} images; say which one`, {
        hint: `write docker-archive:<file>:<name:tag> (${
          list
            .flatMap(tags)
            .map((t) => `"${t}"`)
            .join(", ") || "no names"
        }) or docker-archive:<file>:@<n>`,
      });
    if (!img) throw new OciError("FLEDGE_OCI_NOT_FOUND", `${what}: the archive holds no image`);
    const cfgName = img.Config.replace(/^\.\//, "");
    const cfgBytes = await this.#read(cfgName, "the image config");
    const configDigest = `sha256:${sha256hex(cfgBytes)}`;
    // docker names the config after its digest (`<hex>.json` or `blobs/sha256/<hex>`): check it when it does.
    const named = /(?:^|\/)([0-9a-f]{64})(?:\.json)?$/.exec(cfgName)?.[1];
    if (named && `sha256:${named}` !== configDigest) throw new OciError("FLEDGE_OCI_DIGEST", `${what}: the image config ${cfgName} does not match its name\n  expected sha256:${named}\n  actual   ${configDigest}`);
    if (pin && pin.digest !== configDigest) throw new OciError("FLEDGE_OCI_DIGEST", `${what}: the archive's image is ${configDigest}, not ${pin.digest}`);
    const config = parseConfig(cfgBytes, `${what}: image config`);
    if (config.os && config.os !== platform.os) throw new OciError("FLEDGE_OCI_PLATFORM", `${what} is an image for ${config.os}, not ${formatPlatform(platform)}`);
    if (config.architecture && config.architecture !== platform.architecture)
      throw new OciError("FLEDGE_OCI_PLATFORM", `${what} is an image for ${config.os ?? "linux"}/${config.architecture}, not ${formatPlatform(platform)}`, {
        hint: `set [output] arch to match the image, or save a ${formatPlatform(platform)} image`,
      });
    if (config.diffIDs.length !== img.Layers.length) throw new OciError("FLEDGE_OCI_FORMAT", `${what}: manifest.json lists ${img.Layers.length} layers but the config has ${config.diffIDs.length} diff_ids`);
    const members = await this.#index();
    const layers: LayerSpec[] = img.Layers.map((name, i) => {
      const n = name.replace(/^\.\//, "");
      const m = members.get(n);
      if (m?.type !== "file") throw new OciError("FLEDGE_OCI_FORMAT", `${what}: the archive has no layer ${n}`, { hint: "the archive is incomplete" });
      // `blobs/sha256/<hex>` (docker 25+) names the blob's digest; `<id>/layer.tar` names nothing we can check.
      const blob = /^blobs\/sha256\/([0-9a-f]{64})$/.exec(n)?.[1];
      return { ...(blob ? { digest: `sha256:${blob}` } : {}), size: m.size, diffID: config.diffIDs[i]!, member: n };
    });
    return {
      reference: what,
      digest: configDigest,
      imageDigest: configDigest,
      platform: { os: config.os ?? platform.os, architecture: config.architecture ?? platform.architecture },
      fromIndex: false,
      configDigest,
      config,
      layers,
    };
  }

  async withBlob<T>(layer: LayerSpec, label: string, consume: (blob: AsyncIterable<Uint8Array>) => Promise<T>): Promise<T> {
    const m = (await this.#index()).get(layer.member ?? "");
    if (!m) throw new OciError("FLEDGE_OCI_FORMAT", `${label}: the archive has no member ${layer.member}`);
    if (m.size === 0) return consume((async function* () {})());
    return consume(createReadStream(this.ref.path, { start: m.offset, end: m.offset + m.size - 1, highWaterMark: 1 << 20 }));
  }

  async close(): Promise<void> {}
}
