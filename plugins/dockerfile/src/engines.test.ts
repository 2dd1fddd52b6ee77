import { execFileSync } from "node:child_process";
import { chmodSync, mkdirSync, mkdtempSync, readFileSync, rmSync, symlinkSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { gunzipSync } from "node:zlib";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { buildDockerfile, detectEngines, pickEngine } from "./index.js";

const root = mkdtempSync(join(tmpdir(), "fledge-dockerfile-test-"));
afterAll(() => {
  rmSync(root, { recursive: true, force: true });
  rmSync(join(tmpdir(), `fledge-dockerfile-base-${process.pid}`), { recursive: true, force: true });
});

/** buildah with its own storage (vfs) and chroot isolation: no daemon, nothing of the host's touched. */
const storageConf = join(root, "storage.conf");
writeFileSync(storageConf, `[storage]\ndriver = "vfs"\ngraphroot = "${join(root, "storage")}"\nrunroot = "${join(root, "run")}"\n`);
const env = { ...process.env, CONTAINERS_STORAGE_CONF: storageConf, BUILDAH_ISOLATION: "chroot", STORAGE_DRIVER: "vfs" };
const buildah = detectEngines(env).some((e) => e.engine === "buildah") && process.getuid?.() === 0;

/** The files of an OCI layout's image, last layer wins (enough for these small images: no whiteouts). */
function layoutFiles(layout: string): Map<string, string> {
  const blob = (d: string) => readFileSync(join(layout, "blobs", ...d.split(":")));
  const index = JSON.parse(readFileSync(join(layout, "index.json"), "utf8"));
  const manifest = JSON.parse(blob(index.manifests[0].digest).toString());
  const files = new Map<string, string>();
  for (const l of manifest.layers) {
    let tar = blob(l.digest);
    if (tar[0] === 0x1f && tar[1] === 0x8b) tar = gunzipSync(tar);
    for (let off = 0; off + 512 <= tar.length; ) {
      const h = tar.subarray(off, off + 512);
      if (h.every((b) => b === 0)) break;
      const name = h.subarray(0, 100).toString().replace(/\0.*$/s, "").replace(/^\.\//, "");
      const size = parseInt(h.subarray(124, 136).toString().replace(/\0.*$/s, "").trim() || "0", 8);
      if (h[156] === 0x30 || h[156] === 0) files.set(name, tar.subarray(off + 512, off + 512 + size).toString());
      off += 512 + Math.ceil(size / 512) * 512;
    }
  }
  return files;
}

describe("Dockerfile builds through a container engine", () => {
  let base: string;
  beforeAll(() => {
    if (!buildah) return;
    // The base image comes from a local OCI layout: no registry, no internet.
    const tree = join(root, "base-tree");
    mkdirSync(join(tree, "bin"), { recursive: true });
    execFileSync("cp", ["/bin/busybox", join(tree, "bin/busybox")]);
    for (const a of ["sh", "echo", "cat", "mkdir"]) symlinkSync("busybox", join(tree, "bin", a));
    const ctr = execFileSync("buildah", ["from", "scratch"], { env, encoding: "utf8" }).trim();
    execFileSync("buildah", ["copy", ctr, tree + "/", "/"], { env, stdio: "ignore" });
    // buildah reads FROM oci:<path> as a reference, which must be lowercase
    base = join(root, "base").toLowerCase() === join(root, "base") ? join(root, "base") : join(tmpdir(), `fledge-dockerfile-base-${process.pid}`);
    rmSync(base, { recursive: true, force: true });
    execFileSync("buildah", ["commit", ctr, `oci:${base}:latest`], { env, stdio: "ignore" });
    execFileSync("buildah", ["rm", ctr], { env, stdio: "ignore" });
  });

  it.skipIf(!buildah)("buildah (vfs storage, chroot isolation) builds the Dockerfile with its target and build args into an OCI layout", async () => {
    const ctx = join(root, "ctx");
    mkdirSync(ctx, { recursive: true });
    writeFileSync(join(ctx, "app.sh"), "#!/bin/sh\necho from-the-dockerfile\n");
    chmodSync(join(ctx, "app.sh"), 0o755);
    writeFileSync(
      join(ctx, "Dockerfile"),
      [
        `FROM oci:${base}:latest AS build`,
        "ARG GREETING=unset",
        'RUN mkdir -p /out && echo "$GREETING" > /out/greeting',
        "",
        `FROM oci:${base}:latest AS runtime`,
        "COPY --from=build /out/greeting /etc/greeting",
        "COPY app.sh /app/app.sh",
        'CMD ["/app/app.sh"]',
        "",
        `FROM oci:${base}:latest AS other`,
        "RUN echo wrong > /etc/greeting",
        "",
      ].join("\n"),
    );
    const lines: string[] = [];
    const img = await buildDockerfile({ dockerfile: join(ctx, "Dockerfile"), target: "runtime", buildArgs: { GREETING: "hello-from-build-args" } }, { env, tmpDir: root, onOutput: (l) => lines.push(l) });
    try {
      expect(img.engine).toBe("buildah");
      expect(img.ref).toBe(`oci:${img.layout}:latest`);
      const files = layoutFiles(img.layout);
      expect(files.get("etc/greeting")).toBe("hello-from-build-args\n");
      expect(files.get("app/app.sh")).toBe("#!/bin/sh\necho from-the-dockerfile\n");
      expect(lines.join("\n")).toMatch(/STEP|COMMIT|Writing manifest/);
      // the temporary tag is gone from the engine's storage
      expect(execFileSync("buildah", ["images", "--format", "{{.Name}}"], { env, encoding: "utf8" })).not.toContain("fledge-build-");
    } finally {
      await img.dispose();
    }
  });

  it.skipIf(!buildah)("a failing build is one error with the engine's own words, and leaves no temp directory", async () => {
    const ctx = join(root, "bad");
    mkdirSync(ctx, { recursive: true });
    writeFileSync(join(ctx, "Dockerfile"), `FROM oci:${base}:latest\nRUN exit 3\n`);
    const err = await buildDockerfile({ dockerfile: join(ctx, "Dockerfile") }, { env, tmpDir: ctx }).catch((e) => e);
    expect(err.code).toBe("FLEDGE_DOCKERFILE_BUILD");
    expect(err.message).toMatch(/buildah build failed \(exit \d+\)/);
    expect(execFileSync("ls", [ctx], { encoding: "utf8" }).trim()).toBe("Dockerfile");
  });

  it("without an engine, one clear error names every engine looked for and how to install one", () => {
    const none = { PATH: join(root, "empty-path") };
    let err: { code?: string; message?: string; hint?: string } | undefined;
    try {
      pickEngine(none);
    } catch (e) {
      err = e as typeof err;
    }
    expect(err?.code).toBe("FLEDGE_DOCKERFILE_ENGINE");
    expect(err?.message).toBe(
      "building [source] dockerfile needs a container build engine, and none was found: looked for buildctl (BuildKit, with a running buildkitd), docker buildx (with a running Docker daemon), podman build, buildah build",
    );
    expect(err?.hint).toContain("apt-get install buildah");
    expect(() => pickEngine({ ...none, FLEDGE_BUILD_ENGINE: "kaniko" })).toThrow(/FLEDGE_BUILD_ENGINE=kaniko is not an engine fledge drives/);
    expect(() => pickEngine({ ...none, FLEDGE_BUILD_ENGINE: "podman" })).toThrow(/podman build is not usable here/);
  });

  it("refuses a missing Dockerfile or context before looking for an engine", async () => {
    await expect(buildDockerfile({ dockerfile: join(root, "nope", "Dockerfile") }, { env: { PATH: "" } })).rejects.toThrow(/\[source\] dockerfile: .*nope\/Dockerfile does not exist/);
    writeFileSync(join(root, "Dockerfile"), "FROM scratch\n");
    await expect(buildDockerfile({ dockerfile: join(root, "Dockerfile"), context: join(root, "missing") }, { env: { PATH: "" } })).rejects.toThrow(/\[source\] context: .*missing is not a directory/);
  });
});
