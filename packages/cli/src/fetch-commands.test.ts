import { createHash } from "node:crypto";
import { existsSync } from "node:fs";
import { mkdir, mkdtemp, readdir, readFile, rm, utimes, writeFile, chmod } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { bytes, checksumLine, startFakeGitHub, startServer, type FakeGitHub, type TestServer } from "@fledge/fetch/testing";
import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, it } from "vitest";
import { main } from "./index.js";
import { sink } from "./test-sink.js";

const BUSYBOX = await readFile("/bin/busybox");
const BB_SHA = createHash("sha256").update(BUSYBOX).digest("hex");
const K1 = Buffer.from("kestrel one\n");
const K2 = Buffer.from("kestrel two\n");

let srv: TestServer;
let gh: FakeGitHub;
let root: string;
let n = 0;
beforeAll(async () => {
  srv = await startServer({ "/busybox": bytes(BUSYBOX) });
  gh = await startFakeGitHub({
    latest: "v1.0.0",
    releases: [
      { tag: "v1.0.0", assets: { kestrel: K1, "checksums.txt": checksumLine(K1, "kestrel") } },
      { tag: "v1.1.0", assets: { kestrel: K2, "checksums.txt": checksumLine(K2, "kestrel") } },
    ],
  });
});
afterAll(async () => {
  await srv.close();
  await gh.close();
});
beforeEach(async () => {
  root = await mkdtemp(join(tmpdir(), "fledge-cli-fetch-"));
  srv.log.length = 0;
  gh.log.length = 0;
});
afterEach(() => rm(root, { recursive: true, force: true }));

async function fledge(args: string[], cwd: string, env: NodeJS.ProcessEnv = {}, tty = false) {
  const out = sink({ columns: 100 });
  const err = sink({ tty, columns: 100 });
  const code = await main(args, { stdout: out.stream, stderr: err.stream, env: { FLEDGE_CACHE_DIR: join(root, "cache"), FLEDGE_GITHUB_API: gh.api, ...env }, cwd });
  return { code, stdout: out.text(), stderr: err.text() };
}
async function project(busyboxUrl: string, extra = ""): Promise<string> {
  const dir = join(root, `p${++n}`);
  await mkdir(dir, { recursive: true });
  await writeFile(join(dir, "init.sh"), "#!/bin/sh\nexec /bin/sh\n");
  await chmod(join(dir, "init.sh"), 0o755);
  await writeFile(join(dir, "fledge.toml"), `version = "1"\n[init]\nnone = true\n[source]\nbusybox_url = "${busyboxUrl}"\n${extra}\n[mappings]\n"./init.sh" = "/init"\n`);
  await writeFile(join(dir, "manifest.toml"), `name = "demo"\nversion = "1.0.0"\n[workload]\nentrypoint = "/init"\nbase_url = "http://127.0.0.1:8000"\n`);
  return dir;
}

