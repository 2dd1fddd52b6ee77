/**
 * Fault injection (issue 11): each case a careless or hostile user found, run against the built
 * CLI (`dist/bin.js`) in a child process, as a user would. Self-contained on purpose (node
 * built-ins and the loopback test server only), so the same file runs against an older build to
 * show that each case failed there.
 */
import { spawn, spawnSync } from "node:child_process";
import { createHash, randomBytes } from "node:crypto";
import { createWriteStream, existsSync } from "node:fs";
import { chmod, mkdir, mkdtemp, readdir, readFile, rm, stat, utimes, writeFile } from "node:fs/promises";
import { hostname, tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { createGzip } from "node:zlib";
import { pipeline } from "node:stream/promises";
import { bytes, startServer, type TestServer } from "@fledge/fetch/testing";
import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, it, vi } from "vitest";

vi.setConfig({ testTimeout: 120_000 });

const BIN = fileURLToPath(new URL("../dist/bin.js", import.meta.url));
const BUSYBOX = await readFile("/bin/busybox");
const BB_SHA = createHash("sha256").update(BUSYBOX).digest("hex");
/** The temp-name pattern every fledge temp uses (see @fledge/safe-fs), spelled out here. */
const HOST8 = createHash("sha256").update(hostname()).digest("hex").slice(0, 8);

let root: string;
let n = 0;
let srv: TestServer;
beforeAll(async () => {
  srv = await startServer({ "/busybox": bytes(BUSYBOX) });
});
afterAll(() => srv.close());
beforeEach(async () => {
  root = await mkdtemp(join(tmpdir(), "fledge-faults-"));
});
afterEach(() => rm(root, { recursive: true, force: true }));

interface Run {
  code: number | null;
  signal: NodeJS.Signals | null;
  stdout: string;
  stderr: string;
  ms: number;
  timedOut: boolean;
}

/** Runs the CLI; kills it (SIGKILL) after `timeoutMs` so a hang is a failure, not a stuck suite. */
function fledge(args: string[], cwd: string, opts: { env?: NodeJS.ProcessEnv; timeoutMs?: number } = {}): Promise<Run> {
  return new Promise((resolve) => {
    const t0 = performance.now();
    const child = spawn(process.execPath, [BIN, ...args], { cwd, env: { PATH: process.env.PATH, FLEDGE_CACHE_DIR: join(root, "cache"), ...opts.env }, stdio: ["ignore", "pipe", "pipe"] });
    let stdout = "";
    let stderr = "";
    child.stdout.on("data", (d) => (stdout += d));
    child.stderr.on("data", (d) => (stderr += d));
    let timedOut = false;
    const timer = setTimeout(() => {
      timedOut = true;
      child.kill("SIGKILL");
    }, opts.timeoutMs ?? 20_000);
    child.on("close", (code, signal) => {
      clearTimeout(timer);
      resolve({ code, signal, stdout, stderr, ms: performance.now() - t0, timedOut });
    });
  });
}

/** A project in none mode: /init from a mapping, busybox from a local path (no network). */
async function project(opts: { toml?: string; busybox?: string; files?: Record<string, string | Buffer> } = {}): Promise<string> {
  const dir = join(root, `p${++n}`);
  await mkdir(dir, { recursive: true });
  await writeFile(join(dir, "init.sh"), "#!/bin/sh\nexec /bin/sh\n");
  await chmod(join(dir, "init.sh"), 0o755);
  for (const [name, content] of Object.entries(opts.files ?? {})) {
    await mkdir(join(dir, name, ".."), { recursive: true });
    await writeFile(join(dir, name), content);
  }
  await writeFile(join(dir, "fledge.toml"), opts.toml ?? `version = "1"\n[init]\nnone = true\n[source]\nbusybox_url = "${opts.busybox ?? "/bin/busybox"}"\n[mappings]\n"./init.sh" = "/init"\n`);
  await writeFile(join(dir, "manifest.toml"), `name = "demo"\nversion = "1.0.0"\n[workload]\nentrypoint = "/init"\nbase_url = "http://127.0.0.1:8000"\n`);
  return dir;
}

function deadPid(): number {
  return Number(spawnSync(process.execPath, ["-e", "process.stdout.write(String(process.pid))"], { encoding: "utf8" }).stdout);
}

async function inspectJson(dir: string, artifact: string): Promise<{ entries: { path: string; mode: string; size: number; sha256?: string }[] }> {
  const r = await fledge(["inspect", "--json", artifact], dir);
  expect(r.code, r.stderr).toBe(0);
  return JSON.parse(r.stdout);
}

