import { existsSync, readFileSync } from "node:fs";
import { describe, expect, it } from "vitest";
import { validateVolantManifest } from "./model.js";
import { VENDORED_SCHEMA, jsonSchemaValidator } from "./ajv.test-helper.js";

const SHARED = new URL("../../../../shared/schemas/plugin-manifest-v1.json", import.meta.url).pathname;
const schema = jsonSchemaValidator(VENDORED_SCHEMA);

/** A manifest both Volant's JSON Schema and its Go validator accept. */
const base = () => ({
  schema_version: "1.0",
  name: "app",
  version: "0.1.0",
  runtime: "app",
  enabled: true,
  resources: { cpu_cores: 1, memory_mb: 512 },
  workload: { type: "http", base_url: "http://127.0.0.1:8000", entrypoint: ["/usr/bin/app"] },
  initramfs: { url: "/var/lib/volant/plugins/app/plugin.cpio.gz", checksum: "sha256:" + "a".repeat(64) },
});
/** Loosely typed: the tests write what Volant must reject. */
// biome-ignore lint/suspicious/noExplicitAny: the rules below write ill-typed values at any depth, which is the point
type M = Record<string, any>;

describe("the vendored JSON Schema", () => {
  it.skipIf(!existsSync(SHARED))("is identical to ../shared/schemas/plugin-manifest-v1.json", () => {
    expect(readFileSync(VENDORED_SCHEMA, "utf8")).toBe(readFileSync(SHARED, "utf8"));
  });
  it("accepts the base manifest of these tests", () => {
    expect(schema(base())).toEqual([]);
    expect(validateVolantManifest(base())).toEqual([]);
  });
  it("accepts the manifest of the seed document (Volant's own example)", () => {
    const seed = {
      $schema: "https://raw.githubusercontent.com/volantvm/volant/main/docs/schemas/plugin-manifest-v1.json",
      schema_version: "1.0",
      name: "myapp",
      version: "0.1.0",
      runtime: "myapp",
      enabled: true,
      initramfs: { url: "/path/to/plugin.cpio.gz" },
      resources: { cpu_cores: 1, memory_mb: 512 },
      workload: { type: "http", entrypoint: ["/usr/bin/myapp"], base_url: "http://127.0.0.1:8080" },
      health_check: { endpoint: "/", timeout_ms: 10000 },
    };
    expect(schema(seed)).toEqual([]);
    expect(validateVolantManifest(seed)).toEqual([]);
  });
});

/**
 * Volant's Go validator (internal/pluginspec Manifest.Validate, after Normalize), rule by rule.
 * Each manifest passes the JSON Schema, so only the Go rules can catch it; the model must.
 */
const GO_RULES: [rule: string, change: (m: M) => void, message: string][] = [
  ["name required (blank after trimming)", (m) => (m.name = "  "), "name: name required"],
  ["version required (blank after trimming)", (m) => (m.version = " "), "version: version required"],
  [
    "name required (a blank runtime falls back to it)",
    (m) => {
      m.runtime = " ";
      m.name = " ";
    },
    "name: name required",
  ],
  ["initramfs url is http(s), file:// or absolute", (m) => (m.initramfs.url = "plugin.cpio.gz"), "initramfs.url: initramfs url must be http(s), file://, or absolute path"],
  ["initramfs url: ftp is not allowed", (m) => (m.initramfs.url = "ftp://host/p.cpio.gz"), "initramfs.url: initramfs url must be http(s), file://, or absolute path"],
  ["initramfs checksum names its algorithm or is ≥ 32 chars", (m) => (m.initramfs.checksum = "abc123"), "initramfs.checksum: initramfs checksum should include algorithm prefix or be a sha256"],
  ["initramfs url must be set", (m) => (m.initramfs.url = " "), "initramfs.url: at least one of rootfs.url or initramfs.url must be set"],
  [
    "rootfs url is http(s), file:// or absolute",
    (m) => {
      m.rootfs = { url: "disk.img" };
      delete m.initramfs;
    },
    "rootfs.url: rootfs url must be http(s), file://, or absolute path",
  ],
  [
    "rootfs checksum names its algorithm or is ≥ 32 chars",
    (m) => {
      m.rootfs = { url: "/d.img", checksum: "short" };
      delete m.initramfs;
    },
    "rootfs.checksum: rootfs checksum should include algorithm prefix or be a sha256",
  ],
  ["workload base_url required for http", (m) => (m.workload.base_url = " "), "workload.base_url: workload.base_url required for http workload"],
  ["workload base_url must parse", (m) => (m.workload.base_url = "127.0.0.1:8000"), 'workload.base_url: workload.base_url invalid: "127.0.0.1:8000" is not a URL'],
  ["workload entrypoint required (blank entries dropped)", (m) => (m.workload.entrypoint = [" ", ""]), "workload.entrypoint: workload.entrypoint required for http workload"],
  ["action method required", (m) => (m.actions = { run: { method: " ", path: "/run" } }), "actions.run.method: action run missing method"],
  ["action path required", (m) => (m.actions = { run: { method: "POST", path: "" } }), "actions.run.path: action run missing path"],
  ["network mode required", (m) => (m.network = { subnet: "10.0.0.0/24", gateway: "10.0.0.1" }), 'network.mode: unsupported mode "" (must be vsock, bridged, or dhcp)'],
  ["bridged with a subnet needs a gateway or auto_assign", (m) => (m.network = { mode: "bridged", subnet: "10.0.0.0/24" }), "network: bridged mode with subnet requires gateway or auto_assign"],
  ["cloud_init content needs inline true", (m) => (m.cloud_init = { user_data: { content: "#cloud-config" } }), "cloud_init.user_data.inline: inline must be true when content provided"],
  ["cloud_init path needs inline false", (m) => (m.cloud_init = { meta_data: { path: "/m.yaml", inline: true } }), "cloud_init.meta_data.inline: inline must be false when path provided"],
  ["cloud_init content and path exclude each other", (m) => (m.cloud_init = { network_config: { content: "x", path: "/y", inline: true } }), "cloud_init.network_config: content and path cannot both be set"],
  ["disk name required", (m) => (m.disks = [{ name: " ", source: "/d.img" }]), "disks.0.name: disk name required"],
  ["disk source required", (m) => (m.disks = [{ name: "data", source: "" }]), "disks.0.source: disk data: source required"],
];

