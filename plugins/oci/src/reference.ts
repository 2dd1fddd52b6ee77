import { isAbsolute, resolve } from "node:path";
import { OciError } from "./errors.js";

/** Docker Hub's name in references, and the host its registry API really answers on. */
export const DOCKER_HUB = "docker.io";
export const DOCKER_HUB_API = "registry-1.docker.io";

/** An image in a registry: `registry/repository[:tag][@sha256:…]`. */
export interface RegistryReference {
  transport: "registry";
  /** Host (and port) as written, Docker Hub normalised to `docker.io`. */
  registry: string;
  /** Path inside the registry; Docker Hub's official images get `library/`. */
  repository: string;
  /** The tag, when written (or `latest` when neither tag nor digest is). */
  tag?: string;
  /** `sha256:<hex>`, when written. */
  digest?: string;
  /** The reference as the user wrote it. */
  written: string;
}

/** An OCI image layout directory: `oci:<dir>[:<ref>]`. */
export interface LayoutReference {
  transport: "oci";
  /** Absolute path of the layout directory. */
  path: string;
  /** The `org.opencontainers.image.ref.name` to pick from index.json, when written. */
  ref?: string;
  written: string;
}

/** A `docker save` tarball: `docker-archive:<file.tar>[:<name:tag>|:@<index>]`. */
export interface ArchiveReference {
  transport: "docker-archive";
  /** Absolute path of the tar file. */
  path: string;
  /** A RepoTag to pick (`nginx:alpine`), when written. */
  ref?: string;
  /** `@<n>`: the n-th image of the archive (0-based), when written. */
  index?: number;
  written: string;
}

export type ImageReference = RegistryReference | LayoutReference | ArchiveReference;

