import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { dirname, isAbsolute, join } from "node:path";
import { gunzipSync } from "node:zlib";
import { afterAll, describe, expect, it } from "vitest";
import { parseManifestToml } from "@fledge/config";
import { checkManifest, composeManifest, mergeManifest } from "./merge.js";
import { estimateKernelCmdline, goJson, KERNEL_CMDLINE_MAX } from "./cmdline.js";
import { validateVolantManifest, type VolantManifest } from "./model.js";
import { VENDORED_SCHEMA, jsonSchemaValidator } from "./ajv.test-helper.js";

const volantSchema = jsonSchemaValidator(VENDORED_SCHEMA);
const work = mkdtempSync(join(tmpdir(), "fledge-cloud-init-"));
afterAll(() => rmSync(work, { recursive: true, force: true }));
const SHA = "cd".repeat(32);
const minimal = 'name = "app"\n[workload]\nentrypoint = "/usr/bin/app"\nbase_url = "http://127.0.0.1:8000"\n';

/** A project directory holding manifest.toml and the files it names. */
function project(name: string, manifestToml: string, files: Record<string, string | Buffer> = {}) {
  const dir = join(work, name);
  mkdirSync(dir, { recursive: true });
  for (const [f, c] of Object.entries(files)) {
    mkdirSync(dirname(join(dir, f)), { recursive: true });
    writeFileSync(join(dir, f), c);
  }
  const file = join(dir, "manifest.toml");
  writeFileSync(file, manifestToml);
  return { dir, file, toml: parseManifestToml(manifestToml, file), text: manifestToml };
}

/**
 * What `volar plugins install --manifest <file>` does with cloud-init documents
 * (volantvm/volant @f289af9, internal/cli/standard/plugins.go): a `path` is resolved against the
 * directory of manifest.json (absolute paths as they are), read, and inlined; a missing file fails
 * the install. Then Normalize and Validate (our schema and Go-rule checks).
 */
function volarInstall(manifestJsonPath: string): { ok: true; manifest: VolantManifest } | { ok: false; error: string } {
  const m = JSON.parse(readFileSync(manifestJsonPath, "utf8")) as VolantManifest;
  for (const k of ["user_data", "meta_data", "network_config"] as const) {
    const doc = m.cloud_init?.[k];
    const path = doc?.path?.trim();
    if (!doc || !path) continue;
    try {
      doc.content = readFileSync(isAbsolute(path) ? path : join(dirname(manifestJsonPath), path), "utf8");
    } catch (err) {
      return { ok: false, error: (err as Error).message };
    }
    doc.path = undefined;
    doc.inline = true;
  }
  const problems = [...volantSchema(JSON.parse(JSON.stringify(m))), ...validateVolantManifest(JSON.parse(JSON.stringify(m)))];
  return problems.length ? { ok: false, error: problems.join("; ") } : { ok: true, manifest: m };
}