describe("Volant's Go validator rules", () => {
  it.each(GO_RULES)("%s", (_rule, change, message) => {
    const m = base() as M;
    change(m);
    expect(schema(m), "the JSON Schema alone accepts this manifest").toEqual([]);
    expect(validateVolantManifest(m)).toEqual([message]);
  });

  const ACCEPTED: [string, (m: M) => void][] = [
    ["a checksum of 32+ characters without prefix", (m) => (m.initramfs.checksum = "a".repeat(32))],
    ["a file:// url (valid, though Volant's VM start needs a path)", (m) => (m.initramfs.url = "file:///x/p.cpio.gz")],
    ["an https url", (m) => (m.initramfs.url = "https://example.test/p.cpio.gz")],
    ["bridged with subnet and auto_assign", (m) => (m.network = { mode: "bridged", subnet: "10.0.0.0/24", auto_assign: true })],
    ["dhcp and vsock networks", (m) => (m.network = { mode: "dhcp" })],
    ["a blank runtime (Volant uses the name)", (m) => (m.runtime = " ")],
    ["inline content and a path document", (m) => (m.cloud_init = { user_data: { inline: true, content: "x" }, meta_data: { path: "/m" } })],
    ["an entrypoint with blank arguments after the program", (m) => (m.workload.entrypoint = ["/app", " "])],
  ];
  it.each(ACCEPTED)("accepts %s", (_what, change) => {
    const m = base() as M;
    change(m);
    expect(schema(m)).toEqual([]);
    expect(validateVolantManifest(m)).toEqual([]);
  });
});

/** What the JSON Schema rejects, the model rejects too (checked against ajv on the real schema). */
const SCHEMA_RULES: [string, (m: M) => void][] = [
  ["an unknown top-level field (initramfs.format's cousin)", (m) => (m.env = { A: "1" })],
  ["initramfs.format", (m) => (m.initramfs.format = "cpio.gz")],
  ["network.expose", (m) => (m.network = { mode: "bridged", expose: [{ port: 80 }] })],
  ["a string entrypoint (the Go fledge's bug)", (m) => (m.workload.entrypoint = "/usr/bin/app")],
  ["an empty entrypoint", (m) => (m.workload.entrypoint = [])],
  ["workload type exec", (m) => (m.workload.type = "exec")],
  ["a missing workload type", (m) => delete m.workload.type],
  ["a missing base_url", (m) => delete m.workload.base_url],
  ["no boot media", (m) => delete m.initramfs],
  ["both rootfs and initramfs", (m) => (m.rootfs = { url: "/d.img" })],
  ["cpu_cores 0", (m) => (m.resources.cpu_cores = 0)],
  ["fractional memory", (m) => (m.resources.memory_mb = 1.5)],
  ["a health check without timeout", (m) => (m.health_check = { endpoint: "/" })],
  ["seed_mode other than vfat", (m) => (m.cloud_init = { seed_mode: "iso" })],
  ["an empty name", (m) => (m.name = "")],
  ["a non-string label", (m) => (m.labels = { a: 1 })],
  [
    "rootfs format ext4",
    (m) => {
      m.rootfs = { url: "/d.img", format: "ext4" };
      delete m.initramfs;
    },
  ],
];

describe("Volant's JSON Schema rules", () => {
  it.each(SCHEMA_RULES)("rejects %s, as ajv does", (_what, change) => {
    const m = base() as M;
    change(m);
    expect(schema(m)).not.toEqual([]);
    expect(validateVolantManifest(m)).not.toEqual([]);
  });
});
