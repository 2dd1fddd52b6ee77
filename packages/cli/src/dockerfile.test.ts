import { mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { checkFledgeConfig } from "@fledge/config";
import { dockerfileProject, sanitizeName } from "./commands/dockerfile.js";
import { main } from "./index.js";

const root = mkdtempSync(join(tmpdir(), "fledge-cli-dockerfile-"));
afterAll(() => rmSync(root, { recursive: true, force: true }));

function sink() {
  let text = "";
  return { stream: { write: (s: string) => ((text += s), true), isTTY: false } as any, text: () => text };
}
async function run(args: string[], cwd: string, env: NodeJS.ProcessEnv = {}) {
  const out = sink();
  const err = sink();
  const code = await main(args, { stdout: out.stream, stderr: err.stream, env: { FLEDGE_CACHE_DIR: join(root, "cache"), ...env }, cwd });
  return { code, stdout: out.text(), stderr: err.text() };
}

function app(name: string): string {
  const dir = join(root, name);
  mkdirSync(join(dir, "src"), { recursive: true });
  writeFileSync(join(dir, "Dockerfile"), "FROM scratch\nCOPY src/ /app/\n");
  writeFileSync(join(dir, "src", "run.sh"), "#!/bin/sh\n");
  return dir;
}

describe("fledge build <Dockerfile>", () => {
  it("generates what the Go fledge generates: oci_rootfs (or initramfs), the Dockerfile and context, a minimal manifest", async () => {
    const dir = app("My App");
    const p = await dockerfileProject({ dockerfile: "Dockerfile", target: "runtime", buildArgs: ["V=1.2=3", "EMPTY="], initramfs: false }, dir, false);
    try {
      const toml = readFileSync(p.config, "utf8");
      const c = checkFledgeConfig(toml, p.config);
      expect(c.problems).toEqual([]);
      expect(c.config?.strategy).toBe("oci_rootfs");
      expect(c.config?.source).toMatchObject({ dockerfile: join(dir, "Dockerfile"), context: dir, target: "runtime", buildArgs: { V: "1.2=3", EMPTY: "" } });
      expect(readFileSync(p.manifest!, "utf8")).toContain('name = "my-app"\nversion = "1.0.0"\nruntime = "my-app"');
      expect(p.output).toBe(join(dir, "my-app.img"));
    } finally {
      await p.cleanup();
    }
    const i = await dockerfileProject({ dockerfile: join(dir, "Dockerfile"), context: "src", buildArgs: [], initramfs: true }, dir, true);
    expect(checkFledgeConfig(readFileSync(i.config, "utf8"), i.config).config?.strategy).toBe("initramfs");
    expect(i.manifest).toBeUndefined();
    expect(i.output).toBe(join(dir, "src.cpio.gz"));
    await i.cleanup();
    expect(sanitizeName("..")).toBe("plugin");
  });

  it("without a container engine: one clear error, exit 1, nothing written", async () => {
    const dir = app("noengine");
    const r = await run(["build", "./Dockerfile"], dir, { PATH: join(root, "no-engines-here") });
    expect(r.code).toBe(1);
    expect(r.stderr).toContain(
      "building [source] dockerfile needs a container build engine, and none was found: looked for buildctl (BuildKit, with a running buildkitd), docker buildx (with a running Docker daemon), podman build, buildah build",
    );
    expect(r.stderr).toContain("apt-get install buildah");
    // reported against the Dockerfile, not the fledge.toml generated for it (gone by now)
    expect(r.stderr).toContain(`in ${join(dir, "Dockerfile")}`);
    expect(r.stderr.match(/container build engine/g)).toHaveLength(1);
    expect(r.stderr).not.toContain("fledge-dockerfile-project-");
    expect(readdirSync(dir).sort()).toEqual(["Dockerfile", "src"]);
  });

  it("usage errors, exit 2", async () => {
    const dir = app("usage");
    const cases: [string[], RegExp][] = [
      [["build", "--context", "src"], /need a Dockerfile \(fledge build \.\/Dockerfile\)/],
      [["build", "-c", "fledge.toml", "./Dockerfile"], /--config cannot be used when building from a Dockerfile/],
      [["build", "./Dockerfile", "--build-arg", "NOEQUALS"], /--build-arg "NOEQUALS" must be KEY=VALUE/],
      [["build", "./Dockerfile", "--dockerfile", "other/Dockerfile"], /given twice/],
      [["build", "./nope/Dockerfile"], /does not exist/],
      [["build", "a", "b"], /one Dockerfile at most/],
    ];
    for (const [args, msg] of cases) {
      const r = await run(args, dir);
      expect(r.code, `${args.join(" ")}: ${r.stderr}`).toBe(2);
      expect(r.stderr).toMatch(msg);
    }
  });
});