describe("cloud-init documents named by path", () => {
  const userData = "#cloud-config\nruncmd:\n  - echo hello > /tmp/hi\n";

  it("a relative path is relative to manifest.toml, and the document is inlined as volar would: the manifest installs wherever it is written", () => {
    const p = project("relative", minimal + '[cloud_init]\nuser_data = { path = "cloud/user-data.yaml" }\n', { "cloud/user-data.yaml": userData });
    const { manifest, warnings } = mergeManifest(p.toml, { artifactPath: join(p.dir, "out", "plugin.cpio.gz"), sha256: SHA, manifestFile: p.file, manifestText: p.text });
    expect(warnings).toEqual([]);
    expect(manifest.cloud_init).toEqual({ user_data: { inline: true, content: userData } });
    // written beside the artifact (the default), in another directory (--manifest-output), and copied to another machine
    for (const where of ["out", "elsewhere/deeper", "other-machine"]) {
      const json = join(work, "relative-installs", where, "app.manifest.json");
      mkdirSync(dirname(json), { recursive: true });
      writeFileSync(json, JSON.stringify(manifest, null, 2));
      const r = volarInstall(json);
      expect(r, where).toMatchObject({ ok: true });
      expect(r.ok && r.manifest.cloud_init?.user_data?.content).toBe(userData);
    }
  });

  it("what fledge wrote before (the path as given) fails volar's install once manifest.json sits beside the artifact", () => {
    const p = project("before", minimal, { "user-data.yaml": userData });
    const json = join(p.dir, "out", "app.manifest.json");
    mkdirSync(dirname(json), { recursive: true });
    const old = mergeManifest(p.toml, { artifactPath: join(p.dir, "out", "plugin.cpio.gz"), sha256: SHA }).manifest;
    writeFileSync(json, JSON.stringify({ ...old, cloud_init: { user_data: { inline: false, path: "user-data.yaml" } } }));
    expect(volarInstall(json)).toMatchObject({ ok: false, error: expect.stringContaining("ENOENT") });
  });

  it("a missing relative file is an error naming the key, its line, and where it looked", () => {
    const p = project("missing", minimal + '[cloud_init]\nmeta_data = { path = "meta.yaml" }\n');
    const r = composeManifest(p.toml, { artifactPath: join(p.dir, "plugin.cpio.gz"), sha256: SHA, manifestFile: p.file, manifestText: p.text });
    expect(r.manifest).toBeUndefined();
    expect(r.problems).toEqual([
      expect.objectContaining({ file: p.file, keyPath: "cloud_init.meta_data.path", line: 6, message: `"meta.yaml": ${join(p.dir, "meta.yaml")} does not exist`, hint: "a relative path is relative to manifest.toml" }),
    ]);
    // fledge validate runs the same check
    expect(checkManifest(p.toml, { file: p.file, text: p.text }).problems[0]).toMatchObject({ keyPath: "cloud_init.meta_data.path", line: 6 });
  });

  it("an absolute path that exists is inlined; one that does not stays a path for volar, with a warning", () => {
    const p = project("absolute", minimal, { "n.yaml": "version: 2\n" });
    const abs = join(p.dir, "n.yaml");
    const text = minimal + `[cloud_init]\nnetwork_config = { path = "${abs}" }\nuser_data = { path = "/nonexistent/fledge/user-data" }\n`;
    const { manifest, warningIssues } = mergeManifest(parseManifestToml(text, p.file), { artifactPath: join(p.dir, "plugin.cpio.gz"), sha256: SHA, manifestFile: p.file, manifestText: text });
    expect(manifest.cloud_init).toEqual({ network_config: { inline: true, content: "version: 2\n" }, user_data: { inline: false, path: "/nonexistent/fledge/user-data" } });
    expect(warningIssues).toEqual([expect.objectContaining({ keyPath: "cloud_init.user_data.path", line: 7, message: expect.stringContaining("volar reads (and inlines) when it installs the manifest") })]);
  });

  it("refuses a directory and a file that is not UTF-8", () => {
    const p = project("bad", minimal + '[cloud_init]\nuser_data = { path = "dir" }\nmeta_data = { path = "bin.dat" }\n', { "dir/x": "", "bin.dat": Buffer.from([0xff, 0xfe, 0x00, 0x80]) });
    const r = composeManifest(p.toml, { artifactPath: join(p.dir, "plugin.cpio.gz"), sha256: SHA, manifestFile: p.file, manifestText: p.text });
    expect(r.problems.map((i) => i.message)).toEqual([`"dir": ${join(p.dir, "dir")} is a directory`, `${join(p.dir, "bin.dat")} is not UTF-8 text: a JSON manifest cannot carry it`]);
  });
});

