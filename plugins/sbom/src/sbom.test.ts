import { createHash } from "node:crypto";
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { build, type FledgePlugin } from "@fledge/core";
import AjvModule from "ajv";
import { testBuild } from "@fledge/core/testing";
import { describe, expect, it } from "vitest";
import SbomPlugin, { type SpdxDocument } from "./index.js";

const Ajv = ((AjvModule as unknown as { default?: typeof AjvModule.default }).default ?? AjvModule) as typeof AjvModule.default;
const SCHEMA = JSON.parse(readFileSync(new URL("../fixtures/spdx-schema-2.3.json", import.meta.url), "utf8"));
const validate = new Ajv({ allErrors: true, strict: false }).compile(SCHEMA);

const BUSYBOX = Buffer.from("\x7fELF pretend busybox\n");
const sha256 = (b: Buffer | string) => createHash("sha256").update(b).digest("hex");
const sha1 = (b: Buffer | string) => createHash("sha1").update(b).digest("hex");

const CONFIG = 'version = "1"\n[init]\nnone = true\n[source]\nbusybox_url = "https://busybox.example/busybox"\n[mappings]\n"./init" = "/init"\n"./www" = "/srv/www"\n';

async function built(extra: Parameters<typeof testBuild>[0] = {}) {
  return testBuild({
    plugins: [new SbomPlugin()],
    mode: "build",
    config: CONFIG,
    files: { init: { content: "#!/bin/sh\nexec httpd\n", mode: 0o755 }, "www/index.html": "<h1>hi</h1>\n", "www/a/b.css": "b{}\n" },
    downloads: { "https://busybox.example/busybox": BUSYBOX },
    ...extra,
  });
}

describe("@fledge/plugin-sbom", () => {
  it("writes <artifact>.spdx.json: valid SPDX 2.3, every file (hard links too) with its sha256 and origin, each input with its URL and digest from fledge.lock", async () => {
    const linker: FledgePlugin = { name: "linker", apply: (b) => void b.hooks.beforeArchive.tap("linker", (tree) => void tree.hardlink("/srv/www/same.html", "/srv/www/index.html")) };
    const t = await built({ plugins: [new SbomPlugin(), linker] });
    try {
      const out = t.result!.outputs.find((o) => o.label === "sbom")!;
      expect(out).toMatchObject({ path: `${t.result!.artifact.path}.spdx.json`, plugin: "@fledge/plugin-sbom" });
      const doc = JSON.parse(readFileSync(out.path, "utf8")) as SpdxDocument;
      expect(validate(doc), JSON.stringify(validate.errors)).toBe(true);
      expect(doc).toMatchObject({ spdxVersion: "SPDX-2.3", dataLicense: "CC0-1.0", name: "test-0.1.0", creationInfo: { created: "2024-01-01T00:00:00Z" } });
      // every regular file of the image, and nothing else
      const imageFiles = t.paths().filter((p) => t.entry(p)!.type === "file" || t.entry(p)!.type === "hardlink");
      expect(imageFiles).toContain("/srv/www/same.html");
      expect(doc.files.find((f) => f.fileName === "./srv/www/same.html")).toMatchObject({
        checksums: expect.arrayContaining([{ algorithm: "SHA256", checksumValue: sha256("<h1>hi</h1>\n") }]),
        comment: "origin: mapping:./www; hard link to ./srv/www/index.html; mode 0644, owner 0:0",
      });
      expect(doc.files.map((f) => f.fileName)).toEqual(imageFiles.map((p) => `.${p}`));
      const bb = doc.files.find((f) => f.fileName === "./bin/busybox")!;
      expect(bb.checksums).toEqual([
        { algorithm: "SHA1", checksumValue: sha1(BUSYBOX) },
        { algorithm: "SHA256", checksumValue: sha256(BUSYBOX) },
      ]);
      expect(bb.comment).toBe("origin: busybox; mode 0755, owner 0:0");
      expect(doc.files.find((f) => f.fileName === "./srv/www/a/b.css")).toMatchObject({
        checksums: expect.arrayContaining([{ algorithm: "SHA256", checksumValue: sha256("b{}\n") }]),
        comment: expect.stringContaining("origin: mapping:./www"),
      });
      // the artifact and the inputs, as fledge.lock records them
      const lock = readFileSync(join(t.dir, "fledge.lock"), "utf8");
      expect(lock).toContain(`sha256 = "${sha256(BUSYBOX)}"`);
      expect(doc.packages[0]).toMatchObject({ SPDXID: "SPDXRef-Package-Artifact", name: "test", checksums: [{ algorithm: "SHA256", checksumValue: t.result!.artifact.sha256 }] });
      expect(doc.packages[1]).toMatchObject({
        name: "busybox",
        downloadLocation: "https://busybox.example/busybox",
        checksums: [{ algorithm: "SHA256", checksumValue: sha256(BUSYBOX) }],
        comment: 'fledge.lock: [busybox] source = "url"',
      });
      expect(doc.relationships).toContainEqual({ spdxElementId: bb.SPDXID, relationshipType: "GENERATED_FROM", relatedSpdxElement: doc.packages[1]!.SPDXID });
      expect(doc.relationships).toContainEqual({ spdxElementId: "SPDXRef-Input-1", relationshipType: "BUILD_DEPENDENCY_OF", relatedSpdxElement: "SPDXRef-Package-Artifact" });
      // the verification code is SPDX's: sha1 over the sorted sha1s of the files
      const code = sha1(
        doc.files
          .map((f) => f.checksums[0]!.checksumValue)
          .sort()
          .join(""),
      );
      expect(doc.packages[0]!.packageVerificationCode).toEqual({ packageVerificationCodeValue: code });
    } finally {
      await t.cleanup();
    }
  });

  it("deterministic bytes: the same inputs in another directory give the same SBOM", async () => {
    const a = await built();
    const b = await built();
    try {
      expect(a.dir).not.toBe(b.dir);
      const read = (t: typeof a) => readFileSync(`${t.result!.artifact.path}.spdx.json`);
      expect(read(a).equals(read(b))).toBe(true);
      expect(read(a).toString()).not.toContain(a.dir);
    } finally {
      await a.cleanup();
      await b.cleanup();
    }
  });

  it("takes path and namespace options, checked", async () => {
    const t = await built({ plugins: [new SbomPlugin({ path: "out/custom.spdx.json", namespace: "https://sbom.example.com/x" })] });
    try {
      const doc = JSON.parse(readFileSync(join(t.dir, "out/custom.spdx.json"), "utf8")) as SpdxDocument;
      expect(doc.documentNamespace).toBe(`https://sbom.example.com/x/test/0.1.0/${t.result!.artifact.sha256}`);
    } finally {
      await t.cleanup();
    }
    const schema = (SbomPlugin as unknown as { optionsSchema: { "~standard": { validate(v: unknown): { issues?: unknown[] } } } }).optionsSchema;
    expect(schema["~standard"].validate({ colour: 1 }).issues).toHaveLength(1);
    expect(schema["~standard"].validate({ namespace: "not a uri" }).issues).toHaveLength(1);
  });
});

