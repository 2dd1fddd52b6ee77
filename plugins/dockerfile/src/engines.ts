import { spawn, spawnSync } from "node:child_process";
import { randomBytes } from "node:crypto";
import { existsSync, statSync } from "node:fs";
import { mkdtemp, readFile, rm } from "node:fs/promises";
import { delimiter, dirname, join, resolve } from "node:path";
import { FledgeError } from "@fledge/core";

/** What to build: the Go fledge's `[source] dockerfile`, `context`, `target`, `build_args`. */
export interface DockerfileRequest {
  /** Absolute path of the Dockerfile. */
  dockerfile: string;
  /** Absolute build context directory (default: the Dockerfile's directory). */
  context?: string;
  target?: string;
  buildArgs?: Record<string, string>;
  /** `linux/amd64` or `linux/arm64`. */
  platform?: string;
}

/** A built image, exported as an OCI image layout. */
export interface BuiltImage {
  engine: EngineName;
  /** The OCI layout directory; remove it with `dispose()` when done. */
  layout: string;
  /** The reference an image source reads: `oci:<layout>:latest`. */
  ref: string;
  dispose(): Promise<void>;
}

export type EngineName = "buildctl" | "docker" | "podman" | "buildah";

/** The engines looked for, in order. `FLEDGE_BUILD_ENGINE` picks one. */
export const ENGINES: EngineName[] = ["buildctl", "docker", "podman", "buildah"];

const ENGINE_LABEL: Record<EngineName, string> = {
  buildctl: "buildctl (BuildKit, with a running buildkitd)",
  docker: "docker buildx (with a running Docker daemon)",
  podman: "podman build",
  buildah: "buildah build",
};

export const NO_ENGINE_HINT = 'install one — Debian\'s buildah runs without a daemon (apt-get install buildah) — or build the image yourself and use [source] image = "oci:<dir>" or "docker-archive:<file.tar>"';

export interface EngineOptions {
  env?: NodeJS.ProcessEnv;
  /** Where the layout's temp directory goes (default: the system temp dir). */
  tmpDir?: string;
  /** Lines of engine output, for the build log. */
  onOutput?: (line: string) => void;
}

function which(bin: string, env: NodeJS.ProcessEnv): string | undefined {
  for (const d of (env.PATH ?? "").split(delimiter)) {
    if (!d) continue;
    const p = join(d, bin);
    try {
      if (statSync(p).isFile()) return p;
    } catch {
      /* not here */
    }
  }
  return undefined;
}

function works(bin: string, args: string[], env: NodeJS.ProcessEnv): boolean {
  const r = spawnSync(bin, args, { env, stdio: "ignore", timeout: 15_000 });
  return !r.error && r.status === 0;
}

/** Which engines are on this machine and usable now (a daemon-backed one needs its daemon). */
export function detectEngines(env: NodeJS.ProcessEnv = process.env): { engine: EngineName; bin: string }[] {
  const found: { engine: EngineName; bin: string }[] = [];
  for (const engine of ENGINES) {
    const bin = which(engine, env);
    if (!bin) continue;
    const ok = engine === "buildctl" ? works(bin, ["debug", "workers"], env) : engine === "docker" ? works(bin, ["buildx", "version"], env) && works(bin, ["info"], env) : works(bin, ["version"], env);
    if (ok) found.push({ engine, bin });
  }
  return found;
}

/** The engine to use: `FLEDGE_BUILD_ENGINE` if set, else the first usable one. Throws one clear error when there is none. */
export function pickEngine(env: NodeJS.ProcessEnv = process.env): { engine: EngineName; bin: string } {
  const want = env.FLEDGE_BUILD_ENGINE;
  if (want !== undefined && !ENGINES.includes(want as EngineName))
    throw new FledgeError("FLEDGE_DOCKERFILE_ENGINE", `FLEDGE_BUILD_ENGINE=${want} is not an engine fledge drives`, { hint: `use one of: ${ENGINES.join(", ")}` });
  const found = detectEngines(env);
  if (want) {
    const hit = found.find((f) => f.engine === want);
    if (!hit) throw new FledgeError("FLEDGE_DOCKERFILE_ENGINE", `FLEDGE_BUILD_ENGINE=${want}, but ${ENGINE_LABEL[want as EngineName]} is not usable here`, { hint: NO_ENGINE_HINT });
    return hit;
  }
  const first = found[0];
  if (!first)
    throw new FledgeError("FLEDGE_DOCKERFILE_ENGINE", `building [source] dockerfile needs a container build engine, and none was found: looked for ${ENGINES.map((e) => ENGINE_LABEL[e]).join(", ")}`, {
      hint: NO_ENGINE_HINT,
    });
  return first;
}