describe("the manifest on the kernel command line", () => {
  const build = (name: string, toml: string, files: Record<string, string> = {}) => {
    const p = project(name, toml, files);
    return composeManifest(p.toml, { artifactPath: `/srv/plugins/${name}/plugin.cpio.gz`, sha256: SHA, manifestFile: p.file, manifestText: p.text });
  };
  /** Text that gzip cannot shrink much (so the sizes are predictable). */
  const noise = (n: number, seed = 12345) => {
    let x = seed;
    let s = "";
    while (s.length < n) {
      x = (x * 1103515245 + 12345) >>> 0;
      s += "abcdefghijklmnopqrstuvwxyz0123456789"[(x >>> 16) % 36];
    }
    return s;
  };

  it("is encoded as Volant encodes it: Go's field order and omitempty after Normalize, gzip, base64url", () => {
    const r = build("encode", minimal + '[env]\nB = "<2>"\nA = "1"\n[cloud_init]\nuser_data = "#cloud-config"\n');
    const { param } = estimateKernelCmdline(r.manifest!);
    expect(param).toMatch(/^volant\.manifest=[A-Za-z0-9_-]+$/);
    const json = gunzipSync(Buffer.from(param.slice("volant.manifest=".length), "base64url")).toString();
    expect(Object.keys(JSON.parse(json))).toEqual(["schema_version", "name", "version", "runtime", "rootfs", "initramfs", "resources", "health_check", "workload", "cloud_init", "enabled", "labels"]);
    expect(json).toContain('"rootfs":{"url":"","format":"raw"}');
    expect(json).toContain('"health_check":{"endpoint":"","timeout_ms":0}');
    expect(json).toContain('"env":{"A":"1","B":"\\u003c2\\u003e"}');
    expect(json).toContain('"cloud_init":{"datasource":"NoCloud","seed_mode":"vfat","user_data":{"inline":true,"content":"#cloud-config"},"meta_data":{},"network_config":{}}');
    expect(json).toContain('"labels":{"volant.plugin":"app","volant.runtime":"app"}');
    expect(goJson({ a: "x&y\u2028" })).toBe('{"a":"x\\u0026y\\u2028"}');
  });

  it("a small manifest draws no warning", () => {
    const r = build("small", minimal);
    expect(r.warnings).toEqual([]);
    expect(estimateKernelCmdline(r.manifest!).total).toBeLessThan(KERNEL_CMDLINE_MAX / 2);
  });

  it("warns when it gets close to the 2048 bytes x86 allows, and again when it passes them", () => {
    const close = build("close", minimal + '[cloud_init]\nuser_data = { path = "u.yaml" }\n', { "u.yaml": `#cloud-config\n# ${noise(1150)}\n` });
    const est = estimateKernelCmdline(close.manifest!);
    expect(est.total).toBeGreaterThan(KERNEL_CMDLINE_MAX - 256);
    expect(est.total).toBeLessThanOrEqual(KERNEL_CMDLINE_MAX);
    expect(close.warnings).toEqual([
      expect.objectContaining({
        keyPath: "cloud_init",
        line: 5,
        message: expect.stringMatching(
          /kernel command line \(volant\.manifest=base64url\(gzip\(json\)\), \d+ bytes\): with Volant's own parameters about \d+ of the 2048 bytes the kernel allows on x86, leaving \d+ for anything else/,
        ),
      }),
    ]);
    const over = build("over", minimal + '[cloud_init]\nuser_data = { path = "u.yaml" }\n', { "u.yaml": `#cloud-config\n# ${noise(3000)}\n` });
    expect(over.manifest).toBeDefined();
    expect(over.warnings[0]!.message).toMatch(/about \d+ bytes, more than the kernel's limit of 2048 on x86; the guest would not get its manifest/);
    const env = build("env", minimal + "[env]\n" + Array.from({ length: 40 }, (_, i) => `V${i} = "${noise(60, i + 1)}"`).join("\n") + "\n");
    expect(env.warnings[0]).toMatchObject({ keyPath: "", message: expect.stringContaining("more than the kernel's limit"), hint: expect.stringContaining("env") });
  });
});