const sha256 = (b: Buffer) => createHash("sha256").update(b).digest("hex");

describe("issue 11: caches never change an artifact", () => {
  it("a download-cache entry changed after a good build is re-verified: --offline --locked fails naming it, online it is fetched again", async () => {
    const dir = await project({ busybox: `${srv.url}/busybox" \nbusybox_sha256 = "${BB_SHA}` });
    const first = await fledge(["build", "-o", "a.cpio.gz"], dir);
    expect(first.code, first.stderr).toBe(0);
    const good = await readFile(join(dir, "a.cpio.gz"));
    const entry = join(root, "cache", "sha256", BB_SHA);
    await chmod(entry, 0o644);
    const evil = Buffer.concat([BUSYBOX.subarray(0, 4096), Buffer.from("\nevil\n")]);
    await writeFile(entry, evil);

    const off = await fledge(["build", "--offline", "--locked", "-o", "b.cpio.gz"], dir);
    expect(off.code).toBe(1);
    expect(off.stderr).toContain(entry);
    expect(off.stderr).toContain(`expected ${BB_SHA}`);
    expect(off.stderr).toContain(`actual   ${sha256(evil)}`);
    expect(existsSync(join(dir, "b.cpio.gz"))).toBe(false);

    await chmod(entry, 0o644).catch(() => {});
    await writeFile(entry, evil);
    const on = await fledge(["build", "-o", "c.cpio.gz"], dir);
    expect(on.code, on.stderr).toBe(0);
    expect((await readFile(join(dir, "c.cpio.gz"))).equals(good)).toBe(true);
    expect((await readFile(entry)).equals(BUSYBOX)).toBe(true);
  });
});

describe("issue 11: stale temps and a safe prune", () => {
  it("fledge cache prune never deletes a user's files in <dir>/tmp, removes temps of dead processes and says so", async () => {
    const cache = join(root, "mine");
    await mkdir(join(cache, "tmp"), { recursive: true });
    await mkdir(join(cache, "segments", "tmp"), { recursive: true });
    await mkdir(join(cache, "segments", "my-notes"), { recursive: true });
    const precious = { "tmp/thesis.tex": "chapter 1", "tmp/1234-0123456789ab": "looks like an old temp", "segments/tmp/draft.txt": "draft", "segments/my-notes/x.seg": "mine", "notes.txt": "notes" };
    for (const [p, c] of Object.entries(precious)) await writeFile(join(cache, p), c);
    const old = new Date(Date.now() - 30 * 86400_000);
    for (const p of Object.keys(precious)) await utimes(join(cache, p), old, old);
    const dead = deadPid();
    await writeFile(join(cache, "tmp", `.fledge-tmp-${dead}-${HOST8}-0123456789ab-busybox`), "partial");
    await writeFile(join(cache, "segments", "tmp", `.fledge-tmp-${dead}-${HOST8}-0123456789ac-${"a".repeat(64)}`), "partial");
    await mkdir(join(cache, "kernels"), { recursive: true });
    await writeFile(join(cache, "kernels", `${"c".repeat(64)}.vmlinux`), "kernel");
    await writeFile(join(cache, "kernels", "my-kernel.vmlinux"), "mine");
    const r = await fledge(["cache", "prune", "--cache-dir", cache], root);
    expect(r.code, r.stderr).toBe(0);
    for (const [p, c] of Object.entries(precious)) expect(await readFile(join(cache, p), "utf8"), p).toBe(c);
    expect(await readdir(join(cache, "tmp"))).toEqual(["1234-0123456789ab", "thesis.tex"]);
    expect(await readdir(join(cache, "segments", "tmp"))).toEqual(["draft.txt"]);
    expect(await readdir(join(cache, "kernels"))).toEqual(["my-kernel.vmlinux"]);
    expect(r.stdout).toMatch(/removed 1 temp file/);
  });

  it("a later build removes temps that killed builds left in the cache", async () => {
    const dir = await project({ busybox: `${srv.url}/busybox` });
    const cache = join(root, "cache");
    await mkdir(join(cache, "tmp"), { recursive: true });
    await mkdir(join(cache, "segments", "tmp"), { recursive: true });
    const dead = deadPid();
    const leftovers = [join(cache, "tmp", `.fledge-tmp-${dead}-${HOST8}-0123456789ab-busybox`), join(cache, "segments", "tmp", `.fledge-tmp-${dead}-${HOST8}-0123456789ac-${"b".repeat(64)}`)];
    for (const f of leftovers) await writeFile(f, randomBytes(1000));
    await writeFile(join(cache, "tmp", "users-file"), "keep");
    const r = await fledge(["build"], dir);
    expect(r.code, r.stderr).toBe(0);
    for (const f of leftovers) expect(existsSync(f), f).toBe(false);
    expect(await readFile(join(cache, "tmp", "users-file"), "utf8")).toBe("keep");
  });
});

