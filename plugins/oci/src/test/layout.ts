import { createHash } from "node:crypto";
import { mkdirSync, readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { gzipSync } from "node:zlib";
import { spawnSync } from "node:child_process";
import { makeTar, type TestMember } from "./tar.js";

const sha = (b: Buffer) => createHash("sha256").update(b).digest("hex");

export interface TestPlatformImage {
  architecture?: string;
  /** Each layer's members (tar-stream headers plus data). */
  layers: TestMember[][];
  /** Per layer; default gzip. */
  compression?: ("gzip" | "zstd" | "none")[];
  /** The image config's `config` object (Entrypoint, Cmd, Env, …). */
  config?: Record<string, unknown>;
}

export interface WrittenImage {
  /** Digest index.json points at for the tag (a manifest, or an index for several platforms). */
  digest: string;
  manifests: string[];
  diffIDs: string[][];
}

function zstd(data: Buffer): Buffer {
  const r = spawnSync("zstd", ["-q", "-c", "-3"], { input: data, maxBuffer: 1 << 30 });
  if (r.status !== 0) throw new Error(`zstd failed: ${r.stderr}`);
  return r.stdout;
}

/**
 * Writes an OCI image layout the way `skopeo copy … oci:<dir>:<tag>` does: blobs under
 * blobs/sha256, an index.json entry with the tag as `org.opencontainers.image.ref.name`. Several
 * platforms make an image index. Adds to an existing layout (several tags).
 */
export async function writeLayout(dir: string, tag: string, platforms: TestPlatformImage[]): Promise<WrittenImage> {
  mkdirSync(join(dir, "blobs", "sha256"), { recursive: true });
  writeFileSync(join(dir, "oci-layout"), JSON.stringify({ imageLayoutVersion: "1.0.0" }));
  const put = (b: Buffer) => {
    const h = sha(b);
    writeFileSync(join(dir, "blobs", "sha256", h), b);
    return { digest: `sha256:${h}`, size: b.length };
  };
  const manifests: { digest: string; size: number; arch: string }[] = [];
  const diffIDs: string[][] = [];
  for (const p of platforms) {
    const arch = p.architecture ?? "amd64";
    const layerDescs = [];
    const ids: string[] = [];
    for (const [i, members] of p.layers.entries()) {
      const tar = await makeTar(members);
      ids.push(`sha256:${sha(tar)}`);
      const c = p.compression?.[i] ?? "gzip";
      const blob = c === "gzip" ? gzipSync(tar) : c === "zstd" ? zstd(tar) : tar;
      const mediaType = `application/vnd.oci.image.layer.v1.tar${c === "none" ? "" : `+${c}`}`;
      layerDescs.push({ mediaType, ...put(blob) });
    }
    diffIDs.push(ids);
    const config = Buffer.from(
      JSON.stringify({
        created: "2024-01-01T00:00:00Z",
        architecture: arch,
        os: "linux",
        config: p.config ?? {},
        rootfs: { type: "layers", diff_ids: ids },
        history: ids.map(() => ({ created: "2024-01-01T00:00:00Z", created_by: "fledge test" })),
      }),
    );
    const manifest = Buffer.from(
      JSON.stringify({ schemaVersion: 2, mediaType: "application/vnd.oci.image.manifest.v1+json", config: { mediaType: "application/vnd.oci.image.config.v1+json", ...put(config) }, layers: layerDescs }),
    );
    manifests.push({ ...put(manifest), arch });
  }
  let top: { mediaType: string; digest: string; size: number };
  if (manifests.length === 1) top = { mediaType: "application/vnd.oci.image.manifest.v1+json", digest: manifests[0]!.digest, size: manifests[0]!.size };
  else {
    const index = Buffer.from(
      JSON.stringify({
        schemaVersion: 2,
        mediaType: "application/vnd.oci.image.index.v1+json",
        manifests: manifests.map((m) => ({
          mediaType: "application/vnd.oci.image.manifest.v1+json",
          digest: m.digest,
          size: m.size,
          platform: { os: "linux", architecture: m.arch, ...(m.arch === "arm64" ? { variant: "v8" } : {}) },
        })),
      }),
    );
    top = { mediaType: "application/vnd.oci.image.index.v1+json", ...put(index) };
  }
  let existing: { manifests: unknown[] } = { manifests: [] };
  try {
    existing = JSON.parse(readFileSync(join(dir, "index.json"), "utf8")) as { manifests: unknown[] };
  } catch {
    /* new layout */
  }
  const others = (existing.manifests as { annotations?: Record<string, string> }[]).filter((m) => m.annotations?.["org.opencontainers.image.ref.name"] !== tag);
  writeFileSync(
    join(dir, "index.json"),
    JSON.stringify({ schemaVersion: 2, mediaType: "application/vnd.oci.image.index.v1+json", manifests: [...others, { ...top, annotations: { "org.opencontainers.image.ref.name": tag } }] }),
  );
  return { digest: top.digest, manifests: manifests.map((m) => m.digest), diffIDs };
}
