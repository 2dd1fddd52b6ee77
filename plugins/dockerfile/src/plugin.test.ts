import { execFileSync, spawnSync } from "node:child_process";
import { mkdirSync, mkdtempSync, rmSync, symlinkSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, assert, beforeAll, describe, expect, it } from "vitest";
import { build, type FledgePlugin } from "@fledge/core";
import OciPlugin from "@fledge/plugin-oci";
import RootfsPlugin from "@fledge/plugin-rootfs";
import DockerfilePlugin, { detectEngines } from "./index.js";

const root = mkdtempSync(join(tmpdir(), "fledge-dockerfile-plugin-"));
const base = join(tmpdir(), `fledge-dockerfile-plugin-base-${process.pid}`); // lowercase: buildah parses FROM oci:<path> as a reference
afterAll(() => {
  rmSync(root, { recursive: true, force: true });
  rmSync(base, { recursive: true, force: true });
});
const storageConf = join(root, "storage.conf");
writeFileSync(storageConf, `[storage]\ndriver = "vfs"\ngraphroot = "${join(root, "storage")}"\nrunroot = "${join(root, "run")}"\n`);
const env = { ...process.env, CONTAINERS_STORAGE_CONF: storageConf, BUILDAH_ISOLATION: "chroot", STORAGE_DRIVER: "vfs" };
const buildah = detectEngines(env).some((e) => e.engine === "buildah") && process.getuid?.() === 0;
const BUSYBOX = ["/bin/busybox", "/usr/bin/busybox"].find((p) => spawnSync(p, ["true"]).status === 0)!;

/** Every image reference the real image source (@fledge/plugin-oci) is handed, in order. */
const seen: string[] = [];
const watch: FledgePlugin = {
  name: "test:watch-image",
  apply(b) {
    b.hooks.resolveSource.for("image").tapPromise({ name: "test:watch-image", enforce: "pre" }, async (req) => {
      seen.push(String(req.options.ref));
      return undefined; // not a source: only watches what @fledge/plugin-oci receives
    });
  },
};
const plugins = () => [new DockerfilePlugin(), new RootfsPlugin(), new OciPlugin(), watch];

describe.skipIf(!buildah)("[source] dockerfile → engine → OCI layout → image source → root disk", () => {
  beforeAll(() => {
    const tree = join(root, "base-tree");
    mkdirSync(join(tree, "bin"), { recursive: true });
    execFileSync("cp", [BUSYBOX, join(tree, "bin/busybox")]);
    for (const a of ["sh", "echo", "mkdir", "cat"]) symlinkSync("busybox", join(tree, "bin", a));
    const ctr = execFileSync("buildah", ["from", "scratch"], { env, encoding: "utf8" }).trim();
    execFileSync("buildah", ["copy", ctr, tree + "/", "/"], { env, stdio: "ignore" });
    execFileSync("buildah", ["commit", ctr, `oci:${base}:latest`], { env, stdio: "ignore" });
    execFileSync("buildah", ["rm", ctr], { env, stdio: "ignore" });
  });

  it("builds the Dockerfile with buildah, hands the layout to the image source, and the files are on the disk", async () => {
    const dir = join(root, "project");
    mkdirSync(join(dir, "app"), { recursive: true });
    writeFileSync(join(dir, "app", "run.sh"), "#!/bin/sh\necho run\n", { mode: 0o755 });
    writeFileSync(join(dir, "kestrel"), "#!/bin/sh\n", { mode: 0o755 });
    writeFileSync(
      join(dir, "Dockerfile"),
      `FROM oci:${base}:latest AS base\nARG FLAVOUR=plain\nRUN mkdir -p /etc && echo "$FLAVOUR" > /etc/flavour\nCOPY run.sh /app/run.sh\n\nFROM base AS unused\nRUN echo no > /etc/flavour\n`,
    );
    writeFileSync(
      join(dir, "fledge.toml"),
      [
        'version = "1"',
        'strategy = "oci_rootfs"',
        "[agent]",
        'source_strategy = "local"',
        'path = "./kestrel"',
        "[source]",
        'dockerfile = "./Dockerfile"',
        'context = "./app"',
        'target = "base"',
        `busybox_url = "${BUSYBOX}"`,
        "[source.build_args]",
        'FLAVOUR = "spicy"',
        "",
      ].join("\n"),
    );
    // COPY run.sh is relative to the context (./app), the Dockerfile is outside it
    writeFileSync(join(dir, "manifest.toml"), 'name = "df"\nversion = "0.1.0"\n[workload]\nentrypoint = "/app/run.sh"\nbase_url = "http://127.0.0.1:8000"\n');
    const out = join(root, "out", "rootfs.img");
    const result = await build({ config: join(dir, "fledge.toml"), output: out, cacheDir: join(root, "cache"), mtime: 1704067200, env, plugins: plugins() });
    expect(seen).toHaveLength(1);
    expect(seen[0]).toMatch(/^oci:.*\/layout:latest$/);
    const fsck = spawnSync("/usr/sbin/e2fsck", ["-fn", out], { encoding: "utf8" });
    expect(fsck.status, fsck.stdout).toBe(0);
    const cat = (p: string) => execFileSync("/usr/sbin/debugfs", ["-R", `cat ${p}`, out], { encoding: "utf8", stdio: ["ignore", "pipe", "ignore"] });
    expect(cat("/etc/flavour")).toBe("spicy\n");
    expect(cat("/app/run.sh")).toBe("#!/bin/sh\necho run\n");
    assert(result.manifest, "the build wrote no manifest");
    expect(result.manifest.rootfs?.format).toBe("raw");
    // @fledge/plugin-oci unpacked it: the manifest names the Dockerfile, not the temporary layout
    expect(result.manifest.image).toBe("dockerfile:Dockerfile");
    expect(result.manifest.image_digest).toMatch(/^sha256:[0-9a-f]{64}$/);
    // the layout lived in the build's scratch directory and is gone
    expect(seen[0] && spawnSync("test", ["-e", /^oci:(.*):latest$/.exec(seen[0])![1]!]).status).toBe(1);
  });

  it("without an engine, pre-flight fails at source.dockerfile with one error naming the engines", async () => {
    const dir = join(root, "noengine");
    mkdirSync(dir, { recursive: true });
    writeFileSync(join(dir, "Dockerfile"), "FROM scratch\n");
    writeFileSync(join(dir, "kestrel"), "#!/bin/sh\n", { mode: 0o755 });
    writeFileSync(join(dir, "fledge.toml"), ['version = "1"', 'strategy = "oci_rootfs"', "[agent]", 'source_strategy = "local"', 'path = "./kestrel"', "[source]", 'dockerfile = "./Dockerfile"', ""].join("\n"));
    const err = await build({ config: join(dir, "fledge.toml"), output: join(dir, "rootfs.img"), cacheDir: join(root, "cache"), env: { PATH: join(root, "nothing") }, plugins: plugins() }).catch((e) => e);
    const msgs = (err.issues ?? []).map((i: { keyPath: string; message: string }) => `${i.keyPath}: ${i.message}`);
    expect(msgs).toContain(
      "source.dockerfile: building [source] dockerfile needs a container build engine, and none was found: looked for buildctl (BuildKit, with a running buildkitd), docker buildx (with a running Docker daemon), podman build, buildah build",
    );
  });
});
