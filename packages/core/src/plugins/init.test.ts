import { execFileSync } from "node:child_process";
import { chmodSync, mkdirSync, mkdtempSync, readFileSync, rmSync, statSync, writeFileSync, existsSync } from "node:fs";
import { createServer, type Server } from "node:http";
import type { AddressInfo } from "node:net";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { initBinaryPath } from "@fledge/cinit";
import { createHash } from "node:crypto";
import { build } from "../build.js";
import { rootCause } from "../errors.js";
import type { FledgePlugin } from "../builder.js";
import type { RootfsTree } from "../tree.js";
import { VOLANT_INIT_FILE } from "./init.js";

/** An HTTP server on 127.0.0.1 that serves busybox and counts every request. */
let server: Server;
let requests = 0;
let busyboxUrl = "";
const BUSYBOX = readFileSync("/bin/busybox");
const BUSYBOX_SHA256 = createHash("sha256").update(BUSYBOX).digest("hex");
const roots: string[] = [];

beforeAll(async () => {
  server = createServer((_req, res) => {
    requests++;
    res.writeHead(200, { "content-length": BUSYBOX.length });
    res.end(BUSYBOX);
  });
  await new Promise<void>((r) => server.listen(0, "127.0.0.1", r));
  busyboxUrl = `http://127.0.0.1:${(server.address() as AddressInfo).port}/busybox`;
});
afterAll(async () => {
  await new Promise((r) => server.close(r));
  for (const r of roots) rmSync(r, { recursive: true, force: true });
});

/** A project directory with fledge.toml (and files); returns its path. */
function project(toml: string, files: Record<string, string | { text: string; mode: number }> = {}): string {
  const dir = mkdtempSync(join(tmpdir(), "fledge-init-test-"));
  roots.push(dir);
  writeFileSync(join(dir, "fledge.toml"), toml.replaceAll('busybox_url = "$BUSYBOX"', `busybox_url = "${busyboxUrl}"\nbusybox_sha256 = "${BUSYBOX_SHA256}"`));
  writeFileSync(join(dir, "manifest.toml"), 'name = "t"\nversion = "0.1.0"\n[workload]\nentrypoint = "/init"\nbase_url = "http://127.0.0.1:9000"\n');
  for (const [name, f] of Object.entries(files)) {
    const path = join(dir, name);
    mkdirSync(dirname(path), { recursive: true });
    writeFileSync(path, typeof f === "string" ? f : f.text);
    chmodSync(path, typeof f === "string" ? 0o644 : f.mode);
  }
  return dir;
}

/** Captures the finished tree (after every other beforeArchive tap). */
function capture(): { plugin: FledgePlugin; tree: () => RootfsTree } {
  let tree: RootfsTree | undefined;
  return {
    plugin: {
      name: "capture",
      apply: (b) =>
        b.hooks.beforeArchive.tap({ name: "capture", stage: 1e9 }, (t) => {
          tree = t;
        }),
    },
    tree: () => tree!,
  };
}

async function run(dir: string, plugins: FledgePlugin[] = []) {
  return build({ config: join(dir, "fledge.toml"), output: join(dir, "out", "plugin.cpio.gz"), cacheDir: join(dir, "cache"), plugins });
}

/** The build's error, unwrapped from the PluginError that names the failing hook. */
async function failure(dir: string, plugins: FledgePlugin[] = []): Promise<Error> {
  const err = await run(dir, plugins).then(
    () => undefined,
    (e: unknown) => e,
  );
  expect(err, "the build should have failed").toBeInstanceOf(Error);
  return rootCause(err) as Error;
}

/** Extracts the artifact with bsdtar and returns the directory. */
function extract(dir: string): string {
  const to = join(dir, "x");
  mkdirSync(to);
  execFileSync("bsdtar", ["-xf", join(dir, "out", "plugin.cpio.gz"), "-C", to]);
  return to;
}

const HEADER = 'version = "1"\nstrategy = "initramfs"\n';
const SH_SCRIPT = "#!/bin/sh\necho hello\n";

