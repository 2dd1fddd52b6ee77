// An OCI image layout made of host directories, one gzip layer each (GNU tar --sort=name, pigz -6),
// for the benchmark.
import { execFileSync } from "node:child_process";
import { createHash } from "node:crypto";
import { copyFileSync, createReadStream, mkdirSync, rmSync, statSync, writeFileSync } from "node:fs";
import { join } from "node:path";

const sha256file = async (p) => {
  const h = createHash("sha256");
  for await (const c of createReadStream(p, { highWaterMark: 1 << 20 })) h.update(c);
  return h.digest("hex");
};

/** An OCI layout with one gzip layer per host directory list (GNU tar, pigz -6). */
export async function makeImage(dir, layers) {
  const blobs = join(dir, "blobs", "sha256");
  mkdirSync(blobs, { recursive: true });
  writeFileSync(join(dir, "oci-layout"), JSON.stringify({ imageLayoutVersion: "1.0.0" }));
  const descs = [];
  const diffIDs = [];
  let total = 0;
  for (const [i, paths] of layers.entries()) {
    const tar = join(dir, `layer${i}.tar`);
    execFileSync("tar", ["--sort=name", "--owner=0", "--group=0", "--numeric-owner", "-C", "/", "-cf", tar, ...paths], { stdio: ["ignore", "ignore", "ignore"] });
    total += statSync(tar).size;
    diffIDs.push(`sha256:${await sha256file(tar)}`);
    execFileSync("pigz", ["-6", "-f", tar]);
    const gz = `${tar}.gz`;
    const d = await sha256file(gz);
    copyFileSync(gz, join(blobs, d));
    rmSync(gz);
    descs.push({ mediaType: "application/vnd.oci.image.layer.v1.tar+gzip", digest: `sha256:${d}`, size: statSync(join(blobs, d)).size });
  }
  const put = (obj) => {
    const b = Buffer.from(JSON.stringify(obj));
    const d = createHash("sha256").update(b).digest("hex");
    writeFileSync(join(blobs, d), b);
    return { digest: `sha256:${d}`, size: b.length };
  };
  const config = put({ architecture: "amd64", os: "linux", config: { Cmd: ["/bin/sh"] }, rootfs: { type: "layers", diff_ids: diffIDs } });
  const manifest = put({ schemaVersion: 2, mediaType: "application/vnd.oci.image.manifest.v1+json", config: { mediaType: "application/vnd.oci.image.config.v1+json", ...config }, layers: descs });
  writeFileSync(
    join(dir, "index.json"),
    JSON.stringify({ schemaVersion: 2, manifests: [{ mediaType: "application/vnd.oci.image.manifest.v1+json", ...manifest, annotations: { "org.opencontainers.image.ref.name": "1" } }] }),
  );
  return total;
}
