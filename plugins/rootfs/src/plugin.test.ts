import { execFileSync, spawnSync } from "node:child_process";
import { createHash } from "node:crypto";
import { mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";
import { afterEach, assert, beforeEach, describe, expect, it } from "vitest";
import AjvModule from "ajv";
import { build, type FledgePlugin, type LogEvent } from "@fledge/core";
import { validateVolantManifest } from "@fledge/manifest";
import RootfsPlugin, { findMksquashfs } from "./index.js";

const Ajv = ((AjvModule as unknown as { default?: typeof AjvModule.default }).default ?? AjvModule) as typeof AjvModule.default;
const SCHEMA = new URL("../../../packages/manifest/schema/plugin-manifest-v1.json", import.meta.url).pathname;

const BUSYBOX = ["/bin/busybox", "/usr/bin/busybox"].find((p) => spawnSync(p, ["true"]).status === 0)!;

let root: string;
let out: string;
beforeEach(() => {
  root = mkdtempSync(join(tmpdir(), "fledge-rootfs-"));
  out = join(root, "out");
  mkdirSync(out);
  writeFileSync(join(root, "kestrel"), "#!/bin/busybox sh\necho kestrel stand-in\n", { mode: 0o755 });
  writeFileSync(join(root, "app.sh"), "#!/bin/sh\necho app\n", { mode: 0o755 });
  writeFileSync(join(root, "manifest.toml"), 'name = "disk"\nversion = "1.0.0"\n[workload]\nentrypoint = "/usr/local/bin/app"\nbase_url = "http://127.0.0.1:8000"\n');
});
afterEach(() => rmSync(root, { recursive: true, force: true }));

/** fledge.toml for oci_rootfs with an image from the stand-in source below, plus `extra` lines. */
function config(extra = "", opts: { agent?: boolean } = {}): string {
  const file = join(root, `fledge-${Math.random().toString(36).slice(2)}.toml`);
  writeFileSync(
    file,
    [
      'version = "1"',
      'strategy = "oci_rootfs"',
      ...(opts.agent === false ? [] : ["[agent]", 'source_strategy = "local"', 'path = "./kestrel"']),
      "[source]",
      'image = "stand-in"',
      `busybox_url = "${BUSYBOX}"`,
      "[mappings]",
      '"./app.sh" = "/usr/local/bin/app"',
      extra,
    ].join("\n") + "\n",
  );
  return file;
}

/** Stands in for @fledge/plugin-oci: what an image's layers put in the tree, for `[source] image = "stand-in"`. */
const image: FledgePlugin = {
  name: "test:image",
  apply(b) {
    b.hooks.resolveSource.for("image").tapPromise("test:image", async (req, tree) => {
      if (req.options.ref !== "stand-in") return undefined;
      tree.mkdir("/etc");
      tree.addFile("/etc/os-release", "ID=stand-in\n");
      tree.addFile("/srv/data", "owned by 33\n", { mode: 0o640, uid: 33, gid: 33 });
      tree.device("/dev/zero", "char", 1, 5, 0o666);
      return true;
    });
  },
};

async function run(cfg = config(), opts: { baseUrl?: string; output?: string; plugins?: FledgePlugin[] } = {}) {
  const logs: LogEvent[] = [];
  const result = await build({
    config: cfg,
    manifest: join(root, "manifest.toml"),
    output: opts.output ?? join(out, "rootfs.img"),
    manifestOutput: join(dirname(opts.output ?? join(out, "rootfs.img")), "disk.manifest.json"),
    cacheDir: join(root, "cache"),
    baseUrl: opts.baseUrl,
    mtime: 1704067200,
    env: {},
    plugins: [new RootfsPlugin(), image, ...(opts.plugins ?? [])],
    onBuilder: (b) => b.hooks.log.tap("test", (e) => void logs.push(e)),
  });
  return { result, logs };
}

const debugfs = (img: string, cmd: string) => execFileSync("/usr/sbin/debugfs", ["-R", cmd, img], { encoding: "utf8", stdio: ["ignore", "pipe", "ignore"] });

describe("oci_rootfs strategy", () => {
  it("writes the tree as a raw ext4 root disk e2fsck finds clean, with kestrel, busybox, the image and the mappings", async () => {
    const { result, logs } = await run();
    const img = result.artifact.path;
    const fsck = spawnSync("/usr/sbin/e2fsck", ["-fn", img], { encoding: "utf8" });
    expect(fsck.status, fsck.stdout + fsck.stderr).toBe(0);
    const k1 = debugfs(img, "stat /bin/kestrel");
    const k2 = debugfs(img, "stat /usr/local/bin/kestrel");
    expect(k1.match(/Inode: \d+/)![0]).toBe(k2.match(/Inode: \d+/)![0]);
    expect(k1).toContain("Links: 2");
    expect(debugfs(img, "stat /bin/busybox")).toContain("Mode:  0755");
    expect(debugfs(img, "stat /bin/sh")).toContain('Fast link dest: "busybox"');
    expect(debugfs(img, "stat /srv/data")).toMatch(/User:\s+33\s+Group:\s+33/);
    expect(debugfs(img, "stat /dev/zero")).toContain("Device major/minor number: 01:05");
    expect(debugfs(img, "cat /usr/local/bin/app")).toBe("#!/bin/sh\necho app\n");
    expect(debugfs(img, "stat /init")).not.toContain("Inode:"); // no /init: Volant's own initramfs boots a root disk
    expect(logs.some((l) => /ext4 root disk: .* MiB free \(25% of the content, between 64 MiB and 1 GiB\)/.test(l.message))).toBe(true);
    // only the outputs are left in the output directory
    expect(readdirSync(out).sort()).toEqual(["disk.manifest.json", "rootfs.img"]);
    expect(result.artifact).toMatchObject({ kind: "rootfs", format: "raw", compression: "raw ext4" });
    expect(result.artifact.sha256).toBe(createHash("sha256").update(readFileSync(img)).digest("hex"));
  });

  it("points the manifest at the disk: rootfs { url, checksum, format = raw }, valid for Volant's schema and its Go rules", async () => {
    const { result } = await run();
    assert(result.manifestPath, "the build wrote no manifest");
    const m = JSON.parse(readFileSync(result.manifestPath, "utf8"));
    expect(m.initramfs).toBeUndefined();
    expect(m.rootfs).toEqual({ url: result.artifact.path, checksum: `sha256:${result.artifact.sha256}`, format: "raw" });
    const ajv = new Ajv({ allErrors: true, strict: false });
    const validate = ajv.compile(JSON.parse(readFileSync(SCHEMA, "utf8")));
    expect(validate(m), JSON.stringify(validate.errors)).toBe(true);
    expect(validateVolantManifest(m)).toEqual([]);
    const published = await run(config(), { baseUrl: "https://plugins.example.com/disk/", output: join(root, "pub", "rootfs.img") });
    expect(published.result.manifest?.rootfs?.url).toBe("https://plugins.example.com/disk/rootfs.img");
  });

  it("gives the same sha256 twice, and honours size_buffer_mb and preallocate", async () => {
    const a = await run(config(), { output: join(root, "a", "rootfs.img") });
    const b = await run(config(), { output: join(root, "b", "rootfs.img") });
    expect(b.result.artifact.sha256).toBe(a.result.artifact.sha256);
    const c = await run(config("[filesystem]\nsize_buffer_mb = 8\npreallocate = true"), { output: join(root, "c", "rootfs.img") });
    expect(c.result.artifact.size).toBeLessThan(a.result.artifact.size);
    const free = Number(/Free blocks:\s+(\d+)/.exec(debugfs(c.result.artifact.path, "stats"))![1]);
    expect(free * 4096).toBeGreaterThanOrEqual(8 << 20);
    expect(free * 4096).toBeLessThan(9 << 20);
  });

  it("refuses [init], xfs and btrfs in pre-flight, at their line, naming the fix", async () => {
    const cfgInit = config("[init]\nnone = true", { agent: false });
    const e1 = await run(cfgInit).catch((e) => e);
    expect(e1.issues).toEqual([expect.objectContaining({ keyPath: "init", line: 8, message: expect.stringContaining("[init] is not used by the oci_rootfs strategy"), hint: expect.stringContaining("remove [init]") })]);
    const e2 = await run(config('[filesystem]\ntype = "xfs"')).catch((e) => e);
    expect(e2.issues).toEqual([expect.objectContaining({ keyPath: "filesystem.type", line: 12, message: expect.stringContaining('type = "xfs" is not supported'), hint: expect.stringContaining('use type = "ext4"') })]);
    expect(readdirSync(out)).toEqual([]);
  });

  it("warns about keys the chosen filesystem does not use", async () => {
    const { logs } = await run(config('[filesystem]\ntype = "ext4"\ncompression_level = 3\noverlay_size = "1G"'));
    const warns = logs
      .filter((l) => l.level === "warn")
      .map((l) => l.message)
      .join("\n");
    expect(warns).toMatch(/:13:1: filesystem\.compression_level: is only used with type = "squashfs": an ext4 image is not compressed/);
    expect(warns).toMatch(/:14:1: filesystem\.overlay_size: is only used with type = "squashfs": an ext4 root disk is writable itself/);
  });

  it("leaves nothing behind when a later stage fails", async () => {
    const boom: FledgePlugin = {
      name: "test:boom",
      apply: (b) =>
        b.hooks.afterBuild.tapPromise({ name: "test:boom", stage: -100 }, async () => {
          throw new Error("verify failed");
        }),
    };
    await expect(run(config(), { plugins: [boom] })).rejects.toThrow(/verify failed/);
    expect(readdirSync(out).filter((f) => f.startsWith(".fledge-tmp"))).toEqual([]);
  });

  it.skipIf(!findMksquashfs())(
    "writes squashfs through mksquashfs -tar, with owners and devices from the tree, and warns that Volant does not boot it as it is",
    async () => {
      const { result, logs } = await run(config('[filesystem]\ntype = "squashfs"\ncompression_level = 19'), { output: join(out, "rootfs.squashfs") });
      const list = execFileSync("unsquashfs", ["-lln", result.artifact.path], { encoding: "utf8" });
      expect(list).toMatch(/-rw-r----- 33\/33\s+12 2024-01-01 00:00 squashfs-root\/srv\/data/);
      expect(list).toMatch(/crw-rw-rw- 0\/0\s+1,\s+5 2024-01-01 00:00 squashfs-root\/dev\/zero/);
      expect(list).toMatch(/squashfs-root\/usr\/local\/bin\/kestrel/);
      const w = logs
        .filter((l) => l.level === "warn")
        .map((l) => l.message)
        .join("\n");
      expect(w).toContain("volant.rootfs_fstype=squashfs volant.rootfs_device=vda");
      const again = await run(config('[filesystem]\ntype = "squashfs"\ncompression_level = 19'), { output: join(root, "again", "rootfs.squashfs") });
      expect(again.result.artifact.sha256).toBe(result.artifact.sha256);
    },
    60_000,
  );
});