describe("issue 11: bounded resources", () => {
  it("a 100 KB fledge.toml with a 50,000-key-deep table header fails validate and build quickly and clearly", async () => {
    const dir = await project();
    await writeFile(join(dir, "fledge.toml"), `version = "1"\n[${Array(50_000).fill("a").join(".")}]\nx = 1\n`);
    for (const cmd of [["validate"], ["build"]]) {
      const r = await fledge(cmd, dir, { timeoutMs: 15_000 });
      expect(r.timedOut, `${cmd[0]} did not end`).toBe(false);
      expect(r.code, r.stderr).toBe(1);
      expect(r.stderr).toMatch(/nested more than \d+ levels deep/);
      expect(r.stderr).not.toMatch(/heap out of memory/);
    }
  });
});

describe("issue 11: special files and signals", () => {
  it("-c and -m naming a FIFO are refused at once instead of hanging", async () => {
    const dir = await project();
    spawnSync("mkfifo", [join(dir, "fifo.toml")]);
    for (const args of [
      ["build", "-c", "fifo.toml"],
      ["build", "-m", "fifo.toml"],
      ["validate", "-c", "fifo.toml"],
    ]) {
      const r = await fledge(args, dir, { timeoutMs: 5_000 });
      expect(r.timedOut, `${args.join(" ")} hung`).toBe(false);
      expect(r.code).toBe(1);
      expect(r.stderr).toContain("fifo.toml");
      expect(r.stderr).toMatch(/FIFO/);
    }
  });

  it("a mapping whose source is a FIFO or a device is refused before anything is read", async () => {
    const dir = await project();
    spawnSync("mkfifo", [join(dir, "pipe")]);
    await writeFile(join(dir, "fledge.toml"), `version = "1"\n[init]\nnone = true\n[source]\nbusybox_url = "/bin/busybox"\n[mappings]\n"./init.sh" = "/init"\n"./pipe" = "/etc/pipe"\n"/dev/zero" = "/etc/zero"\n`);
    const r = await fledge(["build"], dir, { timeoutMs: 5_000 });
    expect(r.timedOut).toBe(false);
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(/pipe is a FIFO/);
    expect(r.stderr).toMatch(/\/dev\/zero is a character device/);
  });

  it.each([
    ["Ctrl-C", "SIGINT"],
    ["SIGHUP (the terminal closed)", "SIGHUP"],
    ["SIGTERM", "SIGTERM"],
  ] as const)("%s stops a build within a second and leaves no temp in the segment cache", async (_what, sig) => {
    const dir = await project({ files: { "big/a.bin": randomBytes(24 << 20), "big/b.bin": randomBytes(24 << 20), "big/c.bin": randomBytes(24 << 20) } });
    await writeFile(join(dir, "fledge.toml"), `version = "1"\n[init]\nnone = true\n[source]\nbusybox_url = "/bin/busybox"\n[mappings]\n"./init.sh" = "/init"\n"./big" = "/big"\n`);
    const cache = join(root, "cache");
    const child = spawn(process.execPath, [BIN, "build"], { cwd: dir, env: { PATH: process.env.PATH, FLEDGE_CACHE_DIR: cache }, stdio: "ignore" });
    const exited = new Promise<number | null>((r) => child.on("close", (c) => r(c)));
    const segTmp = join(cache, "segments", "tmp");
    // keep the listing the loop saw: a temp seen here may be renamed into the cache a moment later
    let seen: string[] = [];
    for (let i = 0; i < 2000 && seen.length === 0 && child.exitCode === null; i++) {
      seen = await readdir(segTmp).catch(() => []);
      if (seen.length === 0) await new Promise((r) => setTimeout(r, 5));
    }
    expect(seen.length, "the build wrote no segment temp before it ended").toBeGreaterThan(0);
    const t0 = performance.now();
    child.kill(sig);
    const timer = setTimeout(() => child.kill("SIGKILL"), 5_000);
    const code = await exited;
    clearTimeout(timer);
    expect(performance.now() - t0).toBeLessThan(1_000);
    expect(code).toBe(130);
    // a compression worker may create one more temp before the process is gone: the janitor the
    // handler starts removes it right after the exit
    for (let i = 0; i < 60 && (await readdir(segTmp)).length; i++) await new Promise((r) => setTimeout(r, 50));
    expect(await readdir(segTmp)).toEqual([]);
    expect(await readdir(join(cache, "tmp")).catch(() => [])).toEqual([]);
    expect(existsSync(join(dir, "plugin.cpio.gz"))).toBe(false);
  });
});

