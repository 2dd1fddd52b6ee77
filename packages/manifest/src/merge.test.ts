import { existsSync, readFileSync, readdirSync } from "node:fs";
import { join, resolve } from "node:path";
import { describe, expect, it } from "vitest";
import { createRequire } from "node:module";
import { parseManifestToml, parseToml, type ManifestToml } from "@fledge/config";
import { checkManifest, ManifestError, mergeManifest } from "./merge.js";
import { MANIFEST_SCHEMA_URL, validateVolantManifest } from "./model.js";
import { VENDORED_SCHEMA, jsonSchemaValidator } from "./ajv.test-helper.js";

const root = resolve(new URL("../../..", import.meta.url).pathname);
const volantSchema = jsonSchemaValidator(VENDORED_SCHEMA);
const editorSchema = jsonSchemaValidator(createRequire(import.meta.url).resolve("@fledge/config/schema/manifest.schema.json"));
const SHA = "ab".repeat(32);
const meta = { artifactPath: "/home/me/app/plugin.cpio.gz", sha256: SHA };
const toml = (text: string): ManifestToml => parseManifestToml(text, "/home/me/app/manifest.toml");
const minimal = 'name = "app"\n[workload]\nentrypoint = "/usr/bin/app"\nbase_url = "http://127.0.0.1:8000"\n';

describe("each example's manifest.toml", () => {
  const dirs = readdirSync(join(root, "examples")).filter((d) => existsSync(join(root, "examples", d, "manifest.toml")));
  it("there are examples", () => expect(dirs.length).toBeGreaterThanOrEqual(2));

  it.each(dirs)("%s: becomes a manifest.json that Volant's JSON Schema (ajv) and Go validator rules accept", (d) => {
    const file = join(root, "examples", d, "manifest.toml");
    const text = readFileSync(file, "utf8");
    expect(editorSchema(parseToml(text, file)), "the editor schema (manifest.schema.json) accepts the file").toEqual([]);
    const { manifest, warnings } = mergeManifest(parseManifestToml(text, file), { artifactPath: join(root, "examples", d, "plugin.cpio.gz"), sha256: SHA });
    expect(warnings).toEqual([]);
    const json = JSON.parse(JSON.stringify(manifest));
    expect(volantSchema(json)).toEqual([]);
    expect(validateVolantManifest(json)).toEqual([]);
    expect(json).toMatchObject({ schema_version: "1.0", enabled: true, workload: { type: "http" }, initramfs: { checksum: `sha256:${SHA}` } });
    expect(Array.isArray(json.workload.entrypoint)).toBe(true);
  });

  it("examples/hello becomes exactly this manifest.json", () => {
    const { manifest } = mergeManifest(toml(readFileSync(join(root, "examples/hello/manifest.toml"), "utf8")), meta);
    expect(manifest).toEqual({
      $schema: MANIFEST_SCHEMA_URL,
      schema_version: "1.0",
      name: "hello",
      version: "0.1.0",
      runtime: "hello",
      enabled: true,
      resources: { cpu_cores: 1, memory_mb: 128 },
      workload: { type: "http", base_url: "http://127.0.0.1:8000", entrypoint: ["/bin/httpd", "-f", "-p", "8000", "-h", "/srv/www"] },
      health_check: { endpoint: "/", timeout_ms: 5000 },
      initramfs: { url: "/home/me/app/plugin.cpio.gz", checksum: `sha256:${SHA}` },
    });
  });
});

