import { createHash } from "node:crypto";
import { chmodSync, mkdirSync, mkdtempSync, readFileSync, readdirSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { spawn } from "node:child_process";
import { fileURLToPath } from "node:url";
import { startRawServer, type RawServer } from "@fledge/fetch/testing";
import { afterAll, beforeAll, describe, expect, it } from "vitest";

/**
 * The report of issue 9: builds whose busybox comes from a server that closes the connection
 * right after a Content-Length body died with undici's uncatchable assert. The built CLI, in
 * processes of its own, as a user runs it.
 */
const BIN = fileURLToPath(new URL("../bin/fledge.cjs", import.meta.url));
const BUSYBOX = readFileSync("/bin/busybox");
const SHA = createHash("sha256").update(BUSYBOX).digest("hex");

let root: string;
let srv: RawServer;
beforeAll(async () => {
  root = mkdtempSync(join(tmpdir(), "fledge-cli-downloads-"));
  srv = await startRawServer(BUSYBOX, { dribbleMs: 50 });
});
afterAll(async () => {
  await srv.close();
  rmSync(root, { recursive: true, force: true });
});

function project(name: string, busyboxUrl: string): string {
  const dir = join(root, name);
  mkdirSync(dir, { recursive: true });
  writeFileSync(join(dir, "init.sh"), "#!/bin/sh\nexec /bin/sh\n");
  chmodSync(join(dir, "init.sh"), 0o755);
  writeFileSync(join(dir, "fledge.toml"), `version = "1"\n[init]\nnone = true\n[source]\nbusybox_url = "${busyboxUrl}"\n[mappings]\n"./init.sh" = "/init"\n`);
  writeFileSync(join(dir, "manifest.toml"), `name = "demo"\nversion = "1.0.0"\n[workload]\nentrypoint = "/init"\nbase_url = "http://127.0.0.1:8000"\n`);
  return dir;
}

function build(dir: string, env: NodeJS.ProcessEnv = {}) {
  return new Promise<{ code: number | null; stdout: string; stderr: string }>((resolve) => {
    const child = spawn(process.execPath, [BIN, "build", "--json"], { cwd: dir, env: { PATH: process.env.PATH, NO_COLOR: "1", FLEDGE_CACHE_DIR: join(dir, ".cache"), ...env } });
    let stdout = "";
    let stderr = "";
    child.stdout.on("data", (d) => (stdout += d));
    child.stderr.on("data", (d) => (stderr += d));
    child.on("close", (code) => resolve({ code, stdout, stderr }));
  });
}

describe("fledge build against misbehaving servers", () => {
  it("12 builds from a server that closes right after the Content-Length body (and 4 EOF-delimited): all succeed", async () => {
    for (const [i, kind] of [...Array(12).fill("close-after-body"), ...Array(4).fill("eof-delimited")].entries()) {
      const dir = project(`b${i}`, `${srv.url}/${kind}?build=${i}`);
      const r = await build(dir);
      expect(r.code, r.stderr).toBe(0);
      expect(JSON.parse(r.stdout).ok).toBe(true);
      expect(readFileSync(join(dir, "fledge.lock"), "utf8")).toContain(SHA);
    }
  }, 120_000);

  it("a truncated body is a build error naming the URL, exit 1, no output", async () => {
    const url = `${srv.url}/truncate`;
    const dir = project("truncated", url);
    const r = await build(dir, { FLEDGE_DOWNLOAD_IDLE_TIMEOUT: "10s" });
    expect(r.code, r.stderr).toBe(1);
    const err = JSON.parse(r.stdout).error;
    expect(err.message).toContain(`cannot download ${url}: the connection closed after ${BUSYBOX.length >> 1} of ${BUSYBOX.length} bytes (gave up after 5 attempts)`);
    expect(readdirSync(dir).filter((f) => f.endsWith(".cpio.gz") || f.startsWith(".fledge-tmp"))).toEqual([]);
  }, 60_000);

  it("a server that dribbles a byte at a time hits the total deadline set by FLEDGE_DOWNLOAD_TIMEOUT, and the message says how long", async () => {
    const url = `${srv.url}/dribble`;
    const dir = project("dribble", url);
    const t0 = Date.now();
    const r = await build(dir, { FLEDGE_DOWNLOAD_TIMEOUT: "1.5s" });
    expect(Date.now() - t0).toBeLessThan(10_000);
    expect(r.code, r.stderr).toBe(1);
    const err = JSON.parse(r.stdout).error;
    expect(err.message).toMatch(new RegExp(`cannot download ${url.replace(/[.?]/g, "\\$&")}: not finished within 1\\.5 s, the limit for one download \\(\\d+ of ${BUSYBOX.length} bytes received\\)`));
    expect(err.hint).toContain("FLEDGE_DOWNLOAD_TIMEOUT");
  }, 30_000);

  it("a malformed FLEDGE_DOWNLOAD_TIMEOUT is named", async () => {
    const dir = project("badenv", `${srv.url}/close-after-body`);
    const r = await build(dir, { FLEDGE_DOWNLOAD_TIMEOUT: "soon" });
    expect(r.code, r.stderr).toBe(1);
    expect(JSON.parse(r.stdout).error.message).toContain("FLEDGE_DOWNLOAD_TIMEOUT=soon is not a duration");
  });
});