describe("issue 11: modes, pseudo-files, names", () => {
  it("modes are normalised as git does: 0777 and umask differences never reach the artifact", async () => {
    const files = { "app/run": "#!/bin/sh\necho hi\n", "app/data.txt": "data\n", "app/tool": "#!/bin/sh\n" };
    const a = await project({ files });
    const b = await project({ files });
    for (const d of [a, b]) await writeFile(join(d, "fledge.toml"), `version = "1"\n[init]\nnone = true\n[source]\nbusybox_url = "/bin/busybox"\n[mappings]\n"./init.sh" = "/init"\n"./app" = "/srv/app"\n`);
    await chmod(join(a, "app/run"), 0o777);
    await chmod(join(a, "app/data.txt"), 0o666);
    await chmod(join(a, "app/tool"), 0o4755);
    await chmod(join(b, "app/run"), 0o755);
    await chmod(join(b, "app/data.txt"), 0o644);
    await chmod(join(b, "app/tool"), 0o700);
    for (const d of [a, b]) expect((await fledge(["build"], d)).code).toBe(0);
    const { entries } = await inspectJson(a, "plugin.cpio.gz");
    const mode = (p: string) => entries.find((e) => e.path === p)?.mode;
    expect([mode("srv/app/run"), mode("srv/app/data.txt"), mode("srv/app/tool")]).toEqual(["0755", "0644", "0755"]);
    expect((await readFile(join(a, "plugin.cpio.gz"))).equals(await readFile(join(b, "plugin.cpio.gz")))).toBe(true);
  });

  it("a mapped /proc/cpuinfo (size 0 in stat) gets its content, not an empty file", async () => {
    const dir = await project();
    await writeFile(join(dir, "fledge.toml"), `version = "1"\n[init]\nnone = true\n[source]\nbusybox_url = "/bin/busybox"\n[mappings]\n"./init.sh" = "/init"\n"/proc/cpuinfo" = "/etc/cpuinfo"\n`);
    const r = await fledge(["build"], dir);
    expect(r.code, r.stderr).toBe(0);
    const e = (await inspectJson(dir, "plugin.cpio.gz")).entries.find((x) => x.path === "etc/cpuinfo")!;
    expect(e.size).toBeGreaterThan(0);
  });

  it("a non-UTF-8 file name in a mapped directory is refused with the real reason, not ENOENT", async () => {
    const dir = await project({ files: { "www/index.html": "hi" } });
    await writeFile(Buffer.concat([Buffer.from(join(dir, "www") + "/caf"), Buffer.from([0xe9]), Buffer.from(".txt")]), "latin-1 name");
    await writeFile(join(dir, "fledge.toml"), `version = "1"\n[init]\nnone = true\n[source]\nbusybox_url = "/bin/busybox"\n[mappings]\n"./init.sh" = "/init"\n"./www" = "/srv/www"\n`);
    const r = await fledge(["build"], dir);
    expect(r.code).toBe(1);
    expect(r.stderr).not.toMatch(/ENOENT|no such file/i);
    expect(r.stderr).toContain("not valid UTF-8");
    expect(r.stderr).toContain("caf\\xe9.txt");
  });

  it("a UTF-8 BOM at the start of fledge.toml and manifest.toml is accepted", async () => {
    const dir = await project();
    for (const f of ["fledge.toml", "manifest.toml"]) await writeFile(join(dir, f), Buffer.concat([Buffer.from([0xef, 0xbb, 0xbf]), await readFile(join(dir, f))]));
    const v = await fledge(["validate"], dir);
    expect(v.code, v.stderr).toBe(0);
    const b = await fledge(["build"], dir);
    expect(b.code, b.stderr).toBe(0);
  });

  it("an image path component over NAME_MAX (255 bytes) is refused clearly", async () => {
    const dir = await project();
    await writeFile(
      join(dir, "fledge.toml"),
      `version = "1"\n[init]\nnone = true\n[source]\nbusybox_url = "/bin/busybox"\n[mappings]\n"./init.sh" = "/init"\n"./init.sh" = "/etc/${"x".repeat(256)}"\n`.replace(
        '"./init.sh" = "/etc',
        '"./manifest.toml" = "/etc',
      ),
    );
    const r = await fledge(["build"], dir);
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(/256 bytes long, more than the 255 the kernel allows \(NAME_MAX\)/);
    expect(existsSync(join(dir, "plugin.cpio.gz"))).toBe(false);
  });
});

