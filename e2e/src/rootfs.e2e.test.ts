import { spawnSync } from "node:child_process";
import { createHash } from "node:crypto";
import { chmodSync, copyFileSync, existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import AjvModule from "ajv";
import { validateVolantManifest } from "@fledge/manifest";
import { skopeo, startRegistry, writeLayout, type TestRegistry } from "@fledge/plugin-oci/testing";
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
 * The image is a real one in Debian's docker-registry on 127.0.0.1 (pushed there by skopeo from
 * an OCI layout the test writes): two layers, a whiteout, a file owned by 1000:1000, and an
 * Entrypoint that manifest.toml does not override, so what boots is the image's own.
 */
const Ajv = ((AjvModule as unknown as { default?: typeof AjvModule.default }).default ?? AjvModule) as typeof AjvModule.default;
const fixture = fileURLToPath(new URL("../fixtures/rootfs/", import.meta.url));
const SCHEMA = fileURLToPath(new URL("../../packages/manifest/schema/plugin-manifest-v1.json", import.meta.url));
const out = mkdtempSync(join(tmpdir(), "fledge-e2e-rootfs-"));
chmodSync(out, 0o755); // the build runs as nobody
let registry: TestRegistry | undefined;
let image = "";
beforeAll(async () => {
  const layout = join(out, "layout");
  const hello = [
    "#!/bin/sh",
    "# The image's entrypoint: run by kestrel stage 2 from the root disk.",
    'echo "FLEDGE-ROOTFS-ENTRYPOINT-OK uid=$(id -u) pwd=$(pwd) args=$*"',
    "echo \"owned: $(stat -c '%u:%g %a' /home/app/owned) os: $(cat /etc/os-release)\"",
    '[ -e /etc/removed ] && echo "whiteout: /etc/removed is there" || echo "whiteout: /etc/removed is gone"',
    "",
  ].join("\n");
  await writeLayout(layout, "1", [
    {
      layers: [
        [
          { name: "etc/", type: "directory" },
          { name: "etc/os-release", data: "ID=fledge-e2e-registry\n" },
          { name: "etc/removed", data: "whited out by the next layer\n" },
          { name: "home/", type: "directory" },
          { name: "home/app/", type: "directory", uid: 1000, gid: 1000, mode: 0o700 },
          { name: "home/app/owned", data: "app data\n", uid: 1000, gid: 1000, mode: 0o600 },
        ],
        [
          { name: "etc/.wh.removed", data: "" },
          { name: "app/", type: "directory" },
          { name: "app/hello.sh", data: hello, mode: 0o755 },
        ],
      ],
      config: { Entrypoint: ["/app/hello.sh"], Cmd: ["from-cmd"], ExposedPorts: { "8000/tcp": {} } },
    },
  ]);
  registry = await startRegistry();
  await skopeo([`oci:${layout}:1`, `docker://${registry.host}/e2e/rootfs:1`, "--dest-tls-verify=false"]);
  image = `${registry.host}/e2e/rootfs:1`;
}, 120_000);
afterAll(async () => {
  await registry?.stop();
  rmSync(out, { recursive: true, force: true });
});

/** CI runs as root: the build runs as nobody, so nothing in it may need root. */
const asUser = process.getuid?.() === 0 ? { uid: 65534, gid: 65534 } : {};

/** The fixture project with `[source] image` naming the registry image, built by `fledge build` with no -o. */
async function buildDisk(name: string): Promise<{ artifact: string; manifest: string; stdout: string; stderr: string }> {
  const dir = join(out, name);
  mkdirSync(dir, { recursive: true });
  chmodSync(dir, 0o777);
  writeFileSync(join(dir, "fledge.toml"), readFileSync(join(fixture, "fledge.toml"), "utf8").replace("<registry image>", image));
  for (const f of ["manifest.toml", "kestrel.sh"]) copyFileSync(join(fixture, f), join(dir, f));
  chmodSync(join(dir, "kestrel.sh"), 0o755);
  const r = await fledge(["build", "--cache-dir", join(dir, "cache")], {
    cwd: dir,
    env: { HOME: dir },
    ...asUser,
  });
  expect(r.stderr, r.stderr).not.toMatch(/error/i);
  expect(r.code, r.stdout + r.stderr).toBe(0);
  // no -o: the strategy's default name, not plugin.cpio.gz; the manifest beside it
  expect(existsSync(join(dir, "plugin.cpio.gz"))).toBe(false);
  return { artifact: join(dir, "rootfs.img"), manifest: join(dir, "rootfs-e2e.manifest.json"), stdout: r.stdout, stderr: r.stderr };
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
    expect(disk.stdout).toMatch(/built rootfs\.img .*raw ext4, sha256:/);
    expect(disk.stdout).toContain("wrote rootfs-e2e.manifest.json");
    expect(disk.stderr).toMatch(/: 2 layer\(s\)/);
    const again = await buildDisk("b");
    const sha = (p: string) => createHash("sha256").update(readFileSync(p)).digest("hex");
    expect(sha(again.artifact)).toBe(sha(disk.artifact));
    const f = fsck(disk.artifact);
    expect(f.status, f.out).toBe(0);
  });

  it("writes a manifest that points at the disk and passes Volant's schema and Go rules", () => {
    const m = JSON.parse(readFileSync(disk.manifest, "utf8"));
    expect(m.initramfs).toBeUndefined();
    expect(m.image).toBe(image);
    expect(m.image_digest).toMatch(/^sha256:[0-9a-f]{64}$/);
    // the image's Entrypoint + Cmd: manifest.toml sets no workload.entrypoint
    expect(m.workload.entrypoint).toEqual(["/app/hello.sh", "from-cmd"]);
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
    expect(s).toContain("owned: 1000:1000 600 os: ID=fledge-e2e-registry");
    expect(s).toContain("whiteout: /etc/removed is gone");
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