describe('mergeManifest (docs/architecture.md, "manifest.json")', () => {
  it("entrypoint + args become one array; [env] becomes workload.env; defaults fill the rest", () => {
    const { manifest } = mergeManifest(toml('name = "app"\n[workload]\nentrypoint = "/app"\nargs = ["-v"]\nbase_url = "http://127.0.0.1:9000"\n[env]\nA = "1"\n'), meta);
    expect(manifest.workload).toEqual({ type: "http", base_url: "http://127.0.0.1:9000", entrypoint: ["/app", "-v"], env: { A: "1" } });
    expect(manifest).toMatchObject({ version: "0.1.0", runtime: "app", enabled: true, resources: { cpu_cores: 1, memory_mb: 512 } });
    expect(manifest).not.toHaveProperty("env");
  });

  it("[workload.env] and [env] merge", () => {
    const { manifest } = mergeManifest(toml(minimal + '[workload.env]\nA = "1"\n[env]\nB = "2"\n'), meta);
    expect(manifest.workload.env).toEqual({ A: "1", B: "2" });
  });

  it("the artifact's absolute path is the url by default; --base-url publishes it under a URL", () => {
    expect(mergeManifest(toml(minimal), meta).manifest.initramfs).toEqual({ url: "/home/me/app/plugin.cpio.gz", checksum: `sha256:${SHA}` });
    expect(mergeManifest(toml(minimal), { ...meta, baseUrl: "https://cdn.example.test/plugins/" }).manifest.initramfs?.url).toBe("https://cdn.example.test/plugins/plugin.cpio.gz");
  });

  it("derives base_url from the first exposed tcp port, and leaves expose out with a warning", () => {
    const r = mergeManifest(toml('name = "app"\n[workload]\nentrypoint = "/app"\n[network]\nmode = "bridged"\n[[network.expose]]\nport = 53\nprotocol = "udp"\n[[network.expose]]\nport = 8000\n'), meta);
    expect(r.manifest.workload.base_url).toBe("http://127.0.0.1:8000");
    expect(r.manifest.network).toEqual({ mode: "bridged" });
    expect(r.warnings).toEqual(["network.expose: is not part of Volant's manifest (ports belong to the VM config): left out of manifest.json"]);
  });

  it("a [network] with only expose is left out; subnet without mode gets the Go fledge's default, bridged", () => {
    expect(mergeManifest(toml(minimal + "[[network.expose]]\nport = 8000\n"), meta).manifest.network).toBeUndefined();
    expect(mergeManifest(toml(minimal + '[network]\nsubnet = "10.1.0.0/24"\nauto_assign = true\n'), meta).manifest.network).toEqual({ mode: "bridged", subnet: "10.1.0.0/24", auto_assign: true });
  });

  it("cloud-init documents take Volant's shape; inline is inferred", () => {
    const { manifest } = mergeManifest(toml(minimal + '[cloud_init]\nuser_data = "#cloud-config"\nmeta_data = { path = "/srv/meta.yaml" }\nnetwork_config = { content = "version: 2" }\n'), meta);
    expect(manifest.cloud_init).toEqual({
      user_data: { inline: true, content: "#cloud-config" },
      meta_data: { inline: false, path: "/srv/meta.yaml" },
      network_config: { inline: true, content: "version: 2" },
    });
    expect(volantSchema(JSON.parse(JSON.stringify(manifest)))).toEqual([]);
  });

  it("the health check gets Volant's required timeout", () => {
    expect(mergeManifest(toml(minimal + '[health_check]\nendpoint = "/healthz"\n'), meta).manifest.health_check).toEqual({ endpoint: "/healthz", timeout_ms: 10000 });
  });
});

/** Problems (the manifest would not install) and warnings, as `fledge validate` shows them. */
const PROBLEMS: [string, string, string[]][] = [
  ["no name", '[workload]\nentrypoint = "/a"\nbase_url = "http://127.0.0.1:1"\n', ['-:- name: manifest.toml needs a name (hint: add name = "myapp")']],
  ["no workload", 'name = "a"\n', ['-:- workload: manifest.toml needs a [workload] with an entrypoint: the program kestrel starts in the guest (hint: [workload]\nentrypoint = "/usr/bin/myapp")']],
  [
    "no base_url and nothing to derive it from",
    'name = "a"\n[workload]\nentrypoint = "/a"\n',
    [
      '2:1 workload.base_url: Volant needs the workload\'s base_url (where it answers HTTP in the guest) (hint: set base_url = "http://127.0.0.1:8000", or expose a tcp port under [[network.expose]] so it can be derived)',
    ],
  ],
  [
    "a base_url that is not http",
    'name = "a"\n[workload]\nentrypoint = "/a"\nbase_url = "127.0.0.1:8000"\n',
    ['4:1 workload.base_url: base_url "127.0.0.1:8000" is not an http(s) URL (hint: write it as "http://127.0.0.1:8000")'],
  ],
  ["an empty program", 'name = "a"\n[workload]\nentrypoint = [" "]\nbase_url = "http://127.0.0.1:1"\n', ['3:1 workload.entrypoint: the program to run is empty (hint: write entrypoint = "/usr/bin/myapp")']],
  [
    "bridged with a subnet needs a gateway or auto_assign",
    minimal + '[network]\nmode = "bridged"\nsubnet = "10.1.0.0/24"\n',
    ['5:1 network: bridged mode with subnet requires gateway or auto_assign (hint: add gateway = "10.1.0.1", or auto_assign = true)'],
  ],
  [
    "cloud-init content with inline = false",
    minimal + '[cloud_init.user_data]\ncontent = "x"\ninline = false\n',
    ["7:1 cloud_init.user_data.inline: cloud_init.user_data: inline must be true when content provided (hint: remove `inline = false` (or set it true))"],
  ],
  [
    "cloud-init path with inline = true",
    minimal + '[cloud_init]\nmeta_data = { path = "/m", inline = true }\n',
    ["6:28 cloud_init.meta_data.inline: cloud_init.meta_data: inline must be false when path provided (hint: remove `inline = true` (or set it false))"],
  ],
  [
    "cloud-init content and path",
    minimal + '[cloud_init.user_data]\ncontent = "x"\npath = "/y"\n',
    ["5:1 cloud_init.user_data: cloud_init.user_data: content and path cannot both be set (hint: keep `content` for an inline document, or `path` for a file on the Volant host)"],
  ],
  ["an action with a blank method", minimal + '[actions.run]\nmethod = " "\npath = "/run"\n', ['6:1 actions.run.method: action run missing method (hint: add method = "POST")']],
  ["the same variable twice", minimal + '[workload.env]\nA = "1"\n[env]\nA = "2"\n', ['8:1 env.A: is also set in [workload.env] with another value ("1") (hint: set it in one place)']],
];

