import { spawn, spawnSync } from "node:child_process";
import { createHash } from "node:crypto";
import { chmodSync, copyFileSync, cpSync, existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { writeLayout } from "@fledge/plugin-oci/testing";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { hostBusybox } from "./qemu.js";

/**
 * The one-file executable (`npm run package`): copied alone into an empty directory and run with a
 * PATH that holds no `node`, it builds the hello example byte-identical to the npm-run CLI.
 */
const repo = fileURLToPath(new URL("../../", import.meta.url));
const work = mkdtempSync(join(tmpdir(), "fledge-e2e-exe-"));
const binDir = join(work, "bin");
const NPM_CLI = join(repo, "packages", "cli", "bin", "fledge.cjs");
const MIRROR = "https://busybox.net/downloads/binaries/1.35.0-x86_64-linux-musl/=file:///bin/";
const sha = (f: string) => createHash("sha256").update(readFileSync(f)).digest("hex");

interface Run {
  code: number | null;
  stdout: string;
  stderr: string;
}
function run(cmd: string, args: string[], cwd: string, env: NodeJS.ProcessEnv): Promise<Run> {
  return new Promise((resolve, reject) => {
    const child = spawn(cmd, args, { cwd, env, stdio: ["ignore", "pipe", "pipe"] });
    let stdout = "";
    let stderr = "";
    child.stdout.on("data", (d) => (stdout += d));
    child.stderr.on("data", (d) => (stderr += d));
    child.on("error", reject);
    child.on("close", (code) => resolve({ code, stdout, stderr }));
  });
}

/** The environment of a machine with no Node: only the executable's directory on PATH. */
const bare = (cache: string): NodeJS.ProcessEnv => ({ PATH: binDir, HOME: work, NO_COLOR: "1", FLEDGE_CACHE_DIR: cache, FLEDGE_MIRRORS: MIRROR });

/** A copy of examples/hello (without earlier outputs), optionally with another compressor. */
function hello(name: string, compression?: string): string {
  const dir = join(work, name);
  cpSync(join(repo, "examples", "hello"), dir, { recursive: true, filter: (s) => !/plugin\.cpio\.gz$|\.manifest\.json$|fledge\.lock$/.test(s) });
  if (compression) {
    const toml = readFileSync(join(dir, "fledge.toml"), "utf8");
    writeFileSync(join(dir, "fledge.toml"), `${toml}\n[output]\ncompression = "${compression}"\n`);
  }
  return dir;
}

beforeAll(() => {
  hostBusybox();
  // Package from the current build, as CI does (the first run fetches the pinned Node from npm).
  const r = spawnSync(process.execPath, [join(repo, "scripts", "package.mjs"), "--out", join(work, "dist")], { cwd: repo, encoding: "utf8", timeout: 600_000 });
  if (r.status !== 0) throw new Error(`npm run package failed:\n${r.stdout}${r.stderr}`);
  mkdirSync(binDir);
  copyFileSync(join(work, "dist", "fledge-linux-x64"), join(binDir, "fledge"));
  chmodSync(join(binDir, "fledge"), 0o755);
}, 600_000);
afterAll(() => rmSync(work, { recursive: true, force: true }));

describe("dist/fledge-linux-x64, alone in an empty directory, no node on PATH", () => {
  it("has no node to lean on", () => {
    const r = spawnSync("/bin/sh", ["-c", "command -v node"], { env: { PATH: binDir } });
    expect(r.status).not.toBe(0);
    expect(existsSync(join(binDir, "node_modules"))).toBe(false);
  });

  it("names its version and the commit it was built from", async () => {
    const r = await run(join(binDir, "fledge"), ["--version"], work, bare(join(work, "cache-v")));
    expect(r.code, r.stderr).toBe(0);
    const commit = spawnSync("git", ["rev-parse", "--short=12", "HEAD"], { cwd: repo, encoding: "utf8" }).stdout.trim();
    expect(r.stdout).toMatch(new RegExp(`^fledge \\d+\\.\\d+\\.\\d+ \\(commit ${commit}(-modified)?, one-file executable, Node \\d+\\.\\d+\\.\\d+\\)\\n$`));
  });

  // gzip and zstd are what issue 9 asks for; the other three prove every compressor is inside
  for (const compression of ["gzip", "zstd", "xz", "lz4", "none"]) {
    it(`builds the hello example with ${compression}, byte-identical to the npm-run CLI`, async () => {
      const a = hello(`exe-${compression}`, compression === "gzip" ? undefined : compression);
      const b = hello(`npm-${compression}`, compression === "gzip" ? undefined : compression);
      const exe = await run(join(binDir, "fledge"), ["build", "--json"], a, bare(join(work, `cache-exe-${compression}`)));
      expect(exe.code, exe.stderr).toBe(0);
      const npm = await run(process.execPath, [NPM_CLI, "build", "--json"], b, { PATH: process.env.PATH, NO_COLOR: "1", FLEDGE_CACHE_DIR: join(work, `cache-npm-${compression}`), FLEDGE_MIRRORS: MIRROR });
      expect(npm.code, npm.stderr).toBe(0);
      expect(JSON.parse(exe.stdout).artifact.compression).toBe(compression);
      expect(sha(join(a, "plugin.cpio.gz"))).toBe(sha(join(b, "plugin.cpio.gz")));
      expect(readFileSync(join(a, "fledge.lock"), "utf8")).toBe(readFileSync(join(b, "fledge.lock"), "utf8"));
    });
  }

  for (const compression of ["gzip", "zstd"])
    it(`${compression}: compresses in worker threads (several segments) and loads a plugin module, byte-identical to the npm-run CLI`, async () => {
      const make = (name: string) => {
        const dir = join(work, name);
        mkdirSync(join(dir, "data"), { recursive: true });
        // ~24 MiB that compresses poorly, so the archive has several segments and workers start
        let x = 1;
        for (let f = 0; f < 3; f++) {
          const buf = Buffer.alloc(8 * 1024 * 1024);
          for (let i = 0; i < buf.length; i += 4) {
            x = (Math.imul(x, 1103515245) + 12345) >>> 0;
            buf.writeUInt32LE(x, i);
          }
          writeFileSync(join(dir, "data", `f${f}.bin`), buf);
        }
        writeFileSync(join(dir, "seen.mjs"), 'export default { name: "seen", apply(b) { b.hooks.beforeArchive.tap("seen", (tree) => { tree.addFile("/etc/seen-by-plugin", "yes\\n"); }); } };\n');
        writeFileSync(
          join(dir, "fledge.toml"),
          `version = "1"\nplugins = ["./seen.mjs"]\n[init]\nnone = true\n[source]\nbusybox_url = "${hostBusybox()}"\n[mappings]\n"${hostBusybox()}" = "/init"\n"./data" = "/data"\n[output]\ncompression = "${compression}"\n`,
        );
        writeFileSync(join(dir, "manifest.toml"), 'name = "big"\n[workload]\nentrypoint = "/init"\nbase_url = "http://127.0.0.1:8000"\n');
        return dir;
      };
      const a = make(`big-exe-${compression}`);
      const b = make(`big-npm-${compression}`);
      const exe = await run(join(binDir, "fledge"), ["build", "--json", "-v"], a, bare(join(work, `cache-big-exe-${compression}`)));
      expect(exe.code, exe.stderr).toBe(0);
      expect(exe.stderr).toMatch(/archive: \d+ segments \(0 from cache, \d+ compressed on [1-9]\d* workers\)/);
      const npm = await run(process.execPath, [NPM_CLI, "build", "--json"], b, { PATH: process.env.PATH, NO_COLOR: "1", FLEDGE_CACHE_DIR: join(work, `cache-big-npm-${compression}`) });
      expect(npm.code, npm.stderr).toBe(0);
      expect(sha(join(a, "plugin.cpio.gz"))).toBe(sha(join(b, "plugin.cpio.gz")));
      const list = await run(join(binDir, "fledge"), ["inspect", "--json", "plugin.cpio.gz"], a, bare(join(work, `cache-big-exe-${compression}`)));
      expect(list.code, list.stderr).toBe(0);
      expect(list.stdout).toContain("etc/seen-by-plugin");
    });

  it('has the first-party plugins built in: [source] image = "oci:<layout>" (gzip and zstd layers) and strategy = "oci_rootfs", byte-identical to the npm-run CLI', async () => {
    const layout = join(work, "oci-layout");
    await writeLayout(layout, "1", [
      {
        compression: ["gzip", "zstd"],
        layers: [
          [
            { name: "etc/", type: "directory" },
            { name: "etc/from-image", data: "gzip layer\n" },
            { name: "etc/gone", data: "whited out\n" },
          ],
          [
            { name: "etc/.wh.gone", data: "" },
            { name: "app/", type: "directory" },
            { name: "app/run.sh", data: "#!/bin/sh\necho zstd layer\n", mode: 0o755 },
          ],
        ],
        config: { Entrypoint: ["/app/run.sh"] },
      },
    ]);
    const make = (name: string, strategy: "initramfs" | "oci_rootfs") => {
      const dir = join(work, name);
      mkdirSync(dir, { recursive: true });
      const toml = [
        'version = "1"',
        `strategy = "${strategy}"`,
        ...(strategy === "initramfs" ? ["[init]", "none = true"] : ["[agent]", 'source_strategy = "local"', `path = "${hostBusybox()}"`]),
        "[source]",
        `image = "oci:${layout}:1"`,
        `busybox_url = "${hostBusybox()}"`,
        ...(strategy === "initramfs" ? ["[mappings]", `"${hostBusybox()}" = "/init"`] : []),
      ];
      writeFileSync(join(dir, "fledge.toml"), toml.join("\n") + "\n");
      writeFileSync(join(dir, "manifest.toml"), 'name = "img"\nversion = "0.1.0"\n[workload]\nentrypoint = "/app/run.sh"\nbase_url = "http://127.0.0.1:8000"\n');
      return dir;
    };
    for (const [strategy, artifact] of [
      ["initramfs", "plugin.cpio.gz"],
      ["oci_rootfs", "rootfs.img"],
    ] as const) {
      const a = make(`oci-exe-${strategy}`, strategy);
      const b = make(`oci-npm-${strategy}`, strategy);
      const exe = await run(join(binDir, "fledge"), ["build", "--json", "-o", artifact], a, bare(join(work, "cache-oci-exe")));
      expect(exe.code, exe.stderr).toBe(0);
      const npm = await run(process.execPath, [NPM_CLI, "build", "--json", "-o", artifact], b, { PATH: process.env.PATH, NO_COLOR: "1", FLEDGE_CACHE_DIR: join(work, "cache-oci-npm") });
      expect(npm.code, npm.stderr).toBe(0);
      expect(JSON.parse(exe.stdout).artifact.kind).toBe(strategy === "initramfs" ? "initramfs" : "rootfs");
      expect(sha(join(a, artifact))).toBe(sha(join(b, artifact)));
      if (strategy === "initramfs") {
        const list = await run(join(binDir, "fledge"), ["inspect", artifact], a, bare(join(work, "cache-oci-exe")));
        expect(list.stdout).toMatch(/ etc\/from-image$/m);
        expect(list.stdout).toMatch(/ app\/run\.sh$/m);
        expect(list.stdout).not.toMatch(/etc\/gone/);
      }
    }
  });

  it('has plugin-tarball and plugin-sbom built in: [[overlay]] kind = "tarball" (bsdtar, zstd) and plugins = ["@fledge/plugin-sbom"], byte-identical to the npm-run CLI', async () => {
    const tree = join(work, "tarball-tree");
    mkdirSync(join(tree, "srv"), { recursive: true });
    writeFileSync(join(tree, "srv", "hello.txt"), "from a tarball\n");
    const make = (name: string) => {
      const dir = hello(name);
      spawnSync("bsdtar", ["--zstd", "--uid", "0", "--gid", "0", "-cf", join(dir, "rootfs.tar.zst"), "-C", tree, "srv"]);
      const toml = readFileSync(join(dir, "fledge.toml"), "utf8").replace('version = "1"\n', 'version = "1"\nplugins = ["@fledge/plugin-sbom"]\n');
      writeFileSync(join(dir, "fledge.toml"), `${toml}\n[[overlay]]\nkind = "tarball"\npath = "./rootfs.tar.zst"\n`);
      return dir;
    };
    const a = make("tarball-exe");
    const b = make("tarball-npm");
    expect(readFileSync(join(a, "rootfs.tar.zst")).equals(readFileSync(join(b, "rootfs.tar.zst")))).toBe(true);
    const exe = await run(join(binDir, "fledge"), ["build", "-v"], a, bare(join(work, "cache-tarball-exe")));
    expect(exe.code, exe.stderr).toBe(0);
    expect(exe.stderr).toContain("overlay[0] uses @fledge/plugin-tarball (loaded by itself)");
    const npm = await run(process.execPath, [NPM_CLI, "build"], b, { PATH: process.env.PATH, NO_COLOR: "1", FLEDGE_CACHE_DIR: join(work, "cache-tarball-npm"), FLEDGE_MIRRORS: MIRROR });
    expect(npm.code, npm.stderr).toBe(0);
    expect(sha(join(a, "plugin.cpio.gz"))).toBe(sha(join(b, "plugin.cpio.gz")));
    expect(sha(join(a, "plugin.cpio.gz.spdx.json"))).toBe(sha(join(b, "plugin.cpio.gz.spdx.json")));
    expect(readFileSync(join(a, "plugin.cpio.gz.spdx.json"), "utf8")).toContain('"fileName": "./srv/hello.txt"');
  });

  it("validate, schema, inspect and cache work", async () => {
    const dir = hello("cmds");
    const env = bare(join(work, "cache-cmds"));
    const exe = join(binDir, "fledge");
    expect((await run(exe, ["validate"], dir, env)).code).toBe(0);
    const schema = await run(exe, ["schema", "manifest"], dir, env);
    expect(JSON.parse(schema.stdout).title).toBe("fledge manifest.toml v1");
    expect((await run(exe, ["build", "-q"], dir, env)).code).toBe(0);
    const inspect = await run(exe, ["inspect", "plugin.cpio.gz"], dir, env);
    expect(inspect.stdout).toMatch(/^-rwxr-xr-x .* init$/m);
    const add = await run(exe, ["cache", "add", "/bin/busybox"], dir, env);
    expect(add.code, add.stderr).toBe(0);
    expect((await run(exe, ["cache", "ls"], dir, env)).stdout).toContain(sha("/bin/busybox").slice(0, 12));
  });
});

describe("dist/fledge-linux-arm64 under qemu-user", () => {
  const qemu = "/usr/bin/qemu-aarch64-static";
  const sysroot = "/usr/aarch64-linux-gnu";
  it("builds the hello example byte-identical to the x64 one", async () => {
    if (!existsSync(qemu) || !existsSync(join(sysroot, "lib", "libstdc++.so.6"))) throw new Error(`${qemu} or the arm64 runtime in ${sysroot} is missing: run scripts/install-e2e-deps.sh`);
    const arm = join(work, "dist", "fledge-linux-arm64");
    expect(existsSync(arm), "npm run package writes the arm64 executable when aarch64-linux-gnu-strip is installed").toBe(true);
    const a = hello("arm64");
    const b = hello("arm64-x64");
    const r = await run(qemu, ["-L", sysroot, arm, "build", "-q"], a, bare(join(work, "cache-arm")));
    expect(r.code, r.stderr).toBe(0);
    expect((await run(join(binDir, "fledge"), ["build", "-q"], b, bare(join(work, "cache-arm-x64")))).code).toBe(0);
    expect(sha(join(a, "plugin.cpio.gz"))).toBe(sha(join(b, "plugin.cpio.gz")));
  }, 300_000);
});
