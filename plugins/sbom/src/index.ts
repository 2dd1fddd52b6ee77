import { createHash } from "node:crypto";
import { createReadStream } from "node:fs";
import { basename, isAbsolute, resolve } from "node:path";
import { AfterBuildStage, type Builder, type BuildContext, type BuildResult, type FledgePlugin, type LockEntry, type OptionsSchema, type TreeNode } from "@fledge/core";

export const PLUGIN_NAME = "@fledge/plugin-sbom";
/** Written into `creationInfo.creators`; part of the document's bytes, so pinned here. */
export const TOOL = "fledge-plugin-sbom-1";

export interface SbomOptions {
  /** Where the SBOM goes (relative to fledge.toml); default `<artifact>.spdx.json` beside the artifact. */
  path?: string;
  /** Base of `documentNamespace` (default `https://spdx.fledge.invalid/`): the document's name, version and artifact sha256 follow it. */
  namespace?: string;
}

const optionsSchema: OptionsSchema = {
  "~standard": {
    validate(value) {
      const o = (value ?? {}) as Record<string, unknown>;
      const issues: { message: string; path: { key: string }[] }[] = [];
      for (const k of Object.keys(o)) if (k !== "path" && k !== "namespace") issues.push({ message: `unknown option \`${k}\` (options: path, namespace)`, path: [{ key: k }] });
      for (const k of ["path", "namespace"]) if (o[k] !== undefined && (typeof o[k] !== "string" || !o[k])) issues.push({ message: "must be a non-empty string", path: [{ key: k }] });
      if (typeof o.namespace === "string" && !/^[a-z][a-z0-9+.-]*:\/\/\S+$/i.test(o.namespace)) issues.push({ message: "must be an absolute URI", path: [{ key: "namespace" }] });
      return issues.length ? { issues } : { value: o };
    },
  },
};

/** An SPDX 2.3 checksum. */
interface Checksum {
  algorithm: "SHA1" | "SHA256";
  checksumValue: string;
}

export interface SpdxFile {
  fileName: string;
  SPDXID: string;
  checksums: Checksum[];
  licenseConcluded: "NOASSERTION";
  copyrightText: "NOASSERTION";
  comment: string;
}

export interface SpdxPackage {
  SPDXID: string;
  name: string;
  versionInfo?: string;
  packageFileName?: string;
  downloadLocation: string;
  filesAnalyzed: boolean;
  packageVerificationCode?: { packageVerificationCodeValue: string };
  checksums?: Checksum[];
  primaryPackagePurpose?: string;
  licenseConcluded: "NOASSERTION";
  licenseDeclared: "NOASSERTION";
  copyrightText: "NOASSERTION";
  comment?: string;
}

/** The SPDX 2.3 JSON document this plugin writes. */
export interface SpdxDocument {
  spdxVersion: "SPDX-2.3";
  dataLicense: "CC0-1.0";
  SPDXID: "SPDXRef-DOCUMENT";
  name: string;
  documentNamespace: string;
  creationInfo: { created: string; creators: string[] };
  packages: SpdxPackage[];
  files: SpdxFile[];
  relationships: { spdxElementId: string; relationshipType: string; relatedSpdxElement: string }[];
}

async function digestsOf(node: Extract<TreeNode, { type: "file" }>): Promise<{ sha1: string; sha256: string }> {
  const a = createHash("sha1");
  const b = createHash("sha256");
  const chunks: AsyncIterable<Uint8Array> | Uint8Array[] = "data" in node ? [node.data] : "hostPath" in node ? createReadStream(node.hostPath) : node.open();
  for await (const c of chunks) {
    a.update(c);
    b.update(c);
  }
  return { sha1: a.digest("hex"), sha256: b.digest("hex") };
}

/** The input an origin comes from, when there is one: `busybox` ← [busybox], `kestrel` ← [agent], `tarball:x` ← [tarball:x]. */
function inputOfOrigin(origin: string | undefined, inputs: Set<string>): string | undefined {
  if (!origin) return undefined;
  if (origin === "kestrel") return inputs.has("agent") ? "agent" : undefined;
  return inputs.has(origin) ? origin : undefined;
}

