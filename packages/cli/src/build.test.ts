import { spawn, spawnSync } from "node:child_process";
import { chmodSync, cpSync, existsSync, mkdirSync, mkdtempSync, readFileSync, readdirSync, rmSync, utimesSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { gunzipSync } from "node:zlib";
import { createHash } from "node:crypto";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { main } from "./index.js";

const BIN = fileURLToPath(new URL("../dist/bin.js", import.meta.url));
const INSTALL_HINT = "run scripts/install-e2e-deps.sh";

let root: string;
beforeAll(() => {
  root = mkdtempSync(join(tmpdir(), "fledge-cli-"));
  chmodSync(root, 0o777);
});
afterAll(() => rmSync(root, { recursive: true, force: true }));

/** A small project: a fake busybox payload, a none-mode init script, a data dir. */
function project(name: string, opts: { fledge?: string; busyboxSha?: string } = {}): string {
  const dir = join(root, name);
  mkdirSync(join(dir, "www", "css"), { recursive: true });
  writeFileSync(join(dir, "busybox"), Buffer.alloc(4096, 7));
  writeFileSync(join(dir, "init.sh"), "#!/bin/sh\necho hi\n");
  chmodSync(join(dir, "init.sh"), 0o755);
  writeFileSync(join(dir, "www", "index.html"), "<h1>hi</h1>\n");
  writeFileSync(join(dir, "www", "css", "site.css"), "body{}\n");
  writeFileSync(
    join(dir, "fledge.toml"),
    opts.fledge ??
      `version = "1"
strategy = "initramfs"

[init]
none = true

[source]
busybox_url = "./busybox"
${opts.busyboxSha ? `busybox_sha256 = "${opts.busyboxSha}"` : ""}

[mappings]
"./init.sh" = "/init"
"./www" = "/srv/www"
`,
  );
  writeFileSync(join(dir, "manifest.toml"), `name = "demo"\nversion = "1.2.3"\n[workload]\nentrypoint = "/init"\nbase_url = "http://127.0.0.1:8000"\n`);
  return dir;
}

function sink() {
  let text = "";
  return { stream: { write: (s: string) => ((text += s), true), isTTY: false } as any, text: () => text };
}

async function run(args: string[], cwd: string, env: NodeJS.ProcessEnv = {}) {
  const out = sink();
  const err = sink();
  const code = await main(args, { stdout: out.stream, stderr: err.stream, env: { FLEDGE_CACHE_DIR: join(root, "cache"), ...env }, cwd });
  return { code, stdout: out.text(), stderr: err.text() };
}

/** Runs the built CLI as a separate process (optionally as another user, with a umask). */
function runBin(args: string[], cwd: string, opts: { uid?: number; gid?: number; umask?: string; env?: NodeJS.ProcessEnv } = {}) {
  return new Promise<{ code: number; stdout: string; stderr: string }>((resolve, reject) => {
    const cmd = `umask ${opts.umask ?? "022"}; exec "${process.execPath}" "${BIN}" "$@"`;
    const child = spawn("/bin/sh", ["-c", cmd, "fledge", ...args], {
      cwd,
      uid: opts.uid,
      gid: opts.gid,
      env: { PATH: process.env.PATH, NO_COLOR: "1", FLEDGE_CACHE_DIR: join(root, "cache-bin"), ...opts.env },
    });
    let stdout = "";
    let stderr = "";
    child.stdout.on("data", (d) => (stdout += d));
    child.stderr.on("data", (d) => (stderr += d));
    child.on("error", reject);
    child.on("close", (code) => resolve({ code: code ?? -1, stdout, stderr }));
  });
}

const sha = (f: string) => createHash("sha256").update(readFileSync(f)).digest("hex");

describe("fledge build", () => {
  it("writes the artifact and a manifest.json next to it", async () => {
    const dir = project("basic");
    const r = await run(["build", "--json"], dir);
    expect(r.stderr).toBe(`warning: busybox from ${join(dir, "busybox")} has no busybox_sha256: its content is not verified\n`);
    expect(r.code).toBe(0);
    const res = JSON.parse(r.stdout);
    expect(res.ok).toBe(true);
    expect(res.artifact.path).toBe(join(dir, "plugin.cpio.gz"));
    const manifest = JSON.parse(readFileSync(join(dir, "demo.manifest.json"), "utf8"));
    expect(manifest.initramfs).toEqual({ url: join(dir, "plugin.cpio.gz"), checksum: `sha256:${sha(join(dir, "plugin.cpio.gz"))}` });
    expect(manifest.workload.entrypoint).toEqual(["/init"]);
    expect(manifest.enabled).toBe(true);
    // the gzip header: no name, mtime 0, so the kernel's gunzip takes it
    const gz = readFileSync(join(dir, "plugin.cpio.gz"));
    expect([...gz.subarray(0, 4)]).toEqual([0x1f, 0x8b, 8, 0]);
    expect(gz.readUInt32LE(4)).toBe(0);
  });

  it("is byte-identical from two copies of the inputs with different mtimes, umask, order and paths", async () => {
    const a = project("repro-a");
    // the second copy: created in another order, other mtimes, other modes where the rules normalise them
    const b = join(root, "elsewhere", "repro-b");
    mkdirSync(join(b, "www", "css"), { recursive: true });
    writeFileSync(join(b, "www", "css", "site.css"), "body{}\n", { mode: 0o600 });
    writeFileSync(join(b, "www", "index.html"), "<h1>hi</h1>\n", { mode: 0o600 });
    for (const f of ["init.sh", "busybox", "fledge.toml", "manifest.toml"]) cpSync(join(a, f), join(b, f));
    chmodSync(join(b, "init.sh"), 0o755);
    const old = new Date("2001-02-03T04:05:06Z");
    for (const f of ["init.sh", "busybox", "www/index.html", "www/css/site.css", "www", "www/css"]) utimesSync(join(b, f), old, old);

    const ra = await runBin(["build", "-o", join(a, "a.cpio.gz")], a, { umask: "022", env: { TZ: "UTC", LANG: "C" } });
    const rb = await runBin(["build", "-o", join(b, "b.cpio.gz")], b, { umask: "077", env: { TZ: "Asia/Tokyo", LANG: "de_DE.UTF-8" } });
    expect(ra.code, ra.stderr).toBe(0);
    expect(rb.code, rb.stderr).toBe(0);
    expect(sha(join(a, "a.cpio.gz"))).toBe(sha(join(b, "b.cpio.gz")));
  });

  it("a rebuild reads no unchanged mapped file (stat cache); --verify reads and hashes every one, and says so in --help", async () => {
    const dir = project("statcache");
    // Files changed less than 2 s before a build are hashed again next time (the racy rule): let them settle.
    await new Promise((r) => setTimeout(r, 2100));
    const env = { FLEDGE_CACHE_DIR: join(root, "cache-stat") };
    const first = await run(["build", "-v"], dir, env);
    expect(first.code, first.stderr).toBe(0);
    expect(first.stderr).toMatch(/0 files unchanged by the stat cache, [1-9]\d* read and hashed/);
    const artifact = sha(join(dir, "plugin.cpio.gz"));
    const warm = await run(["build", "-v"], dir, env);
    expect(warm.stderr).toMatch(/[1-9]\d* files unchanged by the stat cache, 0 read and hashed/);
    const verify = await run(["build", "-v", "--verify"], dir, env);
    expect(verify.code, verify.stderr).toBe(0);
    expect(verify.stderr).toMatch(/0 files unchanged by the stat cache, [1-9]\d* read and hashed/);
    expect(sha(join(dir, "plugin.cpio.gz"))).toBe(artifact);
    expect((await run(["build", "--help"], dir)).stdout).toMatch(/--verify +read and hash every mapped file/);
  });

  it("honours SOURCE_DATE_EPOCH, and refuses a bad one", async () => {
    const dir = project("epoch");
    expect((await run(["build", "-o", "default.cpio.gz"], dir)).code).toBe(0);
    expect((await run(["build", "-o", "epoch2.cpio.gz"], dir, { SOURCE_DATE_EPOCH: "1234567890" })).code).toBe(0);
    const text = gunzipSync(readFileSync(join(dir, "epoch2.cpio.gz"))).toString("latin1");
    expect(text.slice(46, 54)).toBe((1234567890).toString(16).padStart(8, "0"));
    expect(sha(join(dir, "default.cpio.gz"))).not.toBe(sha(join(dir, "epoch2.cpio.gz")));
    const bad = await run(["build", "-o", "bad.cpio.gz"], dir, { SOURCE_DATE_EPOCH: "yesterday" });
    expect(bad.code).toBe(1);
    expect(bad.stderr).toContain("SOURCE_DATE_EPOCH=yesterday is not a whole number");
    expect(existsSync(join(dir, "bad.cpio.gz"))).toBe(false);
  });

  it("GNU cpio and bsdtar list every entry, /dev/console c 5,1 root — built by a non-root user", async () => {
    for (const tool of ["cpio", "bsdtar"]) {
      if (spawnSync(tool, ["--version"]).error) throw new Error(`${tool} is not installed: ${INSTALL_HINT}`);
    }
    const dir = project("listing");
    chmodSync(dir, 0o777);
    const isRoot = process.getuid?.() === 0;
    // as root, build as "nobody" to prove no privilege is needed; otherwise we already are a user
    const r = await runBin(["build", "--json", "-o", join(dir, "out.cpio.gz")], dir, {
      ...(isRoot ? { uid: 65534, gid: 65534 } : {}),
      env: { FLEDGE_CACHE_DIR: join(dir, ".cache") },
    });
    expect(r.code, r.stderr).toBe(0);
    const entries: number = JSON.parse(r.stdout).artifact.entries;
    const raw = join(dir, "out.cpio");
    writeFileSync(raw, gunzipSync(readFileSync(join(dir, "out.cpio.gz"))));

    const cpio = spawnSync("cpio", ["-itv", "--quiet", "-F", raw], { encoding: "utf8" });
    expect(cpio.status, cpio.stderr).toBe(0);
    const cpioLines = cpio.stdout.trim().split("\n");
    expect(cpioLines).toHaveLength(entries);
    expect(cpioLines.find((l) => / dev\/console$/.test(l))).toMatch(/^crw-------\s+1\s+root\s+root\s+5,\s+1 /);

    const bsd = spawnSync("bsdtar", ["-tvf", raw], { encoding: "utf8" });
    expect(bsd.status, bsd.stderr).toBe(0);
    const bsdLines = bsd.stdout.trim().split("\n");
    expect(bsdLines).toHaveLength(entries);
    expect(bsdLines.find((l) => / dev\/console$/.test(l))).toMatch(/^crw-------\s+\d+\s+(root|0)\s+(root|0)\s+5,\s*1 /);
    expect(bsdLines.find((l) => / bin\/sh -> busybox$/.test(l))).toMatch(/^lrwxrwxrwx/);
    expect(bsdLines.find((l) => / init$/.test(l))).toMatch(/^-rwxr-xr-x/);
    expect(bsdLines.find((l) => / srv\/www\/index.html$/.test(l))).toMatch(/^-rw-r--r--/);
    expect(bsdLines.find((l) => / tmp$/.test(l))).toMatch(/^drwxrwxrwt/);
  });
});

describe("fledge build without a manifest.toml (the seed's flows)", () => {
  /** The default mode with kestrel and busybox from local files, mapping `programs` into /usr/bin. */
  function defaultMode(name: string, programs: string[]): string {
    const dir = join(root, name);
    mkdirSync(dir, { recursive: true });
    writeFileSync(join(dir, "busybox"), Buffer.alloc(4096, 7));
    writeFileSync(join(dir, "kestrel"), "#!/bin/sh\n");
    for (const p of programs) writeFileSync(join(dir, p), "#!/bin/sh\n", { mode: 0o755 });
    writeFileSync(
      join(dir, "fledge.toml"),
      `version = "1"\n[agent]\nsource_strategy = "local"\npath = "./kestrel"\n[source]\nbusybox_url = "./busybox"\nbusybox_sha256 = "${sha(join(dir, "busybox"))}"\n[mappings]\n` +
        programs.map((p) => `"./${p}" = "/usr/bin/${p}"\n`).join(""),
    );
    return dir;
  }

  it('default mode, two mapped programs: exit 0, the artifact, no manifest.json, and --json says "manifest": null with the reasons', async () => {
    const dir = defaultMode("two-programs", ["api", "worker"]);
    const r = await runBin(["build", "--json"], dir, { env: { FLEDGE_CACHE_DIR: join(root, "cache") } });
    expect(r.code).toBe(0);
    const j = JSON.parse(r.stdout);
    expect(j).toMatchObject({ ok: true, manifest: null, manifestPath: null });
    expect(j.manifestReasons).toEqual([
      {
        key: "workload.entrypoint",
        message: "workload.entrypoint is missing: 2 mapped files land in a bin directory (/usr/bin/api, /usr/bin/worker), so fledge cannot tell which one kestrel should start",
        fix: 'name = "two-programs"\n\n[workload]\nentrypoint = "/usr/bin/api"  # or "/usr/bin/worker"\nbase_url = "http://127.0.0.1:8000"',
      },
    ]);
    expect(j.outputs.map((o: { label: string }) => o.label)).not.toContain("manifest");
    expect(readdirSync(dir).filter((f) => f.endsWith(".json") && !f.endsWith(".origins.json"))).toEqual([]);
    expect(existsSync(join(dir, "plugin.cpio.gz"))).toBe(true);
    // Without --json: the warning names the key and the TOML to add, and the summary says it.
    const t = await runBin(["build"], dir, { env: { FLEDGE_CACHE_DIR: join(root, "cache") } });
    expect(t.code).toBe(0);
    expect(t.stderr).toContain("mappings: no manifest.json will be written (the artifact is still built)");
    expect(t.stderr).toContain('        entrypoint = "/usr/bin/api"  # or "/usr/bin/worker"\n        base_url = "http://127.0.0.1:8000"\n');
    expect(t.stdout).toMatch(/^built plugin\.cpio\.gz .*\nno manifest\.json written: workload\.entrypoint is missing: 2 mapped files/);
    expect(t.stdout).not.toContain("install with");
  });

  it("default mode, one mapped program: the manifest has it as the entrypoint and base_url port 8000, with notes", async () => {
    const dir = defaultMode("one-program", ["api"]);
    const r = await runBin(["build"], dir, { env: { FLEDGE_CACHE_DIR: join(root, "cache") } });
    expect(r.code).toBe(0);
    expect(r.stderr).toContain('note: manifest: workload.entrypoint = ["/usr/bin/api"] from the one file the mappings put in a bin directory');
    const manifest = JSON.parse(readFileSync(join(dir, "one-program.manifest.json"), "utf8"));
    expect(manifest.workload).toEqual({ type: "http", entrypoint: ["/usr/bin/api"], base_url: "http://127.0.0.1:8000" });
  });
});

describe("fledge build: bad input gets a clear error, exit 1, and no output", () => {
  function outputs(dir: string) {
    return readdirSync(dir).filter((f) => f.endsWith(".cpio.gz") || f.endsWith(".manifest.json") || f.startsWith(".fledge-tmp"));
  }

  it("missing config", async () => {
    const dir = join(root, "empty");
    mkdirSync(dir);
    const r = await run(["build"], dir);
    expect(r.code).toBe(1);
    expect(r.stderr).toContain(`${join(dir, "fledge.toml")}: file not found`);
    expect(r.stderr).toContain("hint:");
    expect(outputs(dir)).toEqual([]);
  });

  it("TOML syntax error, with line and column and a code frame", async () => {
    const dir = project("syntax", { fledge: 'version = "1"\n\n[init]\nnone = tru\n' });
    const r = await run(["build"], dir);
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(new RegExp(`${join(dir, "fledge.toml")}:4:\\d+: TOML syntax error`));
    expect(r.stderr).toContain("none = tru");
    expect(outputs(dir)).toEqual([]);
  });

  it("unsupported version", async () => {
    const dir = project("version", { fledge: 'version = "2"\n[init]\nnone = true\n' });
    const r = await run(["build"], dir);
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(/fledge\.toml.* version: must be "1"/);
    expect(outputs(dir)).toEqual([]);
  });

  it("missing mapping source, named with the mapping as written", async () => {
    const dir = project("nomap", {
      fledge: 'version = "1"\n[init]\nnone = true\n[source]\nbusybox_url = "./busybox"\n[mappings]\n"./init.sh" = "/init"\n"./app" = "/usr/bin/app"\n',
    });
    const r = await run(["build"], dir);
    expect(r.code).toBe(1);
    expect(r.stderr).toContain(`${join(dir, "fledge.toml")}:8:1 mappings."./app": ${join(dir, "app")} does not exist`);
    expect(outputs(dir)).toEqual([]);
  });

  it("busybox checksum mismatch: expected and actual, nothing written or cached", async () => {
    const dir = project("badsum", { busyboxSha: "0".repeat(64) });
    const cache = join(dir, ".cache");
    const r = await run(["build"], dir, { FLEDGE_CACHE_DIR: cache });
    expect(r.code).toBe(1);
    expect(r.stderr).toContain(`expected ${"0".repeat(64)}`);
    expect(r.stderr).toContain(`actual   ${sha(join(dir, "busybox"))}`);
    expect(outputs(dir)).toEqual([]);
    const cached = existsSync(join(cache, "sha256")) ? readdirSync(join(cache, "sha256")) : [];
    expect(cached).toEqual([]);
  });

  it("a usage error exits 2", async () => {
    const r = await run(["build", "--frobnicate"], root);
    expect(r.code).toBe(2);
    expect(r.stderr).toContain("--frobnicate");
  });

  it("--json reports errors as JSON on stdout", async () => {
    const dir = project("jsonerr", { fledge: 'version = "2"\n' });
    const r = await run(["build", "--json"], dir);
    expect(r.code).toBe(1);
    const j = JSON.parse(r.stdout);
    expect(j.ok).toBe(false);
    expect(j.error.code).toBe("FLEDGE_CONFIG");
    expect(j.error.issues[0].keyPath).toBe("version");
  });
});