describe("init modes in the pipeline", () => {
  it("default: /init is fledge's C init and /bin/kestrel the agent", async () => {
    const dir = project(`${HEADER}[agent]\nsource_strategy = "local"\npath = "./kestrel"\n[source]\nbusybox_url = "$BUSYBOX"\n`, {
      kestrel: { text: SH_SCRIPT, mode: 0o755 },
    });
    await run(dir);
    const x = extract(dir);
    expect(readFileSync(join(x, "init")).equals(readFileSync(initBinaryPath("x86_64")))).toBe(true);
    expect(statSync(join(x, "init")).mode & 0o7777).toBe(0o755);
    expect(readFileSync(join(x, "bin/kestrel"), "utf8")).toBe(SH_SCRIPT);
    expect(existsSync(join(x, ".volant_init"))).toBe(false);
  });

  it("[output] arch = aarch64 picks the aarch64 init", async () => {
    const dir = project(`${HEADER}[agent]\nsource_strategy = "local"\npath = "./kestrel"\n[source]\nbusybox_url = "$BUSYBOX"\n[output]\narch = "aarch64"\n`, {
      kestrel: { text: SH_SCRIPT, mode: 0o755 },
    });
    const c = capture();
    await run(dir, [c.plugin]);
    const node = c.tree().get("/init");
    expect(node && node.type === "file" && "data" in node && Buffer.from(node.data!).equals(readFileSync(initBinaryPath("aarch64")))).toBe(true);
  });

  it("custom with a host file (the seed's Mode 2): the file is /init, 0755 even when mapped redundantly from a 0644 file", async () => {
    const dir = project(`${HEADER}[init]\npath = "./my-init"\n[source]\nbusybox_url = "$BUSYBOX"\n[mappings]\n"./my-init" = "/init"\n"./myapp" = "/usr/bin/myapp"\n`, {
      "my-init": SH_SCRIPT,
      myapp: "app",
    });
    const result = await run(dir);
    const x = extract(dir);
    expect(readFileSync(join(x, "init"), "utf8")).toBe(SH_SCRIPT);
    expect(statSync(join(x, "init")).mode & 0o7777).toBe(0o755);
    expect(existsSync(join(x, ".volant_init"))).toBe(false);
    expect(existsSync(join(x, "bin/kestrel"))).toBe(false);
    expect(result.warnings).toEqual([]);
  });

  it("custom with an image path: C init at /init, the path in /.volant_init, the script from a mapped directory", async () => {
    const dir = project(`${HEADER}[init]\npath = "/usr/local/bin/my-init.sh"\n[source]\nbusybox_url = "$BUSYBOX"\n[mappings]\n"./rootfs" = "/usr/local"\n`, {
      "rootfs/bin/my-init.sh": { text: SH_SCRIPT, mode: 0o755 },
    });
    await run(dir);
    const x = extract(dir);
    expect(readFileSync(join(x, "init")).equals(readFileSync(initBinaryPath("x86_64")))).toBe(true);
    expect(readFileSync(join(x, VOLANT_INIT_FILE), "utf8")).toBe("/usr/local/bin/my-init.sh\n");
    expect(readFileSync(join(x, "usr/local/bin/my-init.sh"), "utf8")).toBe(SH_SCRIPT);
  });

  it("none: only what the mappings put at /init", async () => {
    const dir = project(`${HEADER}[init]\nnone = true\n[source]\nbusybox_url = "$BUSYBOX"\n[mappings]\n"./my-supervisor" = "/init"\n`, {
      "my-supervisor": { text: SH_SCRIPT, mode: 0o755 },
    });
    await run(dir);
    const x = extract(dir);
    expect(readFileSync(join(x, "init"), "utf8")).toBe(SH_SCRIPT);
    expect(existsSync(join(x, ".volant_init"))).toBe(false);
  });

  it("none: a plugin that removes /init after the mappings fails the build", async () => {
    const dir = project(`${HEADER}[init]\nnone = true\n[source]\nbusybox_url = "$BUSYBOX"\n[mappings]\n"./my-supervisor" = "/init"\n`, {
      "my-supervisor": { text: SH_SCRIPT, mode: 0o755 },
    });
    const remover: FledgePlugin = { name: "rm-init", apply: (b) => b.hooks.mappings.tap({ name: "rm-init", stage: 10 }, (t) => void t.remove("/init")) };
    expect(await failure(dir, [remover])).toMatchObject({ code: "FLEDGE_NO_INIT", message: "[init] none = true, but no mapping puts anything at /init" });
    expect(existsSync(join(dir, "out", "plugin.cpio.gz"))).toBe(false);
  });
});