describe("a failure in the SBOM stage", () => {
  it("leaves nothing under the output names (artifact, manifest, SBOM) and no temps", async () => {
    const dir = mkdtempSync(join(tmpdir(), "fledge-sbom-fail-"));
    try {
      writeFileSync(join(dir, "init"), "#!/bin/sh\n", { mode: 0o755 });
      writeFileSync(join(dir, "fledge.toml"), 'version = "1"\n[init]\nnone = true\n[source]\nbusybox = false\n[mappings]\n"./init" = "/init"\n');
      writeFileSync(join(dir, "manifest.toml"), 'name = "demo"\nversion = "1.0.0"\n[workload]\nentrypoint = "/init"\nbase_url = "http://127.0.0.1:8000"\n');
      // a file whose content can be read once (by the archive writer), then fails (an I/O error when the SBOM reads it)
      let opens = 0;
      const flaky: FledgePlugin = {
        name: "flaky",
        apply(b) {
          b.hooks.beforeArchive.tap("flaky", (tree) => {
            tree.set("/data/flaky", {
              type: "file",
              mode: 0o644,
              size: 3,
              open: async function* () {
                if (++opens > 1) throw new Error("EIO: the disk went away");
                yield new TextEncoder().encode("abc");
              },
            });
          });
        },
      };
      const out = join(dir, "out");
      const err = await build({ config: join(dir, "fledge.toml"), output: join(out, "plugin.cpio.gz"), plugins: [flaky, new SbomPlugin()], offline: true, cacheDir: join(dir, "cache"), env: {} }).then(
        () => undefined,
        (e: Error) => e,
      );
      expect(err).toMatchObject({ name: "PluginError", plugin: "@fledge/plugin-sbom", message: expect.stringContaining("EIO: the disk went away") });
      expect(opens).toBe(2);
      // the artifact was written (staged) and then discarded: nothing is left
      expect(existsSync(out) ? readdirSync(out) : []).toEqual([]);
      expect(
        readdirSync(dir)
          .filter((f) => f !== "cache" && f !== "out")
          .sort(),
      ).toEqual(["fledge.toml", "init", "manifest.toml"]);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
