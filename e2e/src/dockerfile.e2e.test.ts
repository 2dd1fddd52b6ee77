import { execFileSync, spawnSync } from "node:child_process";
import { createHash } from "node:crypto";
import { copyFileSync, existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { gzipSync } from "node:zlib";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { fledge } from "./cli.js";
import { bootInitramfs, hostBusybox } from "./qemu.js";
import { startReleaseServer, type ReleaseServer } from "./release-server.js";

/**
 * Dockerfile sources with the CLI and a real engine: Debian's buildah (scripts/install-e2e-deps.sh),
 * vfs storage and chroot isolation, as root (CI runs as root), no registry and no internet — the
 * Dockerfile starts FROM scratch, copies a static busybox in and RUNs it. The built OCI layout goes
 * through @fledge/plugin-oci's image source, as a pulled image would.
 *
 * - `[source] dockerfile` in an initramfs project (default init mode, kestrel from its "latest
 *   release" — a stand-in served on 127.0.0.1 — and no workload in manifest.toml) boots, and
 *   kestrel runs the image's ENTRYPOINT + CMD with its ENV and WORKDIR;
 * - `[source] dockerfile` with `strategy = "oci_rootfs"` writes rootfs.img holding what the
 *   Dockerfile's COPY and RUN made.
 *
 * `fledge build ./Dockerfile` (no fledge.toml) is not run here: the config it generates takes the
 * pinned official busybox 1.35.0 (busybox_sha256 = 6e123e…), which cannot be downloaded without
 * internet, and Debian's busybox-static has another sha256. packages/cli/src/dockerfile.test.ts
 * checks what it generates and its no-engine error.
 */
const fixtures = fileURLToPath(new URL("../fixtures/", import.meta.url));
const work = mkdtempSync(join(tmpdir(), "fledge-e2e-dockerfile-"));
const sha256 = (b: Buffer) => createHash("sha256").update(b).digest("hex");
const isRoot = process.getuid?.() === 0;

let release: ReleaseServer | undefined;
let base = "";
let env: NodeJS.ProcessEnv = {};

const ENTRY = '#!/bin/sh\necho "DF-E2E entrypoint args=$* greeting=$GREETING cwd=$(pwd) marker=$(cat /etc/run-marker)"\n';
const DOCKERFILE = [
  "FROM scratch",
  "COPY busybox /bin/busybox",
  // the image's own shell: an image with its own busybox keeps its applets as they are (fledge links none)
  'RUN ["/bin/busybox", "sh", "-c", "/bin/busybox --install -s /bin && mkdir -p /etc && echo made-by-run > /etc/run-marker"]',
  "COPY app/ /app/",
  "ENV GREETING=from-dockerfile",
  "WORKDIR /app",
  "EXPOSE 8000",
  'ENTRYPOINT ["/app/entry.sh"]',
  'CMD ["from-cmd"]',
  "",
].join("\n");

/** A Dockerfile's build context: the Dockerfile, a static busybox, the entrypoint script. */
function context(dir: string): string {
  mkdirSync(join(dir, "app"), { recursive: true });
  writeFileSync(join(dir, "Dockerfile"), DOCKERFILE);
  copyFileSync(hostBusybox(), join(dir, "busybox"));
  writeFileSync(join(dir, "app", "entry.sh"), ENTRY, { mode: 0o755 });
  return dir;
}

beforeAll(async () => {
  if (spawnSync("buildah", ["--version"]).status !== 0) throw new Error("buildah is not installed: run scripts/install-e2e-deps.sh");
  const busybox = readFileSync(hostBusybox());
  const kestrel = readFileSync(join(fixtures, "oci", "kestrel"));
  release = await startReleaseServer({ assets: { kestrel, "checksums.txt": `${sha256(kestrel)}  kestrel\n` }, busybox });
  base = release.base;
  const storageConf = join(work, "storage.conf");
  writeFileSync(storageConf, `[storage]\ndriver = "vfs"\ngraphroot = "${join(work, "storage")}"\nrunroot = "${join(work, "run")}"\n`);
  env = {
    HOME: join(work, "home"),
    FLEDGE_MIRRORS: `https://busybox.net/=${base}/busybox.net/`,
    FLEDGE_GITHUB_API: `${base}/api`,
    FLEDGE_BUILD_ENGINE: "buildah",
    CONTAINERS_STORAGE_CONF: storageConf,
    STORAGE_DRIVER: "vfs",
    BUILDAH_ISOLATION: "chroot",
  };
});

afterAll(async () => {
  await release?.close();
  if (isRoot) spawnSync("buildah", ["rm", "--all"], { env: { ...process.env, ...env }, stdio: "ignore" });
  rmSync(work, { recursive: true, force: true });
});

/** Volant's encoding of the manifest for the kernel command line (pluginspec.Encode). */
const volantManifestArg = (manifestJson: string) => `volant.manifest=${gzipSync(JSON.stringify(JSON.parse(manifestJson))).toString("base64url")}`;

describe.skipIf(!isRoot)("Dockerfile sources, built by buildah, through the real image source", () => {
  it("[source] dockerfile, initramfs: the workload comes from the image, and it boots running the image's ENTRYPOINT", async () => {
    const dir = context(join(work, "dfapp"));
    writeFileSync(join(dir, "fledge.toml"), ['version = "1"', "[source]", 'dockerfile = "./Dockerfile"', `busybox_url = "${hostBusybox()}"`, ""].join("\n"));
    writeFileSync(join(dir, "manifest.toml"), 'name = "dfapp"\nversion = "0.1.0"\n');
    const r = await fledge(["build", "--cache-dir", join(work, "cache")], { cwd: dir, env });
    expect(r.code, r.stdout + r.stderr).toBe(0);
    expect(r.stderr).toMatch(/built with buildah/);
    const artifact = join(dir, "plugin.cpio.gz");
    const manifestJson = readFileSync(join(dir, "dfapp.manifest.json"), "utf8");
    const m = JSON.parse(manifestJson);
    expect(m.initramfs.url).toBe(artifact);
    expect(m.workload).toMatchObject({ entrypoint: ["/app/entry.sh", "from-cmd"], workdir: "/app", base_url: "http://127.0.0.1:8000" });
    expect(m.workload.env.GREETING).toBe("from-dockerfile");
    expect(m.image).toBe("dockerfile:Dockerfile");
    expect(m.image_digest).toMatch(/^sha256:[0-9a-f]{64}$/);

    const boot = await bootInitramfs(artifact, { append: volantManifestArg(manifestJson), until: /OCI-E2E workload exited \d+\r?\n/ });
    const lines = [...boot.serial.matchAll(/^(?:OCI|DF)-E2E (.*)$/gm)].map((x) => x[1]!.trimEnd());
    expect(lines, boot.serial.slice(-3000)).toContain("kestrel pid=1");
    expect(lines).toContain("entrypoint args=from-cmd greeting=from-dockerfile cwd=/app marker=made-by-run");
    expect(lines).toContain("workload exited 0");
    expect(boot.panicked).toBe(false);
  });

  it('[source] dockerfile with strategy = "oci_rootfs": rootfs.img holds what COPY and RUN made, e2fsck finds it clean', async () => {
    const dir = context(join(work, "disk"));
    copyFileSync(join(fixtures, "rootfs", "kestrel.sh"), join(dir, "kestrel.sh"));
    writeFileSync(
      join(dir, "fledge.toml"),
      ['version = "1"', 'strategy = "oci_rootfs"', "[agent]", 'source_strategy = "local"', 'path = "./kestrel.sh"', "[source]", 'dockerfile = "./Dockerfile"', `busybox_url = "${hostBusybox()}"`, ""].join("\n"),
    );
    writeFileSync(join(dir, "manifest.toml"), 'name = "dfdisk"\nversion = "0.1.0"\n');
    const r = await fledge(["build", "--cache-dir", join(work, "cache")], { cwd: dir, env });
    expect(r.code, r.stdout + r.stderr).toBe(0);
    const disk = join(dir, "rootfs.img");
    expect(existsSync(disk)).toBe(true);
    const fsck = spawnSync("/usr/sbin/e2fsck", ["-fn", disk], { encoding: "utf8" });
    expect(fsck.status, fsck.stdout + fsck.stderr).toBe(0);
    const cat = (p: string) => execFileSync("/usr/sbin/debugfs", ["-R", `cat ${p}`, disk], { encoding: "utf8", stdio: ["ignore", "pipe", "ignore"] });
    expect(cat("/etc/run-marker")).toBe("made-by-run\n");
    expect(cat("/app/entry.sh")).toBe(ENTRY);
    expect(cat("/usr/local/bin/kestrel")).toBe(readFileSync(join(fixtures, "rootfs", "kestrel.sh"), "utf8"));
    const m = JSON.parse(readFileSync(join(dir, "dfdisk.manifest.json"), "utf8"));
    expect(m.rootfs).toMatchObject({ url: disk, format: "raw" });
    expect(m.image).toBe("dockerfile:Dockerfile");
    expect(m.workload.entrypoint).toEqual(["/app/entry.sh", "from-cmd"]);
  });
});