describe("fledge build with downloads", () => {
  it("builds twice with one request, then --offline with the server gone; a cold cache lists what is missing", async () => {
    const tmp = await startServer({ "/busybox": bytes(BUSYBOX) });
    const dir = await project(`${tmp.url}/busybox`);
    expect((await fledge(["build"], dir)).code).toBe(0);
    expect((await fledge(["build", "-o", "b.cpio.gz"], dir)).code).toBe(0);
    expect(tmp.log).toEqual(["/busybox"]);
    await tmp.close();
    const off = await fledge(["build", "--offline", "-o", "c.cpio.gz"], dir);
    expect(off.code, off.stderr).toBe(0);
    const cold = await fledge(["build", "--offline", "-o", "d.cpio.gz"], dir, { FLEDGE_CACHE_DIR: join(root, "cold") });
    expect(cold.code).toBe(1);
    expect(cold.stderr).toContain(`error: busybox: ${tmp.url}/busybox (sha256:${BB_SHA}) is not in the cache and the network is off (--offline)`);
    expect(cold.stderr).toContain("hint: run once with the network, or seed the cache: fledge cache add <file>");
    expect(existsSync(join(dir, "d.cpio.gz"))).toBe(false);
  });

  it("FLEDGE_MIRRORS: a busybox.net config builds against the local server; -v shows the rewritten URL", async () => {
    const url = "https://busybox.net/downloads/binaries/1.35.0-x86_64-linux-musl/busybox";
    const dir = await project(url, `busybox_sha256 = "${BB_SHA}"`);
    const r = await fledge(["build", "-v"], dir, { FLEDGE_MIRRORS: `https://busybox.net/=${srv.url}/mirror/` });
    // the mirror serves nothing at that path: the 404 names the rewritten URL
    expect(r.code).toBe(1);
    expect(r.stderr).toContain(`debug: busybox: ${url} → ${srv.url}/mirror/downloads/binaries/1.35.0-x86_64-linux-musl/busybox`);
    expect(r.stderr).toContain(`error: busybox: ${srv.url}/mirror/downloads/binaries/1.35.0-x86_64-linux-musl/busybox answered HTTP 404 Not Found`);
    srv.route("/mirror/downloads/binaries/1.35.0-x86_64-linux-musl/busybox", bytes(BUSYBOX));
    const ok = await fledge(["build", "-v"], dir, { FLEDGE_MIRRORS: `https://busybox.net/=${srv.url}/mirror/` });
    expect(ok.code, ok.stderr).toBe(0);
  });

  it("--locked fails on a missing lock, passes once the lock exists", async () => {
    const dir = await project(`${srv.url}/busybox`);
    const r = await fledge(["build", "--locked"], dir);
    expect(r.code).toBe(1);
    expect(r.stderr).toContain(`error: --locked: ${join(dir, "fledge.lock")} is missing`);
    expect(r.stderr).toContain('hint: run "fledge update"');
    expect((await fledge(["update"], dir)).stdout).toContain(`pinned busybox: ${srv.url}/busybox sha256:${BB_SHA.slice(0, 12)}…\nwrote `);
    expect((await fledge(["build", "--locked"], dir)).code).toBe(0);
  });

  it("draws a progress line with rate on a TTY and nothing otherwise", async () => {
    const dir = await project(`${srv.url}/busybox`);
    const tty = await fledge(["build", "-o", "t.cpio.gz"], dir, { FLEDGE_CACHE_DIR: join(root, "c1"), NO_COLOR: "1" }, true);
    // biome-ignore lint/suspicious/noControlCharactersInRegex: the terminal's erase-line sequence is what is checked
    expect(tty.stderr).toMatch(/\r\x1b\[2Kfetch busybox \[#*-*\] [\d.]+ (KiB|MiB) \/ 1\.9 MiB \(\d+%\) [\d.]+ (B|KiB|MiB)\/s/);
    // biome-ignore lint/suspicious/noControlCharactersInRegex: the terminal's erase-line sequence is what is checked
    expect(tty.stderr).toMatch(/\(100%\) [^\r]*\r\x1b\[2K/); // the line is cleared when the download ends
    const plain = await fledge(["build", "-o", "p.cpio.gz"], dir, { FLEDGE_CACHE_DIR: join(root, "c2") }, false);
    expect(plain.stderr).toBe(`warning: busybox from ${srv.url}/busybox has no busybox_sha256: its content is not verified (fledge.lock pins what was downloaded)\n`);
  });
});

describe("interrupting a download", () => {
  it("Ctrl-C leaves no temp file in the cache and no artifact", async () => {
    const { spawn } = await import("node:child_process");
    const { fileURLToPath } = await import("node:url");
    srv.route("/stalls", (_req, res) => {
      res.setHeader("content-length", BUSYBOX.length);
      res.write(BUSYBOX.subarray(0, 100_000)); // and never the rest
    });
    const dir = await project(`${srv.url}/stalls`);
    const cache = join(root, "sig-cache");
    const child = spawn(process.execPath, [fileURLToPath(new URL("../dist/bin.js", import.meta.url)), "build"], { cwd: dir, env: { PATH: process.env.PATH, FLEDGE_CACHE_DIR: cache } });
    let stderr = "";
    child.stderr.on("data", (d) => (stderr += d));
    const exited = new Promise<number | null>((r) => child.on("close", r));
    for (let i = 0; i < 100 && (await readdir(join(cache, "tmp")).catch(() => [])).length === 0; i++) await new Promise((r) => setTimeout(r, 50));
    expect((await readdir(join(cache, "tmp"))).length).toBe(1);
    child.kill("SIGINT");
    expect(await exited).toBe(130);
    expect(stderr).toContain("interrupted: nothing was written");
    expect(await readdir(join(cache, "tmp"))).toEqual([]);
    expect(existsSync(join(dir, "plugin.cpio.gz"))).toBe(false);
  });
});

describe("fledge update", () => {
  it("moves a release pinned by fledge.lock to the newer tag", async () => {
    const dir = join(root, "agent");
    await mkdir(dir);
    await writeFile(join(dir, "fledge.toml"), `version = "1"\n[agent]\nsource_strategy = "release"\nversion = "latest"\n[source]\nbusybox_url = "${srv.url}/busybox"\n`);
    gh.latest = "v1.0.0";
    const a = await fledge(["update"], dir);
    expect(a.code, a.stderr).toBe(0);
    expect(a.stdout).toContain("pinned agent: v1.0.0");
    expect(await readFile(join(dir, "fledge.lock"), "utf8")).toContain('tag = "v1.0.0"');
    const again = await fledge(["update"], dir);
    expect(again.stdout).toBe("fledge.lock is up to date\n");
    gh.latest = "v1.1.0";
    const b = await fledge(["update", "--json"], dir);
    const j = JSON.parse(b.stdout);
    expect(j.changes).toEqual([{ key: "agent", from: expect.objectContaining({ tag: "v1.0.0" }), to: expect.objectContaining({ tag: "v1.1.0" }) }]);
    expect(await readFile(join(dir, "fledge.lock"), "utf8")).toContain('tag = "v1.1.0"');
  });

  it("a rate-limited API says so and suggests GITHUB_TOKEN", async () => {
    const dir = join(root, "rl");
    await mkdir(dir);
    await writeFile(join(dir, "fledge.toml"), `version = "1"\n[source]\nbusybox_url = "${srv.url}/busybox"\n`);
    gh.rateLimited = true;
    try {
      const r = await fledge(["update"], dir);
      expect(r.code).toBe(1);
      expect(r.stderr).toContain("rate limit reached");
      expect(r.stderr).toContain("hint: set GITHUB_TOKEN");
      expect(existsSync(join(dir, "fledge.lock"))).toBe(false);
    } finally {
      gh.rateLimited = false;
    }
  });
});

describe("fledge cache", () => {
  it("add seeds an air-gapped cache so an --offline build finds busybox by its URL", async () => {
    const dir = await project("https://busybox.net/downloads/busybox");
    const add = await fledge(["cache", "add", "/bin/busybox", "--url", "https://busybox.net/downloads/busybox"], dir);
    expect(add.code, add.stderr).toBe(0);
    expect(add.stdout).toBe(`added sha256:${BB_SHA} (1.9 MiB) for https://busybox.net/downloads/busybox\n`);
    const r = await fledge(["build", "--offline"], dir);
    expect(r.code, r.stderr).toBe(0);
    const ls = await fledge(["cache", "ls"], dir);
    expect(ls.stdout).toContain(`${BB_SHA.slice(0, 16)}     1.9 MiB`);
    expect(ls.stdout).toContain("https://busybox.net/downloads/busybox");
  });

  it("prune --older-than removes only what was not used lately, downloads and compressed segments; bad ages are usage errors", async () => {
    const dir = await project("file:///bin/busybox");
    expect((await fledge(["build"], dir)).code).toBe(0); // leaves compressed segments in the cache
    await writeFile(join(dir, "old"), "old");
    await fledge(["cache", "add", "old"], dir);
    await fledge(["cache", "add", "/bin/busybox"], dir);
    const past = new Date(Date.now() - 10 * 86400_000);
    const oldSha = createHash("sha256").update("old").digest("hex");
    await utimes(join(root, "cache", "sha256", oldSha), past, past);
    const p = await fledge(["cache", "prune", "--older-than", "7d"], dir);
    expect(p.stdout).toMatch(/^removed 1 file \(3 B\), kept 1; removed 0 compressed segments \(0 B\), kept [1-9]\d*\n$/);
    expect(await readdir(join(root, "cache", "sha256"))).toEqual([BB_SHA]);
    expect((await fledge(["cache", "prune", "--older-than", "soon"], dir)).code).toBe(2);
    expect((await fledge(["cache", "prune"], dir)).stdout).toMatch(/^removed 1 file \(1\.9 MiB\), kept 0; removed [1-9]\d* compressed segments? \(.+\), kept 0\n$/);
    expect((await fledge(["cache", "ls"], dir)).stdout).toBe(`${join(root, "cache")}: empty\n`);
    expect((await fledge(["cache", "frobnicate"], dir)).code).toBe(2);
    const bare = await fledge(["cache"], dir);
    expect(bare.code).toBe(2);
    expect(bare.stderr).toContain("Usage:\n  fledge cache ls");
    expect(bare.stdout).toBe("");
  });
});