describe("init problems fail before anything is fetched", () => {
  it("none without a mapping to /init: the init error at [init] none, and busybox was never requested", async () => {
    const before = requests;
    const dir = project(`${HEADER}[init]\nnone = true\n[source]\nbusybox_url = "$BUSYBOX"\n`);
    expect(await failure(dir)).toMatchObject({
      code: "FLEDGE_CONFIG",
      issues: [expect.objectContaining({ keyPath: "init.none", line: 4, column: 1, message: expect.stringContaining("no mapping puts anything at /init") })],
    });
    expect(requests).toBe(before);
    expect(existsSync(join(dir, "cache"))).toBe(false);
  });

  it("an unmapped custom image path names both places looked in, and busybox was never requested", async () => {
    const before = requests;
    const dir = project(`${HEADER}[init]\npath = "/usr/local/bin/nowhere"\n[source]\nbusybox_url = "$BUSYBOX"\n`);
    const err = (await failure(dir)) as Error & { issues: { keyPath: string; message: string }[] };
    expect(err).toMatchObject({ code: "FLEDGE_CONFIG" });
    expect(err.issues).toHaveLength(1);
    expect(err.issues[0]!.keyPath).toBe("init.path");
    expect(err.issues[0]!.message).toContain(join(dir, "usr/local/bin/nowhere"));
    expect(err.issues[0]!.message).toContain("nor provided in the image by a mapping or overlay");
    expect(requests).toBe(before);
  });

  it("busybox_url naming a file that does not exist: both problems at once, before any fetch", async () => {
    const dir = project(`${HEADER}[init]\nnone = true\n[source]\nbusybox_url = "file:///nonexistent/busybox"\n`);
    expect(await failure(dir)).toMatchObject({
      code: "FLEDGE_CONFIG",
      issues: [
        expect.objectContaining({ keyPath: "init.none", message: expect.stringContaining("no mapping puts anything at /init") }),
        expect.objectContaining({ keyPath: "source.busybox_url", message: "/nonexistent/busybox does not exist" }),
      ],
    });
  });

  it("path and none together are a config error naming both modes, before any fetch", async () => {
    const before = requests;
    const dir = project(`${HEADER}[init]\npath = "./my-init"\nnone = true\n[source]\nbusybox_url = "$BUSYBOX"\n[mappings]\n"./my-init" = "/init"\n`, { "my-init": SH_SCRIPT });
    expect(await failure(dir)).toMatchObject({ name: "ConfigError", message: expect.stringMatching(/two init modes at once, custom .* and none/) });
    expect(requests).toBe(before);
  });

  it("[agent] with a custom init is a config error, before any fetch", async () => {
    const before = requests;
    const dir = project(`${HEADER}[init]\npath = "./my-init"\n[agent]\nsource_strategy = "local"\npath = "./my-init"\n[source]\nbusybox_url = "$BUSYBOX"\n`, { "my-init": SH_SCRIPT });
    expect(await failure(dir)).toMatchObject({ name: "ConfigError", message: expect.stringMatching(/\[agent\] is only used in the default init mode/) });
    expect(requests).toBe(before);
  });
});

describe("[source] busybox = false", () => {
  it("warns when /init is a #!/bin/sh script and busybox (so /bin/sh) is left out", async () => {
    const dir = project(`${HEADER}[init]\nnone = true\n[source]\nbusybox = false\n[mappings]\n"./my-init" = "/init"\n`, {
      "my-init": { text: SH_SCRIPT, mode: 0o755 },
    });
    const before = requests;
    const result = await run(dir);
    expect(requests).toBe(before);
    expect(result.warnings).toEqual(["/init is a script for /bin/sh, but /bin/sh is not in the image (busybox is left out: [source] busybox = false): the kernel will fail to run it"]);
    const x = extract(dir);
    expect(existsSync(join(x, "bin/busybox"))).toBe(false);
  });

  it("checks the image path's script in custom-image mode, and is quiet when the interpreter is mapped in", async () => {
    const dir = project(`${HEADER}[init]\npath = "/app/run"\n[source]\nbusybox = false\n[mappings]\n"./run" = "/app/run"\n"./sh" = "/bin/sh"\n`, {
      run: { text: SH_SCRIPT, mode: 0o755 },
      sh: { text: "\x7fELF", mode: 0o755 },
    });
    expect((await run(dir)).warnings).toEqual([]);
    const dir2 = project(`${HEADER}[init]\npath = "/app/run"\n[source]\nbusybox = false\n[mappings]\n"./run" = "/app/run"\n`, {
      run: { text: SH_SCRIPT, mode: 0o755 },
    });
    expect((await run(dir2)).warnings).toEqual([expect.stringMatching(/^\/app\/run is a script for \/bin\/sh, but \/bin\/sh is not in the image/)]);
  });

  it("is quiet with busybox included (/bin/sh -> busybox) and for a binary /init", async () => {
    const withBusybox = project(`${HEADER}[init]\nnone = true\n[source]\nbusybox_url = "$BUSYBOX"\n[mappings]\n"./my-init" = "/init"\n`, {
      "my-init": { text: SH_SCRIPT, mode: 0o755 },
    });
    expect((await run(withBusybox)).warnings).toEqual([]);
    const binary = project(`${HEADER}[init]\nnone = true\n[source]\nbusybox = false\n[mappings]\n"./my-init" = "/init"\n`, {
      "my-init": { text: "\x7fELF\x02\x01\x01", mode: 0o755 },
    });
    expect((await run(binary)).warnings).toEqual([]);
  });

  it("follows symlinks in the tree, including through a linked directory", async () => {
    const dir = project(`${HEADER}[init]\nnone = true\n[source]\nbusybox_url = "$BUSYBOX"\n[mappings]\n"./my-init" = "/init"\n`, {
      "my-init": { text: "#!/usr/bin/sh -e\necho hi\n", mode: 0o755 },
    });
    const link: FledgePlugin = {
      name: "link-usr-bin",
      apply: (b) =>
        b.hooks.beforeArchive.tap("link-usr-bin", (t) => {
          t.remove("/usr/bin");
          t.symlink("/usr/bin", "../bin");
        }),
    };
    expect((await run(dir, [link])).warnings).toEqual([]);
  });
});
