import { createHash } from "node:crypto";
import { mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, symlinkSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { validateVolantManifest } from "@fledge/manifest";
import type { FledgePlugin } from "../builder.js";
import { build, preflight, updateLock } from "../build.js";
import { mappedPrograms } from "./derive-manifest.js";

const BUSYBOX_SHA256 = createHash("sha256").update(readFileSync("/bin/busybox")).digest("hex");
const roots: string[] = [];
afterAll(() => {
  for (const r of roots) rmSync(r, { recursive: true, force: true });
});

/** A project directory named `name` holding fledge.toml and `files` (no manifest.toml unless given). */
function project(name: string, toml: string, files: Record<string, string> = {}): string {
  const root = mkdtempSync(join(tmpdir(), "fledge-derive-"));
  roots.push(root);
  const dir = join(root, name);
  mkdirSync(dir);
  writeFileSync(join(dir, "fledge.toml"), toml);
  for (const [p, text] of Object.entries(files)) {
    mkdirSync(dirname(join(dir, p)), { recursive: true });
    writeFileSync(join(dir, p), text, { mode: 0o755 });
  }
  return dir;
}

const NONE = 'version = "1"\n[init]\nnone = true\n[source]\nbusybox = false\n[mappings]\n"./my-supervisor" = "/init"\n';
const CUSTOM = 'version = "1"\n[init]\npath = "./my-init"\n[source]\nbusybox = false\n[mappings]\n"./my-init" = "/init"\n"./myapp" = "/usr/bin/myapp"\n';
/** The default mode with kestrel and busybox from local files (no network). */
const DEFAULT = (mappings: string) => `version = "1"\n[agent]\nsource_strategy = "local"\npath = "./kestrel"\n[source]\nbusybox_url = "/bin/busybox"\nbusybox_sha256 = "${BUSYBOX_SHA256}"\n[mappings]\n${mappings}`;

const run = (dir: string, extra: { plugins?: FledgePlugin[] } = {}) => build({ config: join(dir, "fledge.toml"), output: join(dir, "out", "plugin.cpio.gz"), cacheDir: join(dir, ".cache"), ...extra });
const check = (dir: string) => preflight({ config: join(dir, "fledge.toml"), output: join(dir, "out", "plugin.cpio.gz"), cacheDir: join(dir, ".cache") });
const logsOf = () => {
  const logs: string[] = [];
  return {
    logs,
    plugin: { name: "logs", apply: (b) => b.hooks.log.tap("logs", (e) => void logs.push(`${e.level}: ${e.message}`)) } satisfies FledgePlugin,
  };
};

describe("without a manifest.toml, the manifest is derived from fledge.toml (the seed's flows)", () => {
  it("none mode: the entrypoint is /init and base_url port 8080, with notes saying why; Volant's rules pass", async () => {
    const dir = project("supervisor", NONE, { "my-supervisor": "#!/bin/sh\n" });
    const pf = await check(dir);
    expect(pf.ok).toBe(true);
    expect(pf.notes).toEqual([
      expect.stringContaining("no manifest.toml"),
      'manifest: workload.entrypoint = ["/init"] from the none init mode: the program that runs is /init (PID 1) (there is no manifest.toml)',
      expect.stringMatching(/^manifest: workload\.base_url = "http:\/\/127\.0\.0\.1:8080" from the none init mode: with no kestrel in the guest, Volant sends the VM's requests to port 8080/),
    ]);
    const { logs, plugin } = logsOf();
    const r = await run(dir, { plugins: [plugin] });
    expect(r.manifest).toMatchObject({ name: "supervisor", runtime: "supervisor", version: "0.1.0", workload: { type: "http", entrypoint: ["/init"], base_url: "http://127.0.0.1:8080" } });
    expect(validateVolantManifest(r.manifest)).toEqual([]);
    expect(JSON.parse(readFileSync(r.manifestPath!, "utf8"))).toEqual(r.manifest);
    // In custom and none modes port 8080 is the workload's: no warning about kestrel's port.
    expect(logs.filter((l) => l.startsWith("warn:") && l.includes("8080"))).toEqual([]);
    expect(logs).toEqual(expect.arrayContaining(pf.notes.slice(1).map((n) => `info: ${n}`)));
  });

  it("custom mode (a host file at /init): the entrypoint is /init even with a program mapped into /usr/bin", async () => {
    const dir = project("custom", CUSTOM, { "my-init": "#!/bin/sh\n", myapp: "#!/bin/sh\n" });
    const r = await run(dir);
    expect(r.manifest!.workload).toEqual({ type: "http", entrypoint: ["/init"], base_url: "http://127.0.0.1:8080" });
    expect(validateVolantManifest(r.manifest)).toEqual([]);
  });

  it("default mode, one program mapped into a bin directory: it is the entrypoint, and base_url is port 8000 (8080 is kestrel's)", async () => {
    const dir = project("myapp", DEFAULT('"./myapp" = "/usr/bin/myapp"\n"./etc" = "/etc/myapp"\n'), { kestrel: "#!/bin/sh\n", myapp: "#!/bin/sh\n", "etc/conf": "x" });
    const pf = await check(dir);
    expect(pf.ok).toBe(true);
    expect(pf.warnings).toEqual([]);
    expect(pf.notes).toContain(
      'manifest: workload.entrypoint = ["/usr/bin/myapp"] from the one file the mappings put in a bin directory ("./myapp" → /usr/bin/myapp): the program kestrel starts (there is no manifest.toml)',
    );
    expect(pf.notes).toContainEqual(expect.stringMatching(/^manifest: workload\.base_url = "http:\/\/127\.0\.0\.1:8000" from the default init mode: kestrel's own API listens on port 8080 in the guest/));
    const r = await run(dir);
    expect(r.manifest!.workload).toEqual({ type: "http", entrypoint: ["/usr/bin/myapp"], base_url: "http://127.0.0.1:8000" });
    expect(validateVolantManifest(r.manifest)).toEqual([]);
  });

  it("default mode, two programs: the artifact is built, no manifest.json is written, and a warning gives the manifest.toml to write", async () => {
    const dir = project("two", DEFAULT('"./a" = "/usr/bin/a"\n"./b" = "/usr/local/bin/b"\n'), { kestrel: "#!/bin/sh\n", a: "#!/bin/sh\n", b: "#!/bin/sh\n" });
    const fix = 'name = "two"\n\n[workload]\nentrypoint = "/usr/bin/a"  # or "/usr/local/bin/b"\nbase_url = "http://127.0.0.1:8000"';
    const reason = {
      key: "workload.entrypoint",
      message: "workload.entrypoint is missing: 2 mapped files land in a bin directory (/usr/bin/a, /usr/local/bin/b), so fledge cannot tell which one kestrel should start",
      fix,
    };
    // validate (pre-flight) says what the build will do
    const pf = await check(dir);
    expect(pf.ok).toBe(true);
    expect(pf.manifestReasons).toEqual([reason]);
    expect(pf.warnings).toMatchObject([{ file: join(dir, "fledge.toml"), keyPath: "mappings", line: 8, message: expect.stringContaining("no manifest.json will be written"), hint: expect.stringContaining(fix) }]);
    const r = await run(dir);
    expect(r.manifest).toBeNull();
    expect(r.manifestPath).toBeNull();
    expect(r.manifestReasons).toEqual([reason]);
    expect(r.warnings).toContainEqual(expect.stringContaining("no manifest.json will be written"));
    expect(r.outputs.map((o) => o.label)).toEqual(["artifact"]);
    expect(readdirSync(join(dir, "out"))).toEqual(["plugin.cpio.gz"]);
    // The TOML the warning gives, written as manifest.toml, builds a manifest Volant accepts.
    writeFileSync(join(dir, "manifest.toml"), fix + "\n");
    const r2 = await run(dir);
    expect(r2.manifest!.workload).toEqual({ type: "http", entrypoint: ["/usr/bin/a"], base_url: "http://127.0.0.1:8000" });
    expect(validateVolantManifest(r2.manifest)).toEqual([]);
  });

  it("default mode, no program in a bin directory: the same, and `fledge update` does not mind", async () => {
    const dir = project("none-in-bin", DEFAULT('"./srv" = "/srv/app"\n'), { kestrel: "#!/bin/sh\n", "srv/run": "#!/bin/sh\n" });
    const r = await run(dir);
    expect(r.manifest).toBeNull();
    expect(r.manifestReasons).toEqual([
      expect.objectContaining({
        key: "workload.entrypoint",
        message: expect.stringContaining("no mapped file lands in a bin directory"),
        fix: expect.stringContaining('entrypoint = "/usr/bin/myapp"  # the program kestrel starts'),
      }),
    ]);
    await expect(updateLock({ config: join(dir, "fledge.toml"), cacheDir: join(dir, ".cache") })).resolves.toMatchObject({ path: join(dir, "fledge.lock") });
  });

  it("a manifest.toml the user wrote is never filled in: missing required keys stay an error", async () => {
    const dir = project("mine", NONE, { "my-supervisor": "#!/bin/sh\n", "manifest.toml": 'name = "mine"\n' });
    const pf = await check(dir);
    expect(pf.ok).toBe(false);
    expect(pf.problems).toMatchObject([{ file: join(dir, "manifest.toml"), keyPath: "workload", message: expect.stringContaining("needs a [workload] with an entrypoint") }]);
    await expect(run(dir)).rejects.toMatchObject({ code: "FLEDGE_CONFIG" });
    expect(readdirSync(dir).sort()).toEqual(["fledge.toml", "manifest.toml", "my-supervisor"]);
  });

  it("a plugin that promises the entrypoint wins: nothing is derived for it, and nothing discarded", async () => {
    const dir = project("image", DEFAULT('"./a" = "/usr/bin/a"\n"./b" = "/usr/bin/b"\n'), { kestrel: "#!/bin/sh\n", a: "", b: "" });
    const image: FledgePlugin = {
      name: "image",
      apply(b) {
        b.hooks.check.tap("image", (_c, ctx) => ctx.manifestDefaults.expect("workload.entrypoint", "the image"));
        b.hooks.overlay.tap("image", (_t, ctx) => ctx.manifestDefaults.set("workload.entrypoint", ["/entry"], "the image"));
      },
    };
    const r = await run(dir, { plugins: [image] });
    expect(r.manifest!.workload).toEqual({ type: "http", entrypoint: ["/entry"], base_url: "http://127.0.0.1:8000" });
  });
});

describe("mappedPrograms: the files the mappings put directly in a bin directory", () => {
  const m = (dir: string, written: string, dest: string) => ({ source: join(dir, written), written, dest });
  it("follows the mappings stage: files and directories, in order, a later mapping replacing an earlier one", async () => {
    const dir = project("p", "", {
      app: "",
      tool: "",
      "rootfs/usr/bin/x": "",
      "rootfs/usr/bin/sub/deep": "",
      "rootfs/usr/share/doc": "",
      "rootfs/bin/kestrel": "",
      "tools/y": "",
      "elsewhere/z": "",
    });
    symlinkSync("../elsewhere", join(dir, "rootfs", "sbin")); // copied as a link: nothing lands below it
    symlinkSync("x", join(dir, "rootfs", "usr", "bin", "x-link"));
    const got = await mappedPrograms([
      m(dir, "app", "/usr/bin/app"),
      m(dir, "rootfs", "/"),
      m(dir, "tools", "/usr/local/bin/"),
      m(dir, "tool", "/opt/tool"),
      m(dir, "app", "/usr/bin/x"), // replaces rootfs's x: still one program there
      m(dir, "tools", "/usr/bin/app"), // a directory now
      m(dir, "missing", "/usr/bin/gone"),
    ]);
    expect(got).toEqual([
      { path: "/usr/bin/x", written: "app" },
      { path: "/usr/local/bin/y", written: "tools" },
    ]);
  });
});
