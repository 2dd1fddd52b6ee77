import { spawnSync } from "node:child_process";
import { chmodSync, cpSync, mkdirSync, mkdtempSync, readFileSync, readdirSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { NODE_FLOOR, unsupportedNode } from "./node-check.js";
import { isInternal, main } from "./index.js";
import { sink } from "./test-sink.js";

const PKG = fileURLToPath(new URL("..", import.meta.url));
const REPO = join(PKG, "..", "..");
const BIN_ENTRY = join(PKG, "bin", "fledge.cjs");

let root: string;
beforeAll(() => {
  root = mkdtempSync(join(tmpdir(), "fledge-startup-"));
});
afterAll(() => rmSync(root, { recursive: true, force: true }));

function sh(args: string[], opts: { cwd?: string; env?: NodeJS.ProcessEnv } = {}) {
  const r = spawnSync(process.execPath, args, { cwd: opts.cwd ?? root, encoding: "utf8", env: { PATH: process.env.PATH, NO_COLOR: "1", FLEDGE_CACHE_DIR: join(root, "cache"), ...opts.env } });
  return { code: r.status, stdout: r.stdout, stderr: r.stderr };
}

describe("the Node floor", () => {
  it("is the same in every package.json's engines, the README and the start-up check", () => {
    const floor = `>=${NODE_FLOOR.join(".")}`;
    const dirs = [
      "",
      ...["packages", "plugins"].flatMap((d) =>
        readdirSync(join(REPO, d), { withFileTypes: true })
          .filter((e) => e.isDirectory())
          .map((e) => `${d}/${e.name}`),
      ),
    ];
    const manifests = dirs
      .map((d) => join(REPO, d, "package.json"))
      .filter((f) => {
        try {
          readFileSync(f);
          return true;
        } catch {
          return false;
        }
      });
    expect(manifests.length).toBeGreaterThan(7);
    for (const f of manifests) expect((JSON.parse(readFileSync(f, "utf8")) as { engines?: { node?: string } }).engines?.node, f).toBe(floor);
    expect(readFileSync(join(REPO, "README.md"), "utf8")).toContain(`Node ≥ ${NODE_FLOOR.join(".")}`);
  });

  it("accepts the floor and newer, refuses older with the version and what to do", () => {
    expect(unsupportedNode(NODE_FLOOR.join("."), "/usr/bin/node")).toBeUndefined();
    for (const v of ["20.20.2", "22.0.0", "24.11.1", "v25.1.0", "21.0.0"]) expect(unsupportedNode(v, "/usr/bin/node"), v).toBeUndefined();
    for (const v of ["20.18.0", "20.9.0", "18.20.4", "v16.0.0"]) {
      const m = unsupportedNode(v, "/opt/node/bin/node");
      expect(m, v).toContain(`needs Node ${NODE_FLOOR.join(".")} or newer`);
      expect(m).toContain(`this is Node ${v} at /opt/node/bin/node`);
    }
  });
});

describe("the committed bin entry (node_modules/.bin/fledge)", () => {
  it("is what package.json's bin names, and runs the built CLI", () => {
    const pkg = JSON.parse(readFileSync(join(PKG, "package.json"), "utf8")) as { bin: Record<string, string>; files: string[] };
    expect(pkg.bin.fledge).toBe("./bin/fledge.cjs");
    expect(pkg.files).toContain("bin");
    const r = sh([BIN_ENTRY, "--version"]);
    expect(r.code, r.stderr).toBe(0);
    expect(r.stdout).toMatch(/^fledge 0\.\d+\.\d+/);
  });

  it("says to run npm run build when dist is missing", () => {
    const copy = join(root, "cli-copy");
    mkdirSync(join(copy, "bin"), { recursive: true });
    cpSync(BIN_ENTRY, join(copy, "bin", "fledge.cjs"));
    cpSync(join(PKG, "package.json"), join(copy, "package.json"));
    const r = sh([join(copy, "bin", "fledge.cjs"), "--help"]);
    expect(r.code).toBe(1);
    expect(r.stderr).toContain(`${join(copy, "dist", "bin.js")} is missing`);
    expect(r.stderr).toContain("npm run build");
  });
});

describe("exceptions nothing caught", () => {
  /** A project whose plugin throws outside any hook, as a dependency's socket callback would. */
  function project(name: string, plugin: string): string {
    const dir = join(root, name);
    mkdirSync(dir, { recursive: true });
    writeFileSync(join(dir, "busybox"), Buffer.alloc(1024, 1));
    writeFileSync(join(dir, "init.sh"), "#!/bin/sh\n");
    chmodSync(join(dir, "init.sh"), 0o755);
    writeFileSync(join(dir, "escape.mjs"), plugin);
    writeFileSync(
      join(dir, "fledge.toml"),
      `version = "1"\nplugins = ["./escape.mjs"]\n[init]\nnone = true\n[source]\nbusybox_url = "./busybox"\nbusybox_sha256 = "${"0".repeat(64)}"\n[mappings]\n"./init.sh" = "/init"\n`,
    );
    writeFileSync(join(dir, "manifest.toml"), `name = "x"\nversion = "0.1.0"\n[workload]\nentrypoint = "/init"\nbase_url = "http://127.0.0.1:8000"\n`);
    return dir;
  }

  it("an exception thrown from a timer is an internal error with its stack, exit 70", () => {
    const dir = project(
      "uncaught",
      `export default { name: "escape", apply(builder) { builder.hooks.beforeBuild.tapPromise("escape", () => new Promise(() => { setTimeout(function escapedFromASocket() { throw new Error("assert(!this.paused)"); }, 10); })); } };\n`,
    );
    const r = sh([BIN_ENTRY, "build"], { cwd: dir });
    expect(r.code, r.stderr).toBe(70);
    expect(r.stderr).toContain("fledge: internal error");
    expect(r.stderr).toContain("Error: assert(!this.paused)");
    expect(r.stderr).toContain("at Timeout.escapedFromASocket");
    expect(r.stderr).not.toMatch(/^node:internal|Node\.js v\d/m);
  });

  it("an unhandled rejection is one too", () => {
    const dir = project(
      "rejection",
      `export default { name: "escape", apply(builder) { builder.hooks.beforeBuild.tapPromise("escape", () => new Promise(() => { Promise.reject(new RangeError("nobody awaited me")); })); } };\n`,
    );
    const r = sh([BIN_ENTRY, "build", "--json"], { cwd: dir });
    expect(r.code, r.stderr).toBe(70);
    expect(r.stderr).toContain("fledge: internal error");
    expect(r.stderr).toContain("RangeError: nobody awaited me");
    // --json: the same on stdout, for machines
    expect(JSON.parse(r.stdout)).toMatchObject({ ok: false, error: { name: "RangeError", code: "FLEDGE_INTERNAL", message: "nobody awaited me", stack: expect.stringContaining("RangeError: nobody awaited me") } });
  });

  it("a bug caught by main (an error with no code) exits 70 with its stack; user errors stay 1", async () => {
    expect(isInternal(new TypeError("x is undefined"))).toBe(true);
    expect(isInternal(Object.assign(new Error("assert"), { code: "ERR_ASSERTION" }))).toBe(true);
    expect(isInternal(Object.assign(new Error("no such file"), { code: "ENOENT" }))).toBe(false);
    expect(isInternal(Object.assign(new Error("bad"), { name: "PluginError", code: "FLEDGE_PLUGIN", plugin: "someone-elses", cause: new TypeError("their bug") }))).toBe(false);
    expect(isInternal(Object.assign(new Error("bad"), { name: "PluginError", code: "FLEDGE_PLUGIN", plugin: "fledge:archive", cause: new TypeError("our bug") }))).toBe(true);
    const dir = project("plugin-bug", `export default { name: "buggy", apply(builder) { builder.hooks.beforeBuild.tap("buggy", () => { null.x; }); } };\n`);
    const out = sink();
    const stderr = sink();
    const code = await main(["build"], { stdout: out.stream, stderr: stderr.stream, env: { FLEDGE_CACHE_DIR: join(root, "cache") }, cwd: dir });
    const err = stderr.text();
    // a third-party plugin's bug is reported under its name, as a build error
    expect(code, err).toBe(1);
    expect(err).toContain('plugin "buggy" failed in hooks.beforeBuild');
  });
});

describe("npm ci on every supported Node", () => {
  it("no package in package-lock.json declares engines that exclude a supported Node (no EBADENGINE)", async () => {
    const { satisfies } = await import("semver");
    const lock = JSON.parse(readFileSync(join(REPO, "package-lock.json"), "utf8")) as { packages: Record<string, { version?: string; link?: boolean; engines?: { node?: string } | string[] }> };
    // the floor, the newest 20 we know, and the majors the tests run on
    const supported = [NODE_FLOOR.join("."), "20.20.2", "22.12.0", "24.0.0", process.versions.node];
    const bad: string[] = [];
    for (const [path, p] of Object.entries(lock.packages)) {
      const range = !Array.isArray(p.engines) ? p.engines?.node : undefined;
      if (!range || p.link) continue;
      for (const v of supported) if (!satisfies(v, range)) bad.push(`${path.replace(/^.*node_modules\//, "")}@${p.version} needs node ${range}, excluding ${v}`);
    }
    expect(bad).toEqual([]);
  });
});
