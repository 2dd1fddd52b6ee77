import { spawnSync } from "node:child_process";
import { createHash } from "node:crypto";
import { chmodSync, copyFileSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import AjvModule from "ajv";
import { validateVolantManifest } from "@fledge/manifest";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { fledge } from "./cli.js";
import { kernelRelease, moduleClosure } from "./modules.js";
import { bootInitramfs, findKernel, hostBusybox } from "./qemu.js";

/**
 * `strategy = "oci_rootfs"`: the CLI, as a non-root user, writes a raw ext4 root disk; it is
 * reproducible, e2fsck finds it clean, its manifest is what Volant accepts, and it boots the way
 * Volant boots a root disk: a kestrel-like PID 1 in an initramfs mounts /dev/vda read-write as
 * ext4, copies itself in, switch_roots, and runs the image's entrypoint.
 *
 * The image comes from e2e/fixtures/rootfs/image-standin.mjs until @fledge/plugin-oci lands.
 */
const Ajv = ((AjvModule as unknown as { default?: typeof AjvModule.default }).default ?? AjvModule) as typeof AjvModule.default;
const fixture = fileURLToPath(new URL("../fixtures/rootfs/", import.meta.url));
const SCHEMA = fileURLToPath(new URL("../../packages/manifest/schema/plugin-manifest-v1.json", import.meta.url));
const out = mkdtempSync(join(tmpdir(), "fledge-e2e-rootfs-"));
chmodSync(out, 0o755); // the build runs as nobody
afterAll(() => rmSync(out, { recursive: true, force: true }));

/** CI runs as root: the build runs as nobody, so nothing in it may need root. */
const asUser = process.getuid?.() === 0 ? { uid: 65534, gid: 65534 } : {};

async function buildDisk(name: string): Promise<{ artifact: string; manifest: string; stdout: string }> {
  const dir = join(out, name);
  mkdirSync(dir, { recursive: true });
  chmodSync(dir, 0o777);
  const artifact = join(dir, "rootfs.img");
  const r = await fledge(["build", "-C", fixture, "-o", artifact, "--manifest-output", join(dir, "rootfs-e2e.manifest.json"), "--cache-dir", join(dir, "cache")], {
    cwd: dir,
    env: { HOME: dir },
    ...asUser,
  });
  expect(r.stderr, r.stderr).not.toMatch(/error/i);
  expect(r.code, r.stdout + r.stderr).toBe(0);
  return { artifact, manifest: join(dir, "rootfs-e2e.manifest.json"), stdout: r.stdout };
}

/** The test initramfs, built by fledge itself ([init] none): the kestrel stand-in as /init, busybox, the modules. */
async function buildInitramfs(): Promise<string> {
  const dir = join(out, "initramfs");
  mkdirSync(dir, { recursive: true });
  const modules = moduleClosure(kernelRelease(findKernel()), ["virtio_pci", "virtio_blk", "crc32c_generic", "ext4"]);
  writeFileSync(join(dir, "modules.list"), modules.map((m) => m.name).join("\n") + "\n");
  const kestrel = join(fixture, "kestrel.sh");
  const toml = [
    'version = "1"',
    "[init]",
    "none = true",
    "[source]",
    `busybox_url = "${hostBusybox()}"`,
    "[mappings]",
    `"${kestrel}" = "/init"`,
    `"${kestrel}#" = "/bin/kestrel"`,
    '"./modules.list" = "/modules.list"',
    ...modules.map((m) => `"${m.file}" = "/lib/modules/${m.name}.ko"`),
  ].join("\n");
  // The same host file under two keys: TOML keys must differ, so the second goes through a copy.
  copyFileSync(kestrel, join(dir, "kestrel.sh"));
  writeFileSync(join(dir, "fledge.toml"), toml.replace(`"${kestrel}#"`, '"./kestrel.sh"') + "\n");
  writeFileSync(join(dir, "manifest.toml"), 'name = "kestrel-standin"\nversion = "0.1.0"\n[workload]\nentrypoint = "/init"\nbase_url = "http://127.0.0.1:8000"\n');
  const initrd = join(dir, "initramfs.cpio.gz");
  const r = await fledge(["build", "-C", dir, "-o", initrd, "--cache-dir", join(dir, "cache")], { cwd: dir });
  expect(r.code, r.stdout + r.stderr).toBe(0);
  return initrd;
}

function fsck(img: string): { status: number | null; out: string } {
  const r = spawnSync("/usr/sbin/e2fsck", ["-fn", img], { encoding: "utf8" });
  return { status: r.status, out: r.stdout + r.stderr };
}

describe("oci_rootfs: a root disk Volant boots", () => {
  let disk: Awaited<ReturnType<typeof buildDisk>>;
  beforeAll(async () => {
    disk = await buildDisk("a");
  });

  it("builds as a non-root user, twice with the same sha256, and e2fsck -fn finds it clean", async () => {
    expect(disk.stdout).toMatch(/built .*rootfs\.img .*raw ext4, sha256:/);
    const again = await buildDisk("b");
    const sha = (p: string) => createHash("sha256").update(readFileSync(p)).digest("hex");
    expect(sha(again.artifact)).toBe(sha(disk.artifact));
    const f = fsck(disk.artifact);
    expect(f.status, f.out).toBe(0);
  });

  it("writes a manifest that points at the disk and passes Volant's schema and Go rules", () => {
    const m = JSON.parse(readFileSync(disk.manifest, "utf8"));
    expect(m.initramfs).toBeUndefined();
    expect(m.rootfs).toEqual({ url: disk.artifact, checksum: "sha256:" + createHash("sha256").update(readFileSync(disk.artifact)).digest("hex"), format: "raw" });
    const validate = new Ajv({ allErrors: true, strict: false }).compile(JSON.parse(readFileSync(SCHEMA, "utf8")));
    expect(validate(m), JSON.stringify(validate.errors)).toBe(true);
    expect(validateVolantManifest(m)).toEqual([]);
  });

  it("boots as Volant boots it: kestrel mounts /dev/vda read-write as ext4, switch_roots, and the image's entrypoint runs", async () => {
    const initrd = await buildInitramfs();
    const m = JSON.parse(readFileSync(disk.manifest, "utf8"));
    // A VM writes to its disk: boot a copy, keep the artifact as built.
    const vmDisk = join(out, "vm-disk.img");
    copyFileSync(disk.artifact, vmDisk);
    const boot = await bootInitramfs(initrd, {
      drives: [vmDisk],
      append: `volant.rootfs_device=vda volant.rootfs_fstype=ext4 fledge.entrypoint=${m.workload.entrypoint[0]}`,
    });
    const s = boot.serial;
    expect(boot.panicked, s).toBe(false);
    expect(boot.timedOut, s).toBe(false);
    expect(s).toMatch(/KESTREL-STAGE1 mounted \/dev\/vda ext4 rw,relatime/);
    expect(s).toContain("KESTREL-STAGE1 switch_root");
    expect(s).toMatch(/KESTREL-STAGE2 pid=1 root=\/dev\/vda \/ ext4 rw/);
    expect(s).toContain("KESTREL-STAGE2 entrypoint /app/hello.sh");
    expect(s).toContain("FLEDGE-ROOTFS-ENTRYPOINT-OK uid=0 pwd=/");
    expect(s).toContain("owned: 1000:1000 600 os: ID=fledge-e2e-standin");
    expect(s).toContain("KESTREL-STAGE2 entrypoint exit 0");
    expect(s).toContain("KESTREL-STAGE2 rw written at boot");
    // kestrel replaced /usr/local/bin/kestrel by rename: /bin/kestrel (its hardlink until then) is intact
    expect(s).toMatch(/KESTREL-STAGE2 kestrel 1 755 \d+ bin 1 755 \d+/);
    expect(s).toContain("KESTREL-STAGE2 remounted ro");
    expect(s).toContain("reboot: Power down");
    const f = fsck(vmDisk);
    expect(f.status, f.out).toBe(0);
  });
});
