import { createHash } from "node:crypto";
import { cpSync, existsSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { createRequire } from "node:module";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import AjvModule from "ajv";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { validateVolantManifest } from "@fledge/manifest";
import { encodeManifest } from "@fledge/vm";
import { fledge, type RunResult } from "./cli.js";
import { bootInitramfs, hostBusybox, type BootResult } from "./qemu.js";
import { BUSYBOX_PATH, startReleaseServer, type ReleaseServer } from "./release-server.js";

/**
 * The seed's three configs (e2e/fixtures/seed, see its README), built as they are written —
 * busybox from busybox.net, kestrel from the latest GitHub release — with both served from
 * 127.0.0.1, each in a directory holding only the files it maps (no manifest.toml, as in the
 * seed), and booted in Debian's kernel. The manifest.json fledge derives must pass Volant's
 * JSON Schema and its Go rules.
 */
const fixtures = fileURLToPath(new URL("../fixtures/seed/", import.meta.url));
const work = mkdtempSync(join(tmpdir(), "fledge-e2e-seed-"));
const sha256 = (b: Buffer) => createHash("sha256").update(b).digest("hex");

// ajv is CommonJS: from ESM its class is the default export's `default`.
const Ajv = ((AjvModule as unknown as { default?: typeof AjvModule.default }).default ?? AjvModule) as typeof AjvModule.default;
const schemaFile = createRequire(import.meta.url).resolve("@fledge/manifest/schema/plugin-manifest-v1.json");
const volantSchema = new Ajv({ allErrors: true, strict: false }).compile(JSON.parse(readFileSync(schemaFile, "utf8")));

/** manifest.json as Volant reads it: its published JSON Schema, then its Go validator's rules. */
function expectVolantAccepts(manifest: unknown): void {
  expect(volantSchema(manifest), JSON.stringify(volantSchema.errors)).toBe(true);
  expect(validateVolantManifest(manifest)).toEqual([]);
}

let release: ReleaseServer | undefined;
let base = "";

beforeAll(async () => {
  const busybox = readFileSync(hostBusybox());
  const kestrel = readFileSync(join(fixtures, "release", "kestrel"));
  release = await startReleaseServer({ assets: { kestrel, "checksums.txt": `${sha256(kestrel)}  kestrel\n` }, busybox });
  base = release.base;
});
afterAll(async () => {
  await release?.close();
  rmSync(work, { recursive: true, force: true });
});

/** The files of a seed mode's directory: fledge.toml and exactly what it maps. */
const MAPPED: Record<string, string[]> = { mode1: ["myapp"], mode2: ["my-init", "myapp"], mode3: ["my-supervisor"] };

/** Copies the fixture into a directory named `myapp` under `at` (the build writes fledge.lock beside fledge.toml). */
function seedDir(mode: string, edit: (toml: string) => string = (t) => t, at = mode): string {
  const dir = join(work, at, "myapp");
  cpSync(join(fixtures, mode), dir, { recursive: true });
  expect(readdirSync(dir).sort()).toEqual(["fledge.toml", ...MAPPED[mode]!].sort());
  const toml = join(dir, "fledge.toml");
  // Mode 1's busybox_sha256 is a placeholder in the seed: fill in what the mirror serves.
  writeFileSync(toml, edit(readFileSync(toml, "utf8").replace("<sha256>", sha256(readFileSync(hostBusybox())))));
  return dir;
}

function build(dir: string, args: string[] = []): Promise<RunResult> {
  return fledge(["build", "--cache-dir", join(work, "cache"), ...args], {
    cwd: dir,
    env: { FLEDGE_MIRRORS: `https://busybox.net/=${base}/busybox.net/`, FLEDGE_GITHUB_API: `${base}/api` },
  });
}

/** Builds the seed's config with `fledge build` and nothing else; returns the artifact and the manifest written. */
async function buildSeed(mode: string): Promise<{ artifact: string; manifest: Record<string, unknown>; stderr: string }> {
  const dir = seedDir(mode);
  const r = await build(dir);
  expect(r.stderr, r.stderr).not.toMatch(/error/i);
  expect(r.code).toBe(0);
  expect(r.stdout).toMatch(/^built plugin\.cpio\.gz .*\nwrote myapp\.manifest\.json\n/);
  const artifact = join(dir, "plugin.cpio.gz");
  expect(existsSync(artifact)).toBe(true);
  const manifest = JSON.parse(readFileSync(join(dir, "myapp.manifest.json"), "utf8"));
  expectVolantAccepts(manifest);
  expect(manifest).toMatchObject({ name: "myapp", runtime: "myapp", version: "0.1.0", enabled: true, initramfs: { url: artifact, checksum: `sha256:${sha256(readFileSync(artifact))}` } });
  return { artifact, manifest, stderr: r.stderr };
}

const report = (boot: BootResult) => [...boot.serial.matchAll(/^SEED (.*)$/gm)].map((m) => m[1]!.trimEnd());

function expectCleanPowerOff(boot: BootResult): void {
  expect(boot.panicked).toBe(false);
  expect(boot.timedOut).toBe(false);
  expect(boot.exitedByItself).toBe(true);
  expect(boot.serial).toContain("reboot: Power down");
}

describe("the seed's configs build and boot as the seed describes", () => {
  it("Mode 1 (default): kestrel from the latest release becomes PID 1 via the C init, with the filesystems mounted", async () => {
    const { artifact, manifest, stderr } = await buildSeed("mode1");
    expect(release!.requests).toContain("/api/repos/volantvm/volant/releases/latest");
    expect(release!.requests).toContain(`/busybox.net${BUSYBOX_PATH}`);
    // The program kestrel starts is the one mapped into a bin directory; kestrel's API has 8080.
    expect(manifest.workload).toEqual({ type: "http", entrypoint: ["/usr/bin/myapp"], base_url: "http://127.0.0.1:8000" });
    expect(stderr).toContain('note: manifest: workload.entrypoint = ["/usr/bin/myapp"] from the one file the mappings put in a bin directory ("./myapp" → /usr/bin/myapp)');
    expect(stderr).toContain('note: manifest: workload.base_url = "http://127.0.0.1:8000" from the default init mode: kestrel\'s own API listens on port 8080');
    // As Volant boots it: the manifest on the kernel command line, where kestrel reads the entrypoint.
    const boot = await bootInitramfs(artifact, { append: `volant.manifest=${encodeManifest(manifest as never)}` });
    expectCleanPowerOff(boot);
    const lines = report(boot);
    expect(lines[0]).toBe("kestrel pid=1");
    expect(lines).toEqual(expect.arrayContaining(["mount /dev devtmpfs", "mount /proc proc", "mount /sys sysfs", "mount /tmp tmpfs", "mount /run tmpfs"]));
    expect(lines.slice(-2)).toEqual(["kestrel starts /usr/bin/myapp", "myapp ran, parent 1"]);
  });

  it("Mode 2 (custom): ./my-init is /init and PID 1, and there is no kestrel", async () => {
    const { artifact, manifest, stderr } = await buildSeed("mode2");
    expect(manifest.workload).toEqual({ type: "http", entrypoint: ["/init"], base_url: "http://127.0.0.1:8080" });
    expect(stderr).toContain('note: manifest: workload.entrypoint = ["/init"] from the custom init mode: the program that runs is /init (PID 1)');
    expect(stderr).not.toContain("which kestrel's own API listens on");
    const boot = await bootInitramfs(artifact);
    expectCleanPowerOff(boot);
    expect(report(boot)).toEqual(["my-init pid=1", "kestrel=absent", "myapp ran, parent 1"]);
  });

  it("Mode 3 (none): ./my-supervisor is PID 1 and has to mount /proc itself", async () => {
    const { artifact, manifest, stderr } = await buildSeed("mode3");
    expect(manifest.workload).toEqual({ type: "http", entrypoint: ["/init"], base_url: "http://127.0.0.1:8080" });
    expect(stderr).toContain('note: manifest: workload.entrypoint = ["/init"] from the none init mode: the program that runs is /init (PID 1)');
    const boot = await bootInitramfs(artifact);
    expectCleanPowerOff(boot);
    expect(report(boot)).toEqual(["my-supervisor pid=1", "mount / rootfs", "mount /proc proc"]);
  });
});

describe("Mode 1 with two programs mapped into bin directories", () => {
  it('builds the artifact, exits 0, writes no manifest.json, and --json says "manifest": null with the reasons', async () => {
    const dir = seedDir("mode1", (t) => t + '"./worker" = "/usr/local/bin/worker"\n', "mode1-two");
    cpSync(join(dir, "myapp"), join(dir, "worker"));
    const r = await build(dir, ["--json"]);
    expect(r.code, r.stdout + r.stderr).toBe(0);
    const j = JSON.parse(r.stdout);
    expect(j).toMatchObject({ ok: true, manifest: null, manifestPath: null, artifact: { path: join(dir, "plugin.cpio.gz") } });
    expect(j.manifestReasons).toEqual([
      {
        key: "workload.entrypoint",
        message: "workload.entrypoint is missing: 2 mapped files land in a bin directory (/usr/bin/myapp, /usr/local/bin/worker), so fledge cannot tell which one kestrel should start",
        fix: 'name = "myapp"\n\n[workload]\nentrypoint = "/usr/bin/myapp"  # or "/usr/local/bin/worker"\nbase_url = "http://127.0.0.1:8000"',
      },
    ]);
    expect(r.stderr).toContain("warning: ");
    expect(r.stderr).toContain("mappings: no manifest.json will be written (the artifact is still built)");
    expect(existsSync(join(dir, "plugin.cpio.gz"))).toBe(true);
    expect(readdirSync(dir).filter((f) => f.endsWith(".manifest.json"))).toEqual([]);
    // fledge validate runs the same pre-flight, and says the same.
    const v = await fledge(["validate", "--json"], { cwd: dir });
    expect(v.code).toBe(0);
    expect(JSON.parse(v.stdout).manifestReasons).toEqual(j.manifestReasons);
  });
});
