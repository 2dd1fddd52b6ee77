import { mkdirSync, mkdtempSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { checkManifestToml, loadManifestToml, parseManifestToml } from "./manifest-toml.js";

const FILE = "/p/manifest.toml";
const seen = (text: string) => checkManifestToml(text, FILE).problems.map((i) => `${i.line ?? "-"}:${i.column ?? "-"} ${i.keyPath}: ${i.message}${i.hint ? ` (hint: ${i.hint})` : ""}`);

describe("manifest.toml v1", () => {
  it("accepts the Go fledge's manifest.toml (schema_version v1, args, [env], [[network.expose]])", () => {
    // volantvm/fledge docs/examples/initramfs-go-webserver-manifest.toml, as the Go fledge documents it.
    const m = parseManifestToml(
      [
        'schema_version = "v1"',
        'name = "go-webserver"',
        'version = "1.0.0"',
        'runtime = "go-webserver"',
        "[resources]",
        "cpu_cores = 2",
        "memory_mb = 256",
        "[workload]",
        'entrypoint = "/usr/bin/webserver"',
        'args = ["--config", "/etc/webserver/config.yaml"]',
        "[env]",
        'PORT = "8080"',
        'LOG_LEVEL = "info"',
        "[network]",
        'mode = "bridged"',
        "[[network.expose]]",
        "port = 8080",
        'protocol = "tcp"',
      ].join("\n"),
      FILE,
    );
    expect(m.workload?.args).toEqual(["--config", "/etc/webserver/config.yaml"]);
    expect(m.network?.expose).toEqual([{ port: 8080, protocol: "tcp" }]);
  });

  it("accepts what Volant's manifest has and the Go fledge lacked", () => {
    const m = parseManifestToml(
      [
        'name = "app"',
        "enabled = true",
        "[labels]",
        'team = "infra"',
        "[workload]",
        'type = "http"',
        'entrypoint = ["/usr/bin/app", "--serve"]',
        'base_url = "http://127.0.0.1:8000"',
        'workdir = "/srv"',
        "[health_check]",
        'endpoint = "/healthz"',
        "timeout_ms = 2000",
        "[actions.render]",
        'description = "render a page"',
        'method = "POST"',
        'path = "/render"',
        "timeout_ms = 30000",
        "[network]",
        'mode = "bridged"',
        'subnet = "10.1.0.0/24"',
        'gateway = "10.1.0.1"',
        "auto_assign = true",
        "[cloud_init]",
        'datasource = "NoCloud"',
        'seed_mode = "vfat"',
        'user_data = "#cloud-config\\n"',
        'meta_data = { path = "/etc/volant/meta.yaml", inline = false }',
        "[devices]",
        'pci_passthrough = ["0000:01:00.0"]',
        'allowlist = ["10de:*"]',
      ].join("\n"),
      FILE,
    );
    expect(m.workload?.entrypoint).toEqual(["/usr/bin/app", "--serve"]);
    expect(m.cloud_init?.meta_data).toEqual({ path: "/etc/volant/meta.yaml", inline: false });
    expect(m.devices?.allowlist).toEqual(["10de:*"]);
  });

  const RULES: [string, string, string[]][] = [
    ["unknown table: did you mean", 'name = "a"\n[healthcheck]\nendpoint = "/"\n', ["2:1 healthcheck: unknown table [healthcheck] (hint: did you mean [health_check]?)"]],
    ["unknown key: did you mean", 'name = "a"\n[workload]\nentrypoint = "/a"\nbase = "http://x:1"\n', ["4:1 workload.base: unknown key `base` in [workload] (hint: did you mean `base_url`?)"]],
    ["a key in the wrong table", 'name = "a"\nbase_url = "http://x:1"\n', ["2:1 base_url: unknown key `base_url` at the top level (hint: `base_url` belongs in [workload], not the top level)"]],
    ["entrypoint is a string or an array", "[workload]\nentrypoint = 1\n", ["2:1 workload.entrypoint: expected a string or an array, got the integer 1"]],
    ["entrypoint is required", '[workload]\nargs = ["-x"]\n', ["1:1 workload.entrypoint: is required (a string or an array)"]],
    ["network mode", '[network]\nmode = "bridge"\n', ['2:1 network.mode: must be one of "vsock", "bridged", "dhcp", got the string "bridge" (hint: did you mean "bridged"?)']],
    ["exposed ports are ports", "[[network.expose]]\nport = 0\n", ["2:1 network.expose[0].port: must be a port number, 1–65535, got 0"]],
    ["the only workload type Volant's schema takes", '[workload]\ntype = "exec"\nentrypoint = "/a"\n', ['2:1 workload.type: must be "http", got the string "exec"']],
    ["schema_version", 'schema_version = "2"\n', ['1:1 schema_version: must be one of "1", "v1", "1.0", got the string "2"']],
    ["names are plugin names", 'name = "my app"\n', ["1:1 name: must start with a letter or digit and hold only letters, digits, '.', '_' and '-'"]],
    [
      "resources are positive",
      "[resources]\ncpu_cores = 0\nmemory_mb = 1.5\n",
      ["2:1 resources.cpu_cores: must be at least 1, got 0", "3:1 resources.memory_mb: expected an integer, got the float 1.5 (hint: write a whole number, e.g. 2)"],
    ],
    [
      "the artifact URL is not written here",
      '[initramfs]\nurl = "/x"\n',
      ["2:1 initramfs.url: unknown key `url` in [initramfs] (hint: the build fills in the artifact's absolute path; to publish it under a URL, run fledge build --base-url <url>)"],
    ],
    ["a fledge.toml table here", 'name = "a"\n[mappings]\n"./a" = "/a"\n', ["2:1 mappings: unknown table [mappings] (hint: [mappings] belongs in fledge.toml, not manifest.toml)"]],
  ];
  it.each(RULES)("%s", (_r, text, expected) => expect(seen(text)).toEqual(expected));

  it("keeps what is valid of a file with problems, for the rules that look across keys", () => {
    const r = checkManifestToml('name = "a"\n[workload]\nentrypoint = "/a"\nbase_url = 3\n[network]\nsubnet = "10.0.0.0/24"\n', FILE);
    expect(r.data).toBeUndefined();
    expect(r.partial).toEqual({ name: "a", workload: { entrypoint: "/a" }, network: { subnet: "10.0.0.0/24" } });
  });
});

describe("loadManifestToml", () => {
  it("without a manifest.toml, uses the directory name and 0.1.0, with a note", async () => {
    const dir = join(mkdtempSync(join(tmpdir(), "fledge-m-")), "My Plugin");
    mkdirSync(dir);
    const m = await loadManifestToml(join(dir, "manifest.toml"));
    expect(m.file).toBeUndefined();
    expect(m.data).toEqual({ name: "my-plugin", runtime: "my-plugin", version: "0.1.0" });
    expect(m.notes).toEqual([`no manifest.toml at ${join(dir, "manifest.toml")}: using name "my-plugin", runtime "my-plugin", version 0.1.0`]);
  });

  it("a manifest.toml asked for by name must exist", async () => {
    const dir = mkdtempSync(join(tmpdir(), "fledge-m-"));
    await expect(loadManifestToml(join(dir, "manifest.toml"), { required: true })).rejects.toMatchObject({ issues: [{ message: "file not found" }] });
  });

  it("reads the file, keeps its text, and places problems on lines", async () => {
    const dir = mkdtempSync(join(tmpdir(), "fledge-m-"));
    writeFileSync(join(dir, "manifest.toml"), 'name = "a"\n\n[resources]\ncpu_cores = "2"\n');
    await expect(loadManifestToml(join(dir, "manifest.toml"))).rejects.toMatchObject({
      issues: [{ keyPath: "resources.cpu_cores", line: 4, column: 1, message: 'expected a number, got the string "2"' }],
    });
    writeFileSync(join(dir, "manifest.toml"), 'name = "a"\n');
    const m = await loadManifestToml(join(dir, "manifest.toml"));
    expect(m).toEqual({ file: join(dir, "manifest.toml"), text: 'name = "a"\n', data: { name: "a" }, notes: [] });
  });
});