function run(bin: string, args: string[], env: NodeJS.ProcessEnv, onOutput?: (l: string) => void): Promise<void> {
  return new Promise((resolvePromise, reject) => {
    const child = spawn(bin, args, { env, stdio: ["ignore", "pipe", "pipe"] });
    let tail = "";
    const take = (d: Buffer) => {
      const s = d.toString("utf8");
      tail = (tail + s).slice(-4000);
      if (onOutput) for (const l of s.split("\n")) if (l.trim()) onOutput(l);
    };
    child.stdout.on("data", take);
    child.stderr.on("data", take);
    child.on("error", reject);
    child.on("close", (code) => {
      if (code === 0) resolvePromise();
      else reject(new FledgeError("FLEDGE_DOCKERFILE_BUILD", `${bin.split("/").pop()} ${args[0]} failed (exit ${code}):\n${tail.trim()}`));
    });
  });
}

/**
 * Builds a Dockerfile with the engine found on the machine and exports the image as an OCI
 * layout, for an image source to read (`oci:<layout>:latest`).
 */
export async function buildDockerfile(req: DockerfileRequest, opts: EngineOptions = {}): Promise<BuiltImage> {
  const env = opts.env ?? process.env;
  const dockerfile = resolve(req.dockerfile);
  if (!existsSync(dockerfile)) throw new FledgeError("FLEDGE_DOCKERFILE", `[source] dockerfile: ${dockerfile} does not exist`, { hint: "the path is relative to fledge.toml" });
  if (!statSync(dockerfile).isFile()) throw new FledgeError("FLEDGE_DOCKERFILE", `[source] dockerfile: ${dockerfile} is not a file`);
  const context = resolve(req.context ?? dirname(dockerfile));
  if (!existsSync(context) || !statSync(context).isDirectory())
    throw new FledgeError("FLEDGE_DOCKERFILE", `[source] context: ${context} is not a directory`, { hint: "context is the build context directory, relative to fledge.toml (default: the Dockerfile's directory)" });
  const { engine, bin } = pickEngine(env);
  const dir = await mkdtemp(join(opts.tmpDir ?? (env.TMPDIR || "/tmp"), "fledge-dockerfile-"));
  const layout = join(dir, "layout");
  const tag = `localhost/fledge-build-${randomBytes(6).toString("hex")}:latest`;
  const dispose = () => rm(dir, { recursive: true, force: true });
  const buildArgs = Object.entries(req.buildArgs ?? {}).sort(([a], [b]) => (a < b ? -1 : 1));
  try {
    switch (engine) {
      case "buildah":
      case "podman": {
        const args = ["build", "-f", dockerfile, "-t", tag];
        if (req.target) args.push("--target", req.target);
        if (req.platform) args.push("--platform", req.platform);
        for (const [k, v] of buildArgs) args.push("--build-arg", `${k}=${v}`);
        args.push(context);
        await run(bin, args, env, opts.onOutput);
        try {
          await run(bin, ["push", tag, `oci:${layout}:latest`], env, opts.onOutput);
        } finally {
          spawnSync(bin, ["rmi", "-f", tag], { env, stdio: "ignore" });
        }
        break;
      }
      case "docker": {
        const args = ["buildx", "build", "-f", dockerfile, "--output", `type=oci,dest=${join(dir, "image.tar")},tar=false`];
        if (req.target) args.push("--target", req.target);
        if (req.platform) args.push("--platform", req.platform);
        for (const [k, v] of buildArgs) args.push("--build-arg", `${k}=${v}`);
        args.push(context);
        await run(bin, args, env, opts.onOutput);
        await moveOciDir(join(dir, "image.tar"), layout);
        break;
      }
      case "buildctl": {
        const args = ["build", "--frontend", "dockerfile.v0", "--local", `context=${context}`, "--local", `dockerfile=${dirname(dockerfile)}`, "--opt", `filename=${dockerfile.split("/").pop()}`];
        if (req.target) args.push("--opt", `target=${req.target}`);
        if (req.platform) args.push("--opt", `platform=${req.platform}`);
        for (const [k, v] of buildArgs) args.push("--opt", `build-arg:${k}=${v}`);
        args.push("--output", `type=oci,dest=${layout},tar=false`);
        await run(bin, args, env, opts.onOutput);
        break;
      }
    }
    const index = JSON.parse(await readFile(join(layout, "index.json"), "utf8")) as { manifests?: unknown[] };
    if (!index.manifests?.length) throw new FledgeError("FLEDGE_DOCKERFILE_BUILD", `${engine} wrote an OCI layout without an image (${layout}/index.json lists no manifests)`);
    return { engine, layout, ref: `oci:${layout}:latest`, dispose };
  } catch (err) {
    await dispose();
    throw err;
  }
}

/** docker buildx's `tar=false` OCI output is already a directory: just check it is one. */
async function moveOciDir(from: string, to: string): Promise<void> {
  const { rename } = await import("node:fs/promises");
  await rename(from, to);
}