/** newc bytes for entries given as [name, mode, data]. */
function newc(entries: [string | Buffer, number, Buffer?][]): Buffer {
  const parts: Buffer[] = [];
  const pad = (n: number) => Buffer.alloc((4 - (n % 4)) % 4);
  let ino = 1;
  for (const [name, mode, data = Buffer.alloc(0)] of [...entries, ["TRAILER!!!", 0] as [string, number]]) {
    const nb = Buffer.concat([Buffer.isBuffer(name) ? name : Buffer.from(name), Buffer.from([0])]);
    const f = [ino++, mode, 0, 0, 1, 0, data.length, 0, 0, 0, 0, nb.length, 0].map((v) => v.toString(16).padStart(8, "0")).join("");
    const head = Buffer.concat([Buffer.from("070701" + f), nb]);
    parts.push(head, pad(head.length), data, pad(data.length));
  }
  return Buffer.concat(parts);
}

describe("issue 11: fledge inspect", () => {
  it("escapes newlines and ESC sequences in names in its text output; --json stays exact", async () => {
    const evil = "etc/a\n-rwsrwsrwx   1 0        0               0 Jan  1  2024 etc/forged\x1b]0;pwned\x07\x1b[2J";
    const file = join(root, "evil.cpio");
    await writeFile(
      file,
      newc([
        ["etc", 0o40755],
        [evil, 0o100644, Buffer.from("x")],
      ]),
    );
    const r = await fledge(["inspect", file], root);
    expect(r.code, r.stderr).toBe(0);
    expect(r.stdout.split("\n").filter(Boolean)).toHaveLength(2);
    expect(r.stdout).not.toContain("\x1b");
    expect(r.stdout).toContain("etc/a\\n-rwsrwsrwx");
    const j = await fledge(["inspect", "--json", file], root);
    expect(JSON.parse(j.stdout).entries[1].path).toBe(evil);
  });

  it("fledge inspect /dev/zero ends at once with a clear message", async () => {
    const r = await fledge(["inspect", "/dev/zero"], root, { timeoutMs: 10_000 });
    expect(r.timedOut).toBe(false);
    expect(r.code).toBe(1);
    expect(r.stderr).toContain("/dev/zero is a character device");
  });

  it("a 1 MB gzip of a 1 GiB entry is listed in bounded memory; the decompressed size is capped with a clear error", async () => {
    // one entry of 1 GiB of zeros in one gzip member (~1 MB), streamed so the test itself stays small
    const size = 2 ** 30;
    const name = Buffer.from("big\0");
    const f = [1, 0o100644, 0, 0, 1, 0, size, 0, 0, 0, 0, name.length, 0].map((v) => v.toString(16).padStart(8, "0")).join("");
    const head = Buffer.concat([Buffer.from("070701" + f), name]);
    const file = join(root, "bomb.cpio.gz");
    const gz = createGzip({ level: 9 });
    const done = pipeline(gz, createWriteStream(file));
    const zero = Buffer.alloc(16 << 20);
    const write = async (b: Buffer) => {
      if (!gz.write(b)) await new Promise((r) => gz.once("drain", r));
    };
    await write(Buffer.concat([head, Buffer.alloc((4 - (head.length % 4)) % 4)]));
    for (let i = 0; i < size / zero.length; i++) await write(zero);
    await write(newc([]));
    gz.end();
    await done;
    expect((await stat(file)).size).toBeLessThan(2 << 20);
    const timed = (args: string[]) => {
      const t0 = performance.now();
      const r = spawnSync("/usr/bin/time", ["-f", "%M", process.execPath, BIN, ...args], { encoding: "utf8", timeout: 60_000 });
      return { ...r, ms: performance.now() - t0, maxRssKiB: Number(r.stderr.trim().split("\n").pop()) };
    };
    const r = timed(["inspect", file]);
    expect(r.status, r.stderr).toBe(0);
    expect(r.stdout).toMatch(/ 1073741824 .* big\n/);
    expect(r.maxRssKiB).toBeLessThan(400 * 1024);
    const capped = timed(["inspect", "--max-size", "100M", file]);
    expect(capped.status).toBe(1);
    expect(capped.stderr).toMatch(/decompresses to more than 100 MiB/);
  });
});
