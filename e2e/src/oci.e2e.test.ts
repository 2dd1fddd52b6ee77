import { createHash } from "node:crypto";
import { cpSync, mkdirSync, mkdtempSync, readFileSync, realpathSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { gzipSync } from "node:zlib";
import { skopeo, startRegistry, writeLayout, type TestRegistry } from "@fledge/plugin-oci/testing";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { fledge } from "./cli.js";
import { bootInitramfs, hostBusybox } from "./qemu.js";
import { startReleaseServer, type ReleaseServer } from "./release-server.js";

/**
 * The seed's Mode 1 config plus `[source] image = "<loopback registry>/…"`, built with the CLI
 * as a user runs it and booted in Debian's kernel. The image brings its own /bin/sh (Debian's
 * dash and the glibc it needs — no busybox in it) and an Entrypoint script; fledge adds its init,
 * kestrel (a stand-in that runs the manifest's workload, as kestrel does) and busybox around it.
 */
const fixtures = fileURLToPath(new URL("../fixtures/", import.meta.url));
const work = mkdtempSync(join(tmpdir(), "fledge-e2e-oci-"));
const sha256 = (b: Buffer) => createHash("sha256").update(b).digest("hex");
const file = (p: string) => readFileSync(realpathSync(p));

let registry: TestRegistry;
let release: ReleaseServer | undefined;
let base = "";
let image = "";
const layout = join(work, "layout");

beforeAll(async () => {
  const busybox = readFileSync(hostBusybox());
  const kestrel = readFileSync(join(fixtures, "oci", "kestrel"));
  release = await startReleaseServer({ assets: { kestrel, "checksums.txt": `${sha256(kestrel)}  kestrel\n` }, busybox });
  base = release.base;

  const entry = [
    "#!/bin/sh",
    'echo "OCI-E2E entrypoint args=$* greeting=$GREETING cwd=$(pwd) exe=$(busybox readlink /proc/$$/exe)"',
    'for f in /etc/removed /srv/old /srv/new; do [ -e "$f" ] && echo "OCI-E2E has $f" || echo "OCI-E2E no $f"; done',
    "",
  ].join("\n");
  await writeLayout(layout, "1", [
    {
      layers: [
        [
          { name: "bin/", type: "directory" },
          { name: "bin/sh", data: file("/usr/bin/dash"), mode: 0o755 },
          { name: "lib/x86_64-linux-gnu/", type: "directory" },
          { name: "lib/x86_64-linux-gnu/libc.so.6", data: file("/lib/x86_64-linux-gnu/libc.so.6"), mode: 0o755 },
          { name: "lib64/", type: "directory" },
          { name: "lib64/ld-linux-x86-64.so.2", data: file("/lib64/ld-linux-x86-64.so.2"), mode: 0o755 },
          { name: "etc/", type: "directory" },
          { name: "etc/removed", data: "whited out by the next layer\n" },
          { name: "srv/", type: "directory" },
          { name: "srv/old", data: "hidden by an opaque directory\n" },
        ],
        [
          { name: "etc/.wh.removed", data: "" },
          { name: "srv/", type: "directory" },
          { name: "srv/.wh..wh..opq", data: "" },
          { name: "srv/new", data: "new\n" },
          { name: "app/", type: "directory" },
          { name: "app/entry.sh", data: entry, mode: 0o755 },
        ],
      ],
      config: { Entrypoint: ["/app/entry.sh"], Cmd: ["from-cmd"], Env: ["PATH=/usr/sbin:/usr/bin:/sbin:/bin", "GREETING=hello-from-image"], WorkingDir: "/app", ExposedPorts: { "8000/tcp": {} } },
    },
  ]);
  registry = await startRegistry();
  await skopeo([`oci:${layout}:1`, `docker://${registry.host}/e2e/app:1`, "--dest-tls-verify=false"]);
  await skopeo([`oci:${layout}:1`, `docker-archive:${join(work, "app.tar")}:e2e/app:1`]);
  image = `${registry.host}/e2e/app:1`;
}, 120_000);

afterAll(async () => {
  await registry?.stop();
  await release?.close();
  rmSync(work, { recursive: true, force: true });
});

/** The seed's Mode 1 fledge.toml plus `[source] image`; manifest.toml without a workload (the image gives it). */
function project(name: string, ref: string): string {
  const dir = join(work, name);
  mkdirSync(dir, { recursive: true });
  cpSync(join(fixtures, "seed", "mode1", "myapp"), join(dir, "myapp"));
  const toml = readFileSync(join(fixtures, "seed", "mode1", "fledge.toml"), "utf8")
    .replace("<sha256>", sha256(readFileSync(hostBusybox())))
    .replace("[source]\n", `[source]\nimage = "${ref}"\n`);
  writeFileSync(join(dir, "fledge.toml"), toml);
  writeFileSync(join(dir, "manifest.toml"), 'name = "imgapp"\nversion = "0.1.0"\n\n[resources]\ncpu_cores = 1\nmemory_mb = 256\n');
  return dir;
}

const env = () => ({ FLEDGE_MIRRORS: `https://busybox.net/=${base}/busybox.net/`, FLEDGE_GITHUB_API: `${base}/api`, HOME: join(work, "home") });

async function buildIn(dir: string, out: string, extra: string[] = [], cache = join(work, "cache")) {
  const r = await fledge(["build", "-o", out, "--cache-dir", cache, ...extra], { cwd: dir, env: env() });
  return r;
}

/** Volant's encoding of the manifest for the kernel command line (pluginspec.Encode). */
const volantManifestArg = (manifestJson: string) => `volant.manifest=${gzipSync(JSON.stringify(JSON.parse(manifestJson))).toString("base64url")}`;

describe("an image-based initramfs (the seed's Mode 1 + [source] image)", () => {
  it("builds from a loopback registry, holds the image's files with whiteouts applied, and boots its Entrypoint", async () => {
    const dir = project("mode1", image);
    const artifact = join(work, "mode1.cpio.gz");
    const r = await buildIn(dir, artifact);
    expect(r.stderr, r.stderr).not.toMatch(/error/i);
    expect(r.code).toBe(0);
    const manifest = JSON.parse(readFileSync(join(work, "imgapp.manifest.json"), "utf8"));
    expect(manifest.workload).toMatchObject({ entrypoint: ["/app/entry.sh", "from-cmd"], workdir: "/app", base_url: "http://127.0.0.1:8000" });
    expect(manifest.workload.env.GREETING).toBe("hello-from-image");
    expect(manifest.image).toBe(image);
    expect(manifest.image_digest).toMatch(/^sha256:[0-9a-f]{64}$/);
    expect(r.stderr + r.stdout).toMatch(/workload\.entrypoint.*image/);

    const listing = await fledge(["inspect", "--json", artifact], { cwd: work });
    const entries = JSON.parse(listing.stdout).entries as { path: string; type: string; size?: number; sha256?: string; target?: string }[];
    const at = (p: string) => entries.find((e) => e.path === p);
    expect(at("etc/removed")).toBeUndefined();
    expect(at("srv/old")).toBeUndefined();
    expect(at("srv/new")).toBeDefined();
    expect(at("bin/sh")).toMatchObject({ type: "file", sha256: sha256(file("/usr/bin/dash")) }); // the image's shell, not busybox
    expect(at("bin/busybox")).toBeDefined();
    expect(at("bin/ls")).toMatchObject({ type: "symlink" });

    const boot = await bootInitramfs(artifact, { append: volantManifestArg(readFileSync(join(work, "imgapp.manifest.json"), "utf8")), until: /OCI-E2E workload exited \d+\r?\n/ });
    const lines = [...boot.serial.matchAll(/^OCI-E2E (.*)$/gm)].map((m) => m[1]!.trimEnd());
    expect(lines, boot.serial.slice(-3000)).toContain("kestrel pid=1");
    expect(lines).toContain("entrypoint args=from-cmd greeting=hello-from-image cwd=/app exe=/bin/sh");
    expect(lines).toEqual(expect.arrayContaining(["no /etc/removed", "no /srv/old", "has /srv/new", "workload exited 0"]));
    expect(boot.panicked).toBe(false);
  });

  it("the same image as an oci: layout and as a docker-archive gives a byte-identical artifact", async () => {
    const fromRegistry = readFileSync(join(work, "mode1.cpio.gz"));
    for (const [name, ref] of [
      ["layout", `oci:${layout}:1`],
      ["archive", `docker-archive:${join(work, "app.tar")}`],
    ] as const) {
      const out = join(work, `${name}.cpio.gz`);
      const r = await buildIn(project(name, ref), out, [], join(work, `cache-${name}`));
      expect(r.code, r.stderr).toBe(0);
      expect(readFileSync(out).equals(fromRegistry), name).toBe(true);
    }
  });

  it("fledge.lock pins the digest: with the registry stopped, --offline --locked rebuilds byte-identically", async () => {
    const dir = join(work, "mode1");
    const lock = readFileSync(join(dir, "fledge.lock"), "utf8");
    expect(lock).toContain(`["image:${image}"]`);
    const again = join(work, "offline.cpio.gz");
    await registry.stop();
    const r = await buildIn(dir, again, ["--offline", "--locked"]);
    expect(r.code, r.stderr).toBe(0);
    expect(readFileSync(again).equals(readFileSync(join(work, "mode1.cpio.gz")))).toBe(true);
  });
});
