import { spawn } from "node:child_process";
import { existsSync, mkdirSync, mkdtempSync, readFileSync, readdirSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { readArchive } from "@fledge/cpio";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { main } from "./index.js";
import { sink } from "./test-sink.js";

const BIN = fileURLToPath(new URL("../dist/bin.js", import.meta.url));

let root: string;
beforeAll(() => {
  root = mkdtempSync(join(tmpdir(), "fledge-contract-"));
});
afterAll(() => rmSync(root, { recursive: true, force: true }));

const HEAD = 'version = "1"\n[init]\nnone = true\n[source]\nbusybox = false\n[mappings]\n"./init.sh" = "/init"\n';
const MANIFEST = 'name = "demo"\nversion = "1.0.0"\n[workload]\nentrypoint = "/init"\nbase_url = "http://127.0.0.1:8000"\n';

let n = 0;
function project(toml: string, files: Record<string, string> = {}): string {
  const dir = join(root, `p${++n}`);
  mkdirSync(dir, { recursive: true });
  writeFileSync(join(dir, "init.sh"), "#!/bin/sh\n", { mode: 0o755 });
  writeFileSync(join(dir, "manifest.toml"), MANIFEST);
  writeFileSync(join(dir, "fledge.toml"), toml);
  for (const [f, text] of Object.entries(files)) writeFileSync(join(dir, f), text);
  return dir;
}

async function run(args: string[], cwd: string) {
  const out = sink();
  const err = sink();
  const code = await main(args, { stdout: out.stream, stderr: err.stream, env: { FLEDGE_CACHE_DIR: join(root, "cache") }, cwd });
  return { code, stdout: out.text(), stderr: err.text() };
}

async function entries(file: string) {
  return new Map((await readArchive(readFileSync(file))).entries.map((e) => [e.path, e]));
}

const MOTD = `export default class MotdPlugin {
  name = "motd";
  constructor(options = {}) {
    if (typeof options.text !== "string") throw new Error("options.text must be a string");
    this.text = options.text;
  }
  apply(builder) {
    builder.hooks.beforeArchive.tap(this.name, (tree, ctx) => {
      tree.addFile("/etc/motd", this.text);
      ctx.info("motd added");
    });
  }
}
`;

describe("plugins from fledge.toml, as a third party writes them", () => {
  it('a class plugin with options, { use = "./motd.mjs", options = { text = … } }, adds a file that is in the image', async () => {
    const dir = project(HEAD.replace('version = "1"\n', 'version = "1"\nplugins = [{ use = "./motd.mjs", options = { text = "Welcome to fledge\\n" } }]\n'), { "motd.mjs": MOTD });
    const r = await run(["build", "-v"], dir);
    expect(r.code, r.stderr).toBe(0);
    expect(r.stderr).toContain("note: motd added\n");
    const e = await entries(join(dir, "plugin.cpio.gz"));
    expect(Buffer.from(e.get("etc/motd")!.data!).toString()).toBe("Welcome to fledge\n");
  });

  it("a plugin's bad options are reported at the entry, with its line", async () => {
    const dir = project(HEAD.replace('version = "1"\n', 'version = "1"\nplugins = [\n  { use = "./motd.mjs", options = { text = 3 } },\n]\n'), { "motd.mjs": MOTD });
    const r = await run(["build"], dir);
    expect(r.code).toBe(1);
    expect(r.stderr).toContain(`${join(dir, "fledge.toml")}:2:1 plugins[0]: plugin "./motd.mjs" could not be created from its options: options.text must be a string`);
    expect(existsSync(join(dir, "plugin.cpio.gz"))).toBe(false);
  });

  const DISK = `export default class DiskPlugin {
  name = "disk";
  apply(b) {
    b.hooks.strategy.for("disk").tapPromise(this.name, async (ctx) => {
      const out = ctx.outputs.artifact;
      await out.write("not really a disk");
      return { kind: "rootfs", format: "raw", path: out.path, stagedPath: out.stagedPath, sha256: "${"d".repeat(64)}", size: 17 };
    });
  }
}
`;

  it("strategy = <a plugin's strategy> builds with the plugin and fails clearly without it", async () => {
    const without = project(HEAD.replace('version = "1"\n', 'version = "1"\nstrategy = "disk"\n'), { "disk.mjs": DISK });
    const bad = await run(["build"], without);
    expect(bad.code).toBe(1);
    expect(bad.stderr).toContain(`${join(without, "fledge.toml")}:2:1 strategy: no plugin provides the "disk" strategy; on offer: initramfs`);
    const dir = project(HEAD.replace('version = "1"\n', 'version = "1"\nstrategy = "disk"\nplugins = ["./disk.mjs"]\n'), { "disk.mjs": DISK });
    const r = await run(["--json", "build", "-o", "rootfs.img"], dir);
    expect(r.code, r.stderr).toBe(0);
    const j = JSON.parse(r.stdout);
    expect(j.artifact).toMatchObject({ kind: "rootfs", format: "raw", path: join(dir, "rootfs.img") });
    expect(j.artifact.stagedPath).toBeUndefined();
    expect(JSON.parse(readFileSync(join(dir, "demo.manifest.json"), "utf8")).rootfs).toEqual({ url: join(dir, "rootfs.img"), checksum: `sha256:${"d".repeat(64)}`, format: "raw" });
  });

  it("[[overlay]] kind = <a plugin's kind> reaches that plugin's tap, and [source] image never builds silently", async () => {
    const plugin = `export default { name: "zips", apply(b) {
      b.hooks.resolveSource.for("zip").tapPromise("zips", async (req, tree) => { tree.addFile("/opt/from-zip", String(req.options.path)); return true; });
    } };`;
    const dir = project(HEAD.replace('version = "1"\n', 'version = "1"\nplugins = ["./zips.mjs"]\n') + '[[overlay]]\nkind = "zip"\npath = "./x.zip"\n', { "zips.mjs": plugin });
    const r = await run(["build"], dir);
    expect(r.code, r.stderr).toBe(0);
    expect(Buffer.from((await entries(join(dir, "plugin.cpio.gz"))).get("opt/from-zip")!.data!).toString()).toBe("./x.zip");

    // @fledge/plugin-oci ships with the CLI: [source] image loads it by itself and really fetches the
    // image (here offline, with an empty cache: it fails saying so, and writes nothing).
    const image = project(HEAD.replace("busybox = false\n", 'busybox = false\nimage = "nginx:alpine"\n'));
    const i = await run(["build", "--offline", "--cache-dir", join(image, "..", "empty-cache-" + Date.now())], image);
    expect(i.code).toBe(1);
    expect(i.stderr).toContain("docker.io/library/nginx:alpine");
    expect(i.stderr).toContain("--offline");
    expect(readdirSync(image).sort()).toEqual(["fledge.toml", "init.sh", "manifest.toml"]);
  });
});

describe('[[overlay]] kind = "tarball" (first-party, loaded by itself)', () => {
  it("from a URL on a loopback server: in the image, recorded in fledge.lock, and rebuilt --offline once the server is gone", async () => {
    const { pack } = await import("tar-stream");
    const { startServer, bytes } = await import("@fledge/fetch/testing");
    const p = pack();
    const parts: Buffer[] = [];
    p.on("data", (c: unknown) => void parts.push(c as Buffer)); // tar-stream's pack emits Buffers; its types say unknown
    p.entry({ name: "srv/hello.txt", mode: 0o644 }, "hello from a tarball\n");
    p.entry({ name: "srv/run", mode: 0o755, uid: 10, gid: 10 }, "#!/bin/sh\n");
    p.finalize();
    await new Promise<void>((r) => p.on("end", () => r()));
    const { gzipSync } = await import("node:zlib");
    const body = gzipSync(Buffer.concat(parts));
    const server = await startServer({ "/rootfs.tar.gz": bytes(body) });
    const url = `${server.url}/rootfs.tar.gz`;
    const dir = project(HEAD + `[[overlay]]\nkind = "tarball"\nurl = "${url}"\n`);
    try {
      const r = await run(["build", "-v"], dir);
      expect(r.code, r.stderr).toBe(0);
      expect(r.stderr).toContain("overlay[0] uses @fledge/plugin-tarball (loaded by itself)");
      const e = await entries(join(dir, "plugin.cpio.gz"));
      expect(Buffer.from(e.get("srv/hello.txt")!.data!).toString()).toBe("hello from a tarball\n");
      expect(e.get("srv/run")).toMatchObject({ mode: 0o755, uid: 10, gid: 10 });
      const lock = readFileSync(join(dir, "fledge.lock"), "utf8");
      expect(lock).toContain(`["tarball:${url}"]\nsource = "url"\nurl = "${url}"\nsha256 = "`);
      expect(server.hits("/rootfs.tar.gz")).toBe(1);
    } finally {
      await server.close();
    }
    const first = readFileSync(join(dir, "plugin.cpio.gz"));
    const off = await run(["build", "--offline", "--locked", "-o", "again.cpio.gz"], dir);
    expect(off.code, off.stderr).toBe(0);
    expect(readFileSync(join(dir, "again.cpio.gz")).equals(first)).toBe(true);
  });
});

describe("outputs", () => {
  it("-o naming an input or a device is refused before any work, and nothing changes", async () => {
    const dir = project(HEAD);
    const before = readFileSync(join(dir, "fledge.toml"), "utf8");
    const r = await run(["build", "-o", "fledge.toml"], dir);
    expect(r.code).toBe(1);
    expect(r.stderr).toContain(`${join(dir, "fledge.toml")}: is fledge.toml, an input of this build: fledge never writes its artifact over an input`);
    expect(readFileSync(join(dir, "fledge.toml"), "utf8")).toBe(before);
    const dev = await run(["build", "-o", "/dev/null"], dir);
    expect(dev.code).toBe(1);
    expect(dev.stderr).toContain("/dev/null: is a character device; fledge writes its artifact only as a regular file");
    expect(existsSync("/dev/demo.manifest.json")).toBe(false);
    const same = await run(["build", "-o", "out.x", "--manifest-output", "out.x"], dir);
    expect(same.stderr).toContain(`${join(dir, "out.x")}: is also where the artifact goes: every output needs its own path`);
    expect(readdirSync(dir).sort()).toEqual(["fledge.toml", "init.sh", "manifest.toml"]);
  });

  it("fledge validate refuses what build would (outputs, compressor, level, a missing plugin), with positions", async () => {
    const dir = project(HEAD.replace('version = "1"\n', 'version = "1"\nplugins = ["./nope.mjs"]\n'));
    const r = await run(["validate"], dir);
    expect(r.code).toBe(1);
    expect(r.stderr).toContain(`error: fledge.toml:2:1 plugins[0]: plugin "./nope.mjs": ${join(dir, "nope.mjs")} does not exist`);
    const dir2 = project(HEAD + '[output]\ncompression = "brotli"\n');
    expect((await run(["validate"], dir2)).stderr).toContain('error: fledge.toml:9:1 output.compression: unknown compression "brotli"');
    const dir3 = project(HEAD + "[output]\nlevel = 99\n");
    expect((await run(["validate"], dir3)).stderr).toMatch(/error: fledge\.toml:9:1 output\.level: gzip level 99 is out of range \d+–9/);
    const dir4 = project(HEAD);
    const o = await run(["validate", "-o", "init.sh"], dir4);
    expect(o.code).toBe(1);
    expect(o.stderr).toContain(`is the mapped file "./init.sh" (→ /init), an input of this build`);
    expect((await run(["validate"], dir4)).code).toBe(0);
  });

  it("a failing upload step after the outputs are written keeps them and says so (exit 1)", async () => {
    const plugin = `export default { name: "publisher", apply(b) {
      b.hooks.afterBuild.tapPromise({ name: "publisher", stage: 200 }, async () => { throw new Error("registry said 503"); });
    } };`;
    const dir = project(HEAD.replace('version = "1"\n', 'version = "1"\nplugins = ["./publish.mjs"]\n'), { "publish.mjs": plugin });
    const r = await run(["build"], dir);
    expect(r.code).toBe(1);
    expect(r.stderr).toContain(
      'error: plugin "publisher" failed in hooks.afterBuild: registry said 503\nthe build itself succeeded: plugin.cpio.gz, demo.manifest.json and plugin.cpio.gz.origins.json were written and are kept\n',
    );
    expect(existsSync(join(dir, "plugin.cpio.gz"))).toBe(true);
    const j = await run(["--json", "build", "-o", "b.cpio.gz"], dir);
    expect(JSON.parse(j.stdout).error).toMatchObject({ code: "FLEDGE_POST_BUILD", kept: [join(dir, "b.cpio.gz"), join(dir, "demo.manifest.json"), join(dir, "b.cpio.gz.origins.json")] });
  });

  it("after kill -9 the staged outputs carry the dead pid, and the next build removes them", async () => {
    // A verify step that never ends: the outputs are staged, not yet moved into place.
    const hang = `export default { name: "hang", apply(b) {
      b.hooks.afterBuild.tapPromise({ name: "hang", stage: -100 }, async () => { process.stderr.write("STAGED\\n"); await new Promise(() => {}); });
    } };`;
    const dir = project(HEAD.replace('version = "1"\n', 'version = "1"\nplugins = ["./hang.mjs"]\n'), { "hang.mjs": hang });
    const child = spawn(process.execPath, [BIN, "build"], { cwd: dir, env: { PATH: process.env.PATH, FLEDGE_CACHE_DIR: join(root, "cache-bin") } });
    await new Promise<void>((resolve, reject) => {
      child.stderr.on("data", (d) => String(d).includes("STAGED") && resolve());
      child.on("exit", (code) => reject(new Error(`exited ${code}`)));
    });
    const temps = readdirSync(dir).filter((f) => f.startsWith(".fledge-tmp-"));
    expect(temps).toHaveLength(2); // the artifact and the manifest (the origins record comes at SBOM, after VERIFY)
    expect(temps).toContainEqual(expect.stringMatching(new RegExp(`^\\.fledge-tmp-${child.pid}-[0-9a-f]{8}-[0-9a-f]{12}-demo\\.manifest\\.json$`)));
    expect(temps).toContainEqual(expect.stringMatching(new RegExp(`^\\.fledge-tmp-${child.pid}-[0-9a-f]{8}-[0-9a-f]{12}-plugin\\.cpio\\.gz$`)));
    child.kill("SIGKILL");
    await new Promise((r) => child.on("close", r));
    writeFileSync(join(dir, "fledge.toml"), HEAD);
    const r = await run(["build", "-v"], dir);
    expect(r.code, r.stderr).toBe(0);
    expect(r.stderr).toContain(`removed 2 temp files left in ${dir} by an interrupted build`);
    expect(readdirSync(dir).sort()).toEqual(["demo.manifest.json", "fledge.toml", "hang.mjs", "init.sh", "manifest.toml", "plugin.cpio.gz", "plugin.cpio.gz.origins.json"]);
  });
});