const WARNINGS: [string, string, string[]][] = [
  [
    "port 8080 in base_url",
    'name = "a"\n[workload]\nentrypoint = "/a"\nbase_url = "http://127.0.0.1:8080"\n',
    ["4:1 workload.base_url: the workload uses port 8080, which kestrel's own API listens on in the guest (hint: choose another port, e.g. 8000)"],
  ],
  [
    "port 8080 exposed",
    minimal + "[[network.expose]]\nport = 8080\n",
    [
      "5:1 network.expose: is not part of Volant's manifest (ports belong to the VM config): left out of manifest.json (hint: keep it to derive workload.base_url, or remove it)",
      "5:1 network.expose: the workload uses port 8080, which kestrel's own API listens on in the guest (hint: choose another port, e.g. 8000)",
    ],
  ],
  ["initramfs.format", minimal + '[initramfs]\nformat = "cpio.gz"\n', ["6:1 initramfs.format: is not part of Volant's manifest (Volant detects the compression): left out of manifest.json (hint: remove it)"]],
  [
    "a relative program",
    'name = "a"\n[workload]\nentrypoint = "app"\nbase_url = "http://127.0.0.1:1"\n',
    ['3:1 workload.entrypoint: "app" is not an absolute path: kestrel looks it up on PATH in the guest (hint: write the full path, e.g. "/usr/bin/app")'],
  ],
  [
    "arguments Volant trims",
    minimal.replace('"/usr/bin/app"', '["/usr/bin/app", " -v", ""]'),
    ['3:1 workload.entrypoint: argument " -v" has spaces at its ends: Volant trims them', "3:1 workload.entrypoint: argument 2 is empty: Volant drops empty arguments"],
  ],
  ["labels Volant sets", minimal + '[labels]\n"volant.plugin" = "other"\n', ['6:1 labels."volant.plugin": Volant sets this label to the plugin\'s name ("app"): your value is replaced (hint: remove it)']],
  ["installed disabled", "enabled = false\n" + minimal, ["1:1 enabled: the plugin is installed disabled: Volant will not start VMs from it until it is enabled"]],
  ["network options of another mode", minimal + '[network]\nmode = "dhcp"\ngateway = "10.0.0.1"\n', ["5:1 network: subnet, gateway and auto_assign are only used in bridged mode, not dhcp"]],
];

const seen = (issues: { line?: number; column?: number; keyPath: string; message: string; hint?: string }[]) =>
  issues.map((i) => `${i.line ?? "-"}:${i.column ?? "-"} ${i.keyPath}: ${i.message}${i.hint ? ` (hint: ${i.hint})` : ""}`);

describe("checkManifest: what a build would report, before building", () => {
  it.each(PROBLEMS)("problem: %s", (_what, text, expected) => {
    const r = checkManifest(toml(text), { file: "/m/manifest.toml", text });
    expect(seen(r.problems)).toEqual(expected);
    expect(() => mergeManifest(toml(text), meta)).toThrow(ManifestError);
  });

  it.each(WARNINGS)("warning: %s", (_what, text, expected) => {
    const r = checkManifest(toml(text), { file: "/m/manifest.toml", text });
    expect(r.problems).toEqual([]);
    expect(seen(r.warnings)).toEqual(expected);
    // The build writes the manifest anyway, and Volant accepts it.
    const { manifest } = mergeManifest(toml(text), meta);
    expect(volantSchema(JSON.parse(JSON.stringify(manifest)))).toEqual([]);
  });

  it("port 8080 is kestrel's only in the default init mode: without kestrel (custom, none) it is the workload's", () => {
    const text = 'name = "a"\n[workload]\nentrypoint = "/init"\nbase_url = "http://127.0.0.1:8080"\n';
    expect(seen(checkManifest(toml(text), { file: "/m/manifest.toml", text }).warnings)).toEqual([expect.stringContaining("port 8080, which kestrel's own API listens on")]);
    expect(checkManifest(toml(text), { file: "/m/manifest.toml", text, kestrel: false }).warnings).toEqual([]);
    expect(mergeManifest(toml(text), { ...meta, kestrel: false }).warnings).toEqual([]);
  });

  it("ManifestError carries every problem, as lines and as issues", () => {
    let err: ManifestError | undefined;
    try {
      mergeManifest(toml('[network]\nmode = "bridged"\nsubnet = "10.0.0.0/8"\n'), { ...meta, manifestFile: "/m/manifest.toml" });
    } catch (e) {
      err = e as ManifestError;
    }
    expect(err?.problems).toEqual([
      "name: manifest.toml needs a name",
      "workload: manifest.toml needs a [workload] with an entrypoint: the program kestrel starts in the guest",
      "network: bridged mode with subnet requires gateway or auto_assign",
    ]);
    expect(err?.issues.every((i) => i.file === "/m/manifest.toml")).toBe(true);
  });
});