// distribution/reference grammar
const COMPONENT = /^[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*$/;
const TAG = /^[\w][\w.-]{0,127}$/;
const DIGEST = /^sha256:[0-9a-f]{64}$/;
const HOST = /^(?:[a-zA-Z0-9](?:[a-zA-Z0-9-]*[a-zA-Z0-9])?(?:\.[a-zA-Z0-9](?:[a-zA-Z0-9-]*[a-zA-Z0-9])?)*|\[[0-9a-fA-F:.]+\])(?::[0-9]+)?$/;

const bad = (written: string, what: string, hint?: string) =>
  new OciError("FLEDGE_OCI_REFERENCE", `image reference ${JSON.stringify(written)}: ${what}`, {
    hint: hint ?? 'write it as "nginx:alpine", "registry.example.com:5000/team/app:1.2", "…@sha256:<64 hex>", "oci:<dir>[:tag]" or "docker-archive:<file.tar>"',
  });

/** The registry reference as a canonical string: `docker.io/library/nginx:alpine`, `host:5000/a/b@sha256:…`. */
export function formatReference(r: Pick<RegistryReference, "registry" | "repository" | "tag" | "digest">): string {
  return `${r.registry}/${r.repository}${r.tag ? `:${r.tag}` : ""}${r.digest ? `@${r.digest}` : ""}`;
}

/**
 * Parses an image reference as fledge.toml writes it. Registry references follow Docker's rules
 * (`nginx` → `docker.io/library/nginx:latest`); `docker://` is accepted and dropped. Paths of the
 * `oci:` and `docker-archive:` transports resolve against `baseDir` (the directory of fledge.toml).
 */
export function parseReference(input: string, baseDir = process.cwd()): ImageReference {
  if (typeof input !== "string" || input.trim() === "") throw bad(String(input), "is empty");
  const written = input;
  const s = input.trim();
  if (/\s/.test(s)) throw bad(written, "contains white space");
  const transport = /^([a-z][a-z0-9+.-]*):(?!\d+(?:\/|$))/i.exec(s)?.[1]?.toLowerCase();
  if (transport === "oci") {
    const rest = s.slice(4);
    if (!rest) throw bad(written, "names no directory", 'write "oci:./my-layout" or "oci:./my-layout:tag"');
    // containers/image splits at the first ':' after the path (a path itself cannot hold one).
    const i = rest.indexOf(":");
    const dir = i < 0 ? rest : rest.slice(0, i);
    const ref = i < 0 ? undefined : rest.slice(i + 1);
    if (!dir) throw bad(written, "names no directory", 'write "oci:./my-layout" or "oci:./my-layout:tag"');
    if (ref !== undefined && ref === "") throw bad(written, "has an empty tag after the directory", 'drop the trailing ":" or write "oci:<dir>:<tag>"');
    return { transport: "oci", path: isAbsolute(dir) ? resolve(dir) : resolve(baseDir, dir), ref, written };
  }
  if (transport === "docker-archive") {
    const rest = s.slice("docker-archive:".length);
    if (!rest) throw bad(written, "names no file", 'write "docker-archive:./image.tar"');
    const i = rest.indexOf(":");
    const file = i < 0 ? rest : rest.slice(0, i);
    const sel = i < 0 ? undefined : rest.slice(i + 1);
    if (!file) throw bad(written, "names no file", 'write "docker-archive:./image.tar"');
    const path = isAbsolute(file) ? resolve(file) : resolve(baseDir, file);
    if (sel === undefined) return { transport: "docker-archive", path, written };
    if (/^@\d+$/.test(sel)) return { transport: "docker-archive", path, index: Number(sel.slice(1)), written };
    if (!sel) throw bad(written, "has an empty image name after the file", 'drop the trailing ":" or write "docker-archive:<file>:<name:tag>"');
    return { transport: "docker-archive", path, ref: sel, written };
  }
  if (transport === "docker") return parseRegistryReference(s.replace(/^docker:(\/\/)?/i, ""), written);
  if (transport === "http" || transport === "https")
    throw bad(written, "is a URL, not an image reference", `write the image as "host/repository:tag" (e.g. "${s.replace(/^https?:\/\//i, "").replace(/^([^/]+)\/v2\//, "$1/")}")`);
  if (transport && ["oci-archive", "dir", "containers-storage", "docker-daemon"].includes(transport))
    throw bad(written, `the "${transport}:" transport is not supported`, `copy it first, e.g. "skopeo copy ${s} oci:./image:latest", then use "oci:./image:latest"`);
  return parseRegistryReference(s, written);
}

/** Parses `[host[:port]/]path[:tag][@sha256:hex]`. */
export function parseRegistryReference(s: string, written = s): RegistryReference {
  let rest = s;
  let digest: string | undefined;
  const at = rest.indexOf("@");
  if (at >= 0) {
    digest = rest.slice(at + 1);
    rest = rest.slice(0, at);
    if (!/^sha256:/i.test(digest)) throw bad(written, `"${digest}" is not a sha256 digest`, "write …@sha256:<64 lowercase hex digits>");
    if (!DIGEST.test(digest)) throw bad(written, `"${digest}" is not a sha256 digest`, "write …@sha256:<64 lowercase hex digits>");
  }
  let tag: string | undefined;
  const slash = rest.lastIndexOf("/");
  const colon = rest.lastIndexOf(":");
  if (colon > slash) {
    tag = rest.slice(colon + 1);
    rest = rest.slice(0, colon);
    if (!TAG.test(tag)) throw bad(written, `tag "${tag}" is not valid (letters, digits, "_", "." and "-", at most 128, not starting with "." or "-")`);
  }
  if (!rest) throw bad(written, "names no repository");
  const parts = rest.split("/");
  let registry = DOCKER_HUB;
  const first = parts[0]!;
  if (parts.length > 1 && (first.includes(".") || first.includes(":") || first === "localhost" || first !== first.toLowerCase())) {
    if (!HOST.test(first)) throw bad(written, `"${first}" is not a valid registry host`);
    registry = first;
    parts.shift();
  }
  if (registry === "index.docker.io" || registry === "registry-1.docker.io" || registry === "registry.hub.docker.com") registry = DOCKER_HUB;
  if (registry === DOCKER_HUB && parts.length === 1) parts.unshift("library");
  for (const c of parts) {
    if (c !== c.toLowerCase() && COMPONENT.test(c.toLowerCase())) throw bad(written, `repository names are lowercase ("${c}")`, `write "${c.toLowerCase()}"`);
    if (!COMPONENT.test(c)) throw bad(written, `"${c}" is not a valid repository path component (lowercase letters, digits, and ".", "_", "__" or "-" between them)`);
  }
  const repository = parts.join("/");
  if (repository.length > 255) throw bad(written, "the repository name is longer than 255 characters");
  if (!tag && !digest) tag = "latest";
  return { transport: "registry", registry, repository, tag, digest, written };
}

/** True for hosts Docker talks to over plain HTTP: localhost, 127.0.0.0/8 and ::1. */
export function isLoopbackHost(registry: string): boolean {
  const host = registry.startsWith("[") ? registry.slice(1, registry.indexOf("]")) : registry.replace(/:\d+$/, "");
  return host === "localhost" || host === "::1" || /^127(?:\.\d{1,3}){3}$/.test(host);
}

/** The base URL of a registry's v2 API: https, except plain http for loopback registries. */
export function registryBaseUrl(registry: string): string {
  const host = registry === DOCKER_HUB ? DOCKER_HUB_API : registry;
  return `${isLoopbackHost(registry) ? "http" : "https"}://${host}`;
}

/** How a reference is shown in messages and recorded in fledge.lock. */
export function describeReference(r: ImageReference): string {
  if (r.transport === "registry") return formatReference(r);
  if (r.transport === "oci") return `oci:${r.path}${r.ref ? `:${r.ref}` : ""}`;
  return `docker-archive:${r.path}${r.ref ? `:${r.ref}` : r.index !== undefined ? `:@${r.index}` : ""}`;
}
