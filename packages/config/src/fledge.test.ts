import { mkdtempSync, readFileSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { checkFledgeConfig, loadFledgeConfig, parseFledgeConfig, type FledgeCheck } from "./fledge.js";
import { ConfigError, formatIssue } from "./errors.js";
import { DEFAULT_BUSYBOX_SHA256, DEFAULT_BUSYBOX_URL } from "./schema.js";

const seed = (mode: string) => new URL(`../fixtures/seed/${mode}/fledge.toml`, import.meta.url).pathname;
const FILE = "/project/fledge.toml";
/** No host files exist unless a test says so. */
const check = (text: string, hostFiles: string[] = []): FledgeCheck => checkFledgeConfig(text, FILE, { isHostFile: (p) => hostFiles.includes(p) });
/** What a user reads: `line:col key: message (hint)`. */
const seen = (r: FledgeCheck, which: "problems" | "warnings" = "problems") => r[which].map((i) => `${i.line ?? "-"}:${i.column ?? "-"} ${i.keyPath}: ${i.message}${i.hint ? ` (hint: ${i.hint})` : ""}`);

describe("the seed document's configs (initramfs-plugin-authoring.md)", () => {
  it("Mode 1 validates and resolves to the default mode with a kestrel release", async () => {
    const c = await loadFledgeConfig(seed("mode1-default"));
    expect(c.init).toEqual({ mode: "default" });
    expect(c.agent).toEqual({ source: "release", version: "latest" });
    expect(c.busybox).toEqual({ include: true, url: DEFAULT_BUSYBOX_URL, sha256: DEFAULT_BUSYBOX_SHA256 });
    expect(c.mappings).toEqual([{ source: join(c.rootDir, "myapp"), written: "./myapp", dest: "/usr/bin/myapp" }]);
    expect(c.warnings).toEqual([]);
  });

  it("Mode 2 validates and resolves to custom init from the host file ./my-init", async () => {
    const c = await loadFledgeConfig(seed("mode2-custom"));
    expect(c.init).toEqual({ mode: "custom-host", hostPath: join(c.rootDir, "my-init") });
    expect(c.agent).toBeUndefined();
    // A URL other than the default has no pinned checksum.
    expect(c.busybox.sha256).toBeUndefined();
    expect(c.mappings.map((m) => m.dest)).toEqual(["/init", "/usr/bin/myapp"]);
    expect(c.warnings).toEqual([]);
  });

  it("Mode 3 validates and resolves to none, with the supervisor mapped at /init", async () => {
    const c = await loadFledgeConfig(seed("mode3-none"));
    expect(c.init).toEqual({ mode: "none" });
    expect(c.agent).toBeUndefined();
    expect(c.mappings).toEqual([{ source: join(c.rootDir, "my-supervisor"), written: "./my-supervisor", dest: "/init" }]);
    expect(c.warnings).toEqual([]);
  });

  it("Mode 1 as printed, with its <sha256> placeholder, says what the checksum must look like", () => {
    const text = readFileSync(seed("mode1-default"), "utf8").replace(/busybox_sha256 = ".*"/, 'busybox_sha256 = "<sha256>"');
    expect(seen(check(text))).toEqual(['10:1 source.busybox_sha256: must be 64 hex digits, optionally prefixed "sha256:"']);
  });
});

describe("defaults", () => {
  it("a bare version gives the default mode, kestrel latest, the pinned busybox, gzip", () => {
    const c = parseFledgeConfig('version = "1"\n', FILE);
    expect(c).toMatchObject({
      strategy: "initramfs",
      init: { mode: "default" },
      agent: { source: "release", version: "latest" },
      busybox: { include: true, url: DEFAULT_BUSYBOX_URL, sha256: DEFAULT_BUSYBOX_SHA256 },
      mappings: [],
      output: { compression: "gzip", arch: "x86_64" },
      fetch: { mirrors: [] },
      plugins: [],
    });
  });

  it("an empty [init] is the default mode", () => {
    expect(parseFledgeConfig('version = "1"\n[init]\n', FILE).init).toEqual({ mode: "default" });
  });

  it("an absolute [init] path that is not a host file is a path in the image, exec'd by fledge's init", () => {
    const r = check('version = "1"\n[init]\npath = "/usr/local/bin/../bin/my-init.sh"\n[mappings]\n"./my-init.sh" = "/usr/local/bin/my-init.sh"\n');
    expect(r.config?.init).toEqual({ mode: "custom-image", imagePath: "/usr/local/bin/my-init.sh" });
    expect(r.warnings).toEqual([]);
  });

  it("an absolute [init] path that is a host file is copied (custom, host file)", () => {
    const r = check('version = "1"\n[init]\npath = "/opt/init"\n', ["/opt/init"]);
    expect(r.config?.init).toEqual({ mode: "custom-host", hostPath: "/opt/init" });
  });

  it("keeps the new optional keys: [output], [fetch] mirrors, plugins", () => {
    const c = parseFledgeConfig(
      'version = "1"\nplugins = ["@fledge/plugin-oci", "./local.js"]\n[output]\ncompression = "none"\nlevel = 3\narch = "aarch64"\n[fetch.mirrors]\n"https://busybox.net/" = "http://mirror.local/bb/"\n',
      FILE,
    );
    expect(c.output).toEqual({ compression: "none", level: 3, arch: "aarch64" });
    expect(c.fetch.mirrors).toEqual([{ from: "https://busybox.net/", to: "http://mirror.local/bb/" }]);
    expect(c.plugins).toEqual([
      { use: "@fledge/plugin-oci", keyPath: "plugins[0]" },
      { use: "./local.js", keyPath: "plugins[1]" },
    ]);
  });

  it("plugins entries are a module or { use, options }; strategy is any name (checked once plugins load)", () => {
    const c = parseFledgeConfig('version = "1"\nstrategy = "my_disk"\nplugins = ["./a.mjs", { use = "./motd.mjs", options = { text = "hi", lines = [1, 2] } }, { use = "pkg" }]\n', FILE);
    expect(c.strategy).toBe("my_disk");
    expect(c.plugins).toEqual([
      { use: "./a.mjs", keyPath: "plugins[0]" },
      { use: "./motd.mjs", options: { text: "hi", lines: [1, 2] }, keyPath: "plugins[1]" },
      { use: "pkg", keyPath: "plugins[2]" },
    ]);
  });

  it("overlays: [source] image, [source] dockerfile, then every [[overlay]] in order, the rest of each table as options", () => {
    const c = parseFledgeConfig(
      [
        'version = "1"',
        "[source]",
        'image = "nginx:alpine"',
        'dockerfile = "./Dockerfile"',
        'target = "run"',
        "[[overlay]]",
        'kind = "tarball"',
        'url = "https://example.test/rootfs.tar.zst"',
        'sha256 = "' + "a".repeat(64) + '"',
        "[[overlay]]",
        'kind = "mine"',
        "deep = { x = 1 }",
      ].join("\n"),
      FILE,
    );
    expect(c.overlays).toEqual([
      { kind: "image", options: { ref: "nginx:alpine" }, keyPath: "source.image" },
      { kind: "dockerfile", options: { dockerfile: "./Dockerfile", target: "run" }, keyPath: "source.dockerfile" },
      { kind: "tarball", options: { url: "https://example.test/rootfs.tar.zst", sha256: "a".repeat(64) }, keyPath: "overlay[0]" },
      { kind: "mine", options: { deep: { x: 1 } }, keyPath: "overlay[1]" },
    ]);
  });

  it("accepts the oci_rootfs keys of the Go fledge (building them needs a plugin)", () => {
    const c = parseFledgeConfig(
      [
        'version = "1"',
        'strategy = "oci_rootfs"',
        "[source]",
        'dockerfile = "./Dockerfile"',
        'context = "."',
        'target = "runtime"',
        'build_args = { GO_VERSION = "1.22" }',
        "[filesystem]",
        'type = "squashfs"',
        "size_buffer_mb = 100",
        "preallocate = false",
        "compression_level = 15",
        'overlay_size = "1G"',
      ].join("\n"),
      FILE,
    );
    expect(c.strategy).toBe("oci_rootfs");
    expect(c.source).toEqual({ dockerfile: "./Dockerfile", context: ".", target: "runtime", buildArgs: { GO_VERSION: "1.22" } });
    expect(c.filesystem).toEqual({ type: "squashfs", size_buffer_mb: 100, preallocate: false, compression_level: 15, overlay_size: "1G" });
  });

  it("accepts a $schema key for editors", () => {
    expect(parseFledgeConfig('"$schema" = "./fledge.schema.json"\nversion = "1"\n', FILE).version).toBe("1");
  });
});

/**
 * Every rule of docs/architecture.md ("fledge.toml", and its init modes), with exactly what the user reads:
 * `line:column key.path: message (hint: …)`.
 */
const RULES: [rule: string, toml: string, expected: string[], hostFiles?: string[]][] = [
  ["version is required", 'strategy = "initramfs"\n', ['-:- version: is required: "1" (hint: add version = "1")']],
  ['version must be "1"', 'version = "2"\n', ['1:1 version: must be "1", got the string "2"']],
  ["version must be a string", "version = 1\n", ['1:1 version: must be "1", got the integer 1 (hint: quote it: version = "1")']],
  ["strategy is a name", 'version = "1"\nstrategy = ""\n', ["2:1 strategy: must not be empty"]],
  ["a plugins entry is a module or a table", 'version = "1"\nplugins = [3]\n', ["2:1 plugins[0]: expected a string or a table, got the integer 3"]],
  [
    "a plugins table has use and options",
    'version = "1"\nplugins = [{ module = "x" }]\n',
    ["2:1 plugins[0].use: is required (a string)", "2:1 plugins[0].module: unknown key `module` in [plugins[0]] (hint: [plugins[0]] accepts: use, options)"],
  ],
  ["an [[overlay]] needs a kind", 'version = "1"\n[[overlay]]\nurl = "x"\n', ["2:1 overlay[0].kind: is required (a string)"]],
  ["agent source_strategy is release, local or http", 'version = "1"\n[agent]\nsource_strategy = "github"\n', ['3:1 agent.source_strategy: must be one of "release", "local", "http", got the string "github"']],
  ["agent source_strategy is required in [agent]", 'version = "1"\n[agent]\nversion = "latest"\n', ['2:1 agent.source_strategy: is required: one of "release", "local", "http"']],
  ["release needs version", 'version = "1"\n[agent]\nsource_strategy = "release"\n', ['2:1 agent.version: source_strategy "release" needs a version (hint: add version = "latest", or a tag such as "v0.1.0")']],
  [
    "release needs a non-empty version",
    'version = "1"\n[agent]\nsource_strategy = "release"\nversion = ""\n',
    ['4:1 agent.version: source_strategy "release" needs a version (hint: add version = "latest", or a tag such as "v0.1.0")'],
  ],
  ["local needs path", 'version = "1"\n[agent]\nsource_strategy = "local"\n', ['2:1 agent.path: source_strategy "local" needs a path (hint: add path = "./kestrel" (relative to fledge.toml))']],
  ["http needs url", 'version = "1"\n[agent]\nsource_strategy = "http"\nchecksum = "sha256:' + "a".repeat(64) + '"\n', ['2:1 agent.url: source_strategy "http" needs a url (hint: add url = "https://…/kestrel")']],
  ["agent checksum is sha256", 'version = "1"\n[agent]\nsource_strategy = "http"\nurl = "http://x/kestrel"\nchecksum = "md5:abc"\n', ['5:1 agent.checksum: must be "sha256:<64 hex digits>" or 64 hex digits']],
  ["mapping destinations are absolute", 'version = "1"\n[mappings]\n"./app" = "usr/bin/app"\n', ['3:1 mappings."./app": destination "usr/bin/app" must be an absolute path in the image (hint: write "/usr/bin/app")']],
  [
    "mapping destinations have no ..",
    'version = "1"\n[mappings]\n"./app" = "/usr/../../etc/passwd"\n',
    ['3:1 mappings."./app": destination "/usr/../../etc/passwd" must not contain ".." (hint: write the destination without .. components)'],
  ],
  ["mapping destinations are not empty", 'version = "1"\n[mappings]\n"./app" = ""\n', ['3:1 mappings."./app": the destination is empty (hint: write "./app" = "/path/in/image")']],
  ["mapping values are strings", 'version = "1"\n[mappings]\n"./app" = 1\n', ['3:1 mappings."./app": expected a string, got the integer 1 (hint: quote it: ./app = "1")']],
  [
    "path and none are two modes",
    'version = "1"\n[init]\npath = "/sbin/init"\nnone = true\n[mappings]\n"./i" = "/init"\n',
    [
      '2:1 init: `path` and `none = true` are both set: that is two init modes at once, custom (`path = "/sbin/init"`) and none (hint: keep `path` for your own init, or `none = true` when a mapping puts your PID 1 at /init — not both)',
    ],
  ],
  [
    "[agent] with none names the mode",
    'version = "1"\n[agent]\nsource_strategy = "release"\nversion = "latest"\n[init]\nnone = true\n[mappings]\n"./i" = "/init"\n',
    [
      "2:1 agent: [agent] is only used in the default init mode, but the init mode is none (`[init] none = true`): kestrel is not installed in this mode (hint: remove [agent], or remove `none = true` to let fledge's init start kestrel)",
    ],
  ],
  [
    "[agent] with a custom host init names the mode",
    'version = "1"\n[init]\npath = "./my-init"\n[agent]\nsource_strategy = "release"\nversion = "latest"\n',
    [
      '4:1 agent: [agent] is only used in the default init mode, but the init mode is custom (`[init] path = "./my-init"`, a host file): kestrel is not installed in this mode (hint: remove [agent], or remove [init] `path` to let fledge\'s init start kestrel)',
    ],
    ["/project/my-init"],
  ],
  [
    "[agent] with a custom image init names the mode",
    'version = "1"\n[init]\npath = "/bin/app-init"\n[agent]\nsource_strategy = "local"\npath = "./kestrel"\n[mappings]\n"./x" = "/bin/app-init"\n',
    [
      '4:1 agent: [agent] is only used in the default init mode, but the init mode is custom (`[init] path = "/bin/app-init"`, a path in the image): kestrel is not installed in this mode (hint: remove [agent], or remove [init] `path` to let fledge\'s init start kestrel)',
    ],
  ],
  [
    "a relative [init] path must be a host file",
    'version = "1"\n[init]\npath = "./missing-init"\n',
    ['3:1 init.path: "./missing-init" is not a file: looked for /project/missing-init on the host (hint: give a host file relative to fledge.toml, or an absolute path inside the image that a mapping provides)'],
  ],
  [
    "busybox = false only without kestrel",
    'version = "1"\n[source]\nbusybox = false\n',
    ["3:1 source.busybox: busybox can only be left out in the custom and none init modes (hint: remove `busybox = false`, or choose a custom or none init)"],
  ],
  [
    "oci_rootfs needs an image or a Dockerfile",
    'version = "1"\nstrategy = "oci_rootfs"\n',
    ['-:- source: the oci_rootfs strategy needs source.image, source.dockerfile or an [[overlay]] (hint: add [source] image = "docker.io/library/nginx:alpine")'],
  ],
  [
    "oci_rootfs takes one of image and Dockerfile",
    'version = "1"\nstrategy = "oci_rootfs"\n[source]\nimage = "nginx"\ndockerfile = "./Dockerfile"\n',
    ["3:1 source: source.image and source.dockerfile are both set: give only one (hint: keep one of them)"],
  ],
  ["filesystem type", 'version = "1"\n[filesystem]\ntype = "zfs"\n', ['3:1 filesystem.type: must be one of "squashfs", "ext4", "xfs", "btrfs", got the string "zfs"']],
  ["squashfs compression level 0–22", 'version = "1"\n[filesystem]\ncompression_level = 23\n', ["3:1 filesystem.compression_level: must be between 0 and 22, got 23"]],
  ["size_buffer_mb not negative", 'version = "1"\n[filesystem]\nsize_buffer_mb = -1\n', ["3:1 filesystem.size_buffer_mb: must be 0 or more, got -1"]],
  ["unknown table: did you mean", 'version = "1"\n[mapping]\n"./a" = "/a"\n', ["2:1 mapping: unknown table [mapping] (hint: did you mean [mappings]?)"]],
  ["unknown key: did you mean", 'version = "1"\n[agent]\nsource_stratgy = "release"\n', ["3:1 agent.source_stratgy: unknown key `source_stratgy` in [agent] (hint: did you mean `source_strategy`?)"]],
  ["unknown key in the wrong table", 'version = "1"\nbusybox_url = "file:///bin/busybox"\n', ["2:1 busybox_url: unknown key `busybox_url` at the top level (hint: `busybox_url` belongs in [source], not the top level)"]],
  ["unknown key with no near match lists the keys", 'version = "1"\n[init]\nfoo = 1\n', ["3:1 init.foo: unknown key `foo` in [init] (hint: [init] accepts: path, none)"]],
  ["a manifest.toml table in fledge.toml", 'version = "1"\n[workload]\nentrypoint = "/app"\n', ["2:1 workload: unknown table [workload] (hint: [workload] belongs in manifest.toml, not fledge.toml)"]],
  ["a manifest.toml key in fledge.toml", 'version = "1"\nname = "app"\n', ["2:1 name: unknown key `name` at the top level (hint: `name` belongs in manifest.toml, not fledge.toml)"]],
  ["wrong type", 'version = "1"\n[init]\nnone = "yes"\n', ['3:1 init.none: expected a boolean (true or false), got the string "yes"']],
  ["a table where a value belongs", 'version = "1"\n[init.path]\nx = "y"\n', ["2:1 init.path: expected a string, got a table"]],
];

describe("the fledge.toml rules of docs/architecture.md, as the user reads them", () => {
  it.each(RULES)("%s", (_rule, toml, expected, hostFiles) => {
    const r = check(toml, hostFiles);
    expect(seen(r)).toEqual(expected);
    expect(r.config).toBeUndefined();
  });
});

describe("warnings (valid, but probably not what was meant)", () => {
  const W: [string, string, string[]][] = [
    [
      "empty strings the Go fledge treats as unset",
      'version = "1"\n[init]\npath = ""\n[source]\nbusybox_url = ""\n',
      [
        "3:1 init.path: is empty, so it is ignored (as if it were not written) (hint: remove the line, or give it a value)",
        "5:1 source.busybox_url: is empty, so it is ignored (as if it were not written) (hint: remove the line, or give it a value)",
      ],
    ],
    [
      "none mode with nothing at /init",
      'version = "1"\n[init]\nnone = true\n',
      ['3:1 init.none: no mapping puts a file at /init, so the image would have no PID 1 (the build fails unless a plugin adds one) (hint: map your binary: [mappings] "./my-init" = "/init")'],
    ],
    [
      "an image init path nothing provides",
      'version = "1"\n[init]\npath = "/sbin/my-init"\n',
      [
        '3:1 init.path: "/sbin/my-init" is neither a host file (looked for /sbin/my-init) nor the destination of a mapping (the build fails unless a plugin or overlay provides it) (hint: map it: [mappings] "./my-init" = "/sbin/my-init", or give the host file\'s path)',
      ],
    ],
    [
      "an http agent without checksum",
      'version = "1"\n[agent]\nsource_strategy = "http"\nurl = "https://example.test/kestrel"\n',
      ['2:1 agent: kestrel is downloaded without a checksum, so the download is not verified (hint: add checksum = "sha256:<hex>")'],
    ],
    [
      "agent keys another source strategy uses",
      'version = "1"\n[agent]\nsource_strategy = "release"\nversion = "latest"\nurl = "https://x"\n',
      ['5:1 agent.url: is not used with source_strategy "release" (hint: the release is resolved on GitHub and verified against its checksums.txt; remove the key)'],
    ],
    ["[filesystem] with initramfs", 'version = "1"\n[filesystem]\ntype = "ext4"\n', ['2:1 filesystem: [filesystem] is only used by the oci_rootfs strategy (hint: remove it, or set strategy = "oci_rootfs")']],
    ["Dockerfile options without a Dockerfile", 'version = "1"\n[source]\ntarget = "x"\n', ["3:1 source.target: is only used with source.dockerfile (hint: remove it, or add source.dockerfile)"]],
  ];
  it.each(W)("%s", (_w, toml, expected) => {
    const r = check(toml);
    expect(r.problems).toEqual([]);
    expect(r.config).toBeDefined();
    expect(seen(r, "warnings")).toEqual(expected);
  });
});

describe("every problem at once", () => {
  it("a file with three problems reports all three, in file order", () => {
    const r = check(['version = "1"', "", "[agent]", 'source_strategy = "release"', 'version = "latest"', "", "[init]", "none = true", "", "[mapping]", '"./a" = "/init"', "", "[source]", "busybox = 1"].join("\n"));
    expect(seen(r).map((s) => s.replace(/ \(hint.*$/, ""))).toEqual([
      "3:1 agent: [agent] is only used in the default init mode, but the init mode is none (`[init] none = true`): kestrel is not installed in this mode",
      "10:1 mapping: unknown table [mapping]",
      "14:1 source.busybox: expected a boolean (true or false), got the integer 1",
    ]);
  });

  it("schema errors do not hide the mode rules, and the rules do not repeat the schema", () => {
    const r = check('version = "1"\n[agent]\nsource_strategy = "release"\nversion = 2\n');
    // version = 2 is dropped by the schema; the "release needs a version" rule must not echo it.
    expect(seen(r)).toEqual(['4:1 agent.version: expected a string, got the integer 2 (hint: quote it: version = "2")']);
  });

  it("ConfigError carries every issue and prints each on its line", () => {
    let err: unknown;
    try {
      parseFledgeConfig('version = "1"\nstrategy = 3\n[mapping]\n', "/p/fledge.toml");
    } catch (e) {
      err = e;
    }
    expect(err).toBeInstanceOf(ConfigError);
    const e = err as ConfigError;
    expect(e.issues).toHaveLength(2);
    expect(e.message).toBe(
      ['/p/fledge.toml:2:1: strategy: expected a string, got the integer 3\n  hint: quote it: strategy = "3"', "/p/fledge.toml:3:1: mapping: unknown table [mapping]\n  hint: did you mean [mappings]?"].join("\n"),
    );
  });
});

describe("TOML syntax errors", () => {
  it("give line, column and a code frame", () => {
    const r = check('version = "1"\n[agent\nsource_strategy = "release"\n');
    expect(r.problems).toHaveLength(1);
    const p = r.problems[0]!;
    expect(p).toMatchObject({ file: FILE, keyPath: "", line: 2, column: 2 });
    expect(p.message).toMatch(/^TOML syntax error: /);
    expect(p.codeFrame).toContain("2:  [agent");
    expect(formatIssue(p)).toMatch(/^\/project\/fledge\.toml:2:2: TOML syntax error: .*\n1: {2}version = "1"\n2: {2}\[agent\n/);
  });

  it("a missing file says so, with a hint", async () => {
    const dir = mkdtempSync(join(tmpdir(), "fledge-config-"));
    await expect(loadFledgeConfig(join(dir, "fledge.toml"))).rejects.toMatchObject({
      issues: [{ file: join(dir, "fledge.toml"), message: "file not found", hint: expect.stringContaining("-c") }],
    });
  });

  it("loadFledgeConfig places schema errors on their lines", async () => {
    const dir = mkdtempSync(join(tmpdir(), "fledge-config-"));
    writeFileSync(join(dir, "fledge.toml"), '# a comment\nversion = "1"\n\n[source]\nbusybox_sha256 = "nope"\n');
    await expect(loadFledgeConfig(join(dir, "fledge.toml"))).rejects.toMatchObject({ issues: [{ keyPath: "source.busybox_sha256", line: 5, column: 1 }] });
  });
});