/** `[name]` of fledge.lock in words, for the package comment. */
function describeEntry(name: string, e: LockEntry | undefined): string {
  if (!e) return `fledge.lock: [${name}] is not locked (a local file)`;
  const fields = Object.entries(e)
    .filter(([k, v]) => v !== undefined && k !== "url" && k !== "sha256")
    .map(([k, v]) => `${k} = ${JSON.stringify(v)}`);
  return `fledge.lock: [${name}] ${fields.join(", ")}`;
}

/**
 * Builds the SPDX 2.3 document of a build: one package for the artifact with every regular
 * file of the image (sha1 and sha256, origin in the comment), one package per input with its URL
 * and digest as fledge.lock records them. Deterministic: sorted, numbered IDs, the build's time.
 */
export async function spdxDocument(result: BuildResult, ctx: BuildContext, opts: SbomOptions = {}): Promise<SpdxDocument> {
  const tree = result.tree;
  if (!tree) throw new Error("the strategy reported no tree");
  const artifactName = basename(result.artifact.path);
  // without a manifest.json (the build wrote none), the artifact's file name stands for the name
  const m = result.manifest;
  const pkgName = m?.name ?? artifactName.replace(/\..*$/, "");
  const version = m?.version;
  const name = version ? `${pkgName}-${version}` : pkgName;
  const artifactUrl = m?.initramfs?.url ?? m?.rootfs?.url ?? "";
  const files: SpdxFile[] = [];
  const fileInput = new Map<string, string>();
  const inputNames = new Set(ctx.inputs.names());
  let n = 0;
  const digests = new Map<string, { sha1: string; sha256: string }>();
  for (const [path, entry] of tree.entries()) {
    // a hard link is a file of the image too: the content (and mode, owner) of the file it names
    const node = entry.type === "hardlink" ? tree.get(entry.target) : entry;
    if (node?.type !== "file") continue;
    const key = entry.type === "hardlink" ? entry.target : path;
    let d = digests.get(key);
    if (!d) digests.set(key, (d = await digestsOf(node)));
    const id = `SPDXRef-File-${++n}`;
    files.push({
      fileName: `.${path}`,
      SPDXID: id,
      checksums: [
        { algorithm: "SHA1", checksumValue: d.sha1 },
        { algorithm: "SHA256", checksumValue: d.sha256 },
      ],
      licenseConcluded: "NOASSERTION",
      copyrightText: "NOASSERTION",
      comment: `origin: ${node.origin ?? "unknown"}; ${entry.type === "hardlink" ? `hard link to .${entry.target}; ` : ""}mode ${(node.mode & 0o7777).toString(8).padStart(4, "0")}, owner ${node.uid ?? 0}:${node.gid ?? 0}`,
    });
    const input = inputOfOrigin(node.origin, inputNames);
    if (input) fileInput.set(id, input);
  }
  const verification = createHash("sha1")
    .update(
      files
        .map((f) => f.checksums[0]!.checksumValue)
        .sort()
        .join(""),
    )
    .digest("hex");
  const artifact: SpdxPackage = {
    SPDXID: "SPDXRef-Package-Artifact",
    name: pkgName,
    ...(version ? { versionInfo: version } : {}),
    packageFileName: artifactName,
    downloadLocation: /^https?:\/\//.test(artifactUrl) ? artifactUrl : "NOASSERTION",
    filesAnalyzed: true,
    packageVerificationCode: { packageVerificationCodeValue: verification },
    checksums: [{ algorithm: "SHA256", checksumValue: result.artifact.sha256 }],
    primaryPackagePurpose: "OPERATING_SYSTEM",
    licenseConcluded: "NOASSERTION",
    licenseDeclared: "NOASSERTION",
    copyrightText: "NOASSERTION",
    comment: `${result.artifact.kind}${result.artifact.compression ? ` (${result.artifact.compression})` : result.artifact.format ? ` (${result.artifact.format})` : ""}, ${result.artifact.entries ?? tree.size} entries, built by fledge`,
  };
  const packages: SpdxPackage[] = [artifact];
  const inputIds = new Map<string, string>();
  let i = 0;
  for (const inputName of [...inputNames].sort()) {
    const r = await ctx.inputs.get<{ sha256?: string; url?: string }>(inputName);
    const e = r.entry;
    const id = `SPDXRef-Input-${++i}`;
    inputIds.set(inputName, id);
    const sha = e?.sha256 ?? (typeof r.value?.sha256 === "string" ? r.value.sha256 : undefined);
    const url = e?.url;
    packages.push({
      SPDXID: id,
      name: inputName,
      ...(e?.tag ? { versionInfo: e.tag } : e?.version ? { versionInfo: e.version } : e?.digest ? { versionInfo: e.digest } : {}),
      downloadLocation: url && /^https?:\/\//.test(url) ? url : "NOASSERTION",
      filesAnalyzed: false,
      ...(sha ? { checksums: [{ algorithm: "SHA256", checksumValue: sha }] as Checksum[] } : {}),
      licenseConcluded: "NOASSERTION",
      licenseDeclared: "NOASSERTION",
      copyrightText: "NOASSERTION",
      comment: describeEntry(inputName, e),
    });
  }
  const relationships: SpdxDocument["relationships"] = [{ spdxElementId: "SPDXRef-DOCUMENT", relationshipType: "DESCRIBES", relatedSpdxElement: artifact.SPDXID }];
  for (const f of files) relationships.push({ spdxElementId: artifact.SPDXID, relationshipType: "CONTAINS", relatedSpdxElement: f.SPDXID });
  for (const [inputName, id] of inputIds) relationships.push({ spdxElementId: id, relationshipType: "BUILD_DEPENDENCY_OF", relatedSpdxElement: artifact.SPDXID });
  for (const [fileId, inputName] of fileInput) relationships.push({ spdxElementId: fileId, relationshipType: "GENERATED_FROM", relatedSpdxElement: inputIds.get(inputName)! });
  const base = (opts.namespace ?? "https://spdx.fledge.invalid/").replace(/\/*$/, "/");
  return {
    spdxVersion: "SPDX-2.3",
    dataLicense: "CC0-1.0",
    SPDXID: "SPDXRef-DOCUMENT",
    name,
    documentNamespace: `${base}${encodeURIComponent(pkgName)}/${encodeURIComponent(version ?? "unversioned")}/${result.artifact.sha256}`,
    creationInfo: { created: new Date(ctx.options.mtime * 1000).toISOString().replace(/\.\d{3}Z$/, "Z"), creators: [`Tool: ${TOOL}`] },
    packages,
    files,
    relationships,
  };
}

/** `<artifact>.spdx.json` by default. */
export const sbomPath = (artifact: string) => `${artifact}.spdx.json`;

/**
 * Writes an SPDX 2.3 SBOM of the image as an output of the build (AfterBuildStage.SBOM, before
 * the commit: a failure leaves nothing under the output names, and the SBOM is moved into place
 * with the artifact).
 */
export class SbomPlugin implements FledgePlugin {
  static optionsSchema = optionsSchema;
  readonly name = PLUGIN_NAME;
  readonly #opts: SbomOptions;

  constructor(options: SbomOptions = {}) {
    this.#opts = options;
  }

  apply(builder: Builder): void {
    builder.hooks.check.tap(this.name, (_check, ctx) => {
      const p = this.#opts.path;
      ctx.outputs.add(p ? (isAbsolute(p) ? p : resolve(ctx.config.rootDir, p)) : sbomPath(ctx.options.output), { label: "sbom" });
    });
    builder.hooks.afterBuild.tapPromise({ name: this.name, stage: AfterBuildStage.SBOM }, async (result, ctx) => {
      const out = ctx.outputs.list().find((o) => o.label === "sbom" && o.plugin === this.name);
      if (!out) return;
      if (!result.tree) {
        ctx.warn(`the "${ctx.config.strategy}" strategy reported no tree, so there is no SBOM`);
        out.discard();
        return;
      }
      const doc = await spdxDocument(result, ctx, this.#opts);
      await out.write(JSON.stringify(doc, null, 2) + "\n");
      ctx.info(`SBOM: ${doc.files.length} files, ${doc.packages.length - 1} inputs → ${basename(out.path)}`);
    });
  }
}

export default SbomPlugin;
