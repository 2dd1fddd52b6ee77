import { existsSync, statSync } from "node:fs";
import { mkdir } from "node:fs/promises";
import { isAbsolute, relative, resolve } from "node:path";
import { FledgeError, type Builder, type FledgePlugin, type SourceRequest } from "@fledge/core";
import { buildDockerfile, pickEngine } from "./engines.js";

export const PLUGIN_NAME = "@fledge/plugin-dockerfile";
/** The overlay kind this plugin provides: `[source] dockerfile` and `[[overlay]] kind = "dockerfile"`. */
export const KIND = "dockerfile";
/** The kind it hands the built image to (`@fledge/plugin-oci`'s image source). */
export const IMAGE_KIND = "image";

const KEYS = ["dockerfile", "context", "target", "build_args"];

interface Request {
  dockerfile: string;
  context?: string;
  target?: string;
  buildArgs: Record<string, string>;
}

/** The request's options, checked: what is wrong, at which key. */
function readRequest(req: Pick<SourceRequest, "options" | "baseDir">): { request?: Request; problems: { key: string; message: string; hint?: string }[] } {
  const o = req.options;
  const problems: { key: string; message: string; hint?: string }[] = [];
  for (const k of Object.keys(o)) if (!KEYS.includes(k)) problems.push({ key: k, message: `unknown key "${k}" for a Dockerfile source`, hint: `known: ${KEYS.join(", ")}` });
  if (typeof o.dockerfile !== "string" || !o.dockerfile) return { problems: [...problems, { key: "dockerfile", message: 'a Dockerfile source needs dockerfile = "<path>"' }] };
  const dockerfile = resolve(req.baseDir, o.dockerfile);
  if (!existsSync(dockerfile)) problems.push({ key: "dockerfile", message: `${dockerfile} does not exist`, hint: "the path is relative to fledge.toml" });
  else if (!statSync(dockerfile).isFile()) problems.push({ key: "dockerfile", message: `${dockerfile} is not a file` });
  let context: string | undefined;
  if (o.context !== undefined) {
    context = resolve(req.baseDir, String(o.context));
    if (!existsSync(context) || !statSync(context).isDirectory())
      problems.push({ key: "context", message: `${context} is not a directory`, hint: "context is the build context, relative to fledge.toml (default: the Dockerfile's directory)" });
  }
  const buildArgs: Record<string, string> = {};
  const ba = o.build_args ?? o.buildArgs;
  if (ba !== undefined) {
    if (typeof ba !== "object" || ba === null || Array.isArray(ba)) problems.push({ key: "build_args", message: "build_args must be a table of strings" });
    else
      for (const [k, v] of Object.entries(ba)) {
        if (typeof v === "string") buildArgs[k] = v;
        else problems.push({ key: `build_args.${k}`, message: "must be a string" });
      }
  }
  if (o.target !== undefined && (typeof o.target !== "string" || !o.target)) problems.push({ key: "target", message: "target must be the name of a build stage" });
  return { request: problems.length ? undefined : { dockerfile, context, target: o.target as string | undefined, buildArgs }, problems };
}

/**
 * `[source] dockerfile` (and `[[overlay]] kind = "dockerfile"`): builds the image with the
 * container engine found on the machine, then hands the OCI layout to the image source
 * (`hooks.resolveSource.for("image")`, @fledge/plugin-oci) as `oci:<layout>:latest` — so the
 * layers are verified, cached and flattened (whiteouts) exactly like a pulled image's, and the
 * image's config gives the manifest its defaults.
 */
export class DockerfilePlugin implements FledgePlugin {
  readonly name = PLUGIN_NAME;

  apply(builder: Builder): void {
    const { hooks } = builder;
    hooks.check.tapPromise(this.name, async (check, ctx) => {
      const mine = ctx.config.overlays.filter((o) => o.kind === KIND);
      if (!mine.length) return;
      for (const o of mine) {
        const { problems } = readRequest({ options: o.options, baseDir: ctx.config.rootDir });
        const key = (k: string) => (o.keyPath === "source.dockerfile" ? (k === "dockerfile" ? "source.dockerfile" : `source.${k}`) : `${o.keyPath}.${k}`);
        for (const p of problems) check.problem(key(p.key), p.message, p.hint);
      }
      // The image's config gives the workload (CMD/ENTRYPOINT, EXPOSE) once it is built: a
      // manifest.toml (or the one `fledge build ./Dockerfile` writes) need not.
      if (ctx.config.init.mode === "default") {
        const from = `the image built from ${String(mine[0]!.options.dockerfile)}`;
        ctx.manifestDefaults.expect("workload.entrypoint", from);
        ctx.manifestDefaults.expect("workload.base_url", from);
      }
      try {
        pickEngine(ctx.options.env ?? process.env);
      } catch (err) {
        const e = err as FledgeError;
        check.problem(mine[0]!.keyPath, e.message, e.hint);
      }
    });

    hooks.resolveSource.for(KIND).tapPromise(this.name, async (req, tree, ctx) => {
      const { request, problems } = readRequest(req);
      if (!request) throw new FledgeError("FLEDGE_DOCKERFILE", `${req.keyPath}: ${problems.map((p) => `${p.key}: ${p.message}`).join("; ")}`);
      const image = hooks.resolveSource.get(IMAGE_KIND);
      if (!image?.isUsed())
        throw new FledgeError("FLEDGE_DOCKERFILE", `${req.keyPath}: the built image needs an image source to unpack it, and no plugin provides "${IMAGE_KIND}"`, {
          hint: "npm install @fledge/plugin-oci",
        });
      const platform = ctx.config.output.arch === "aarch64" ? "linux/arm64" : "linux/amd64";
      ctx.info(`building ${request.dockerfile}${request.target ? ` (target ${request.target})` : ""}`);
      await mkdir(ctx.scratchDir, { recursive: true });
      const built = await buildDockerfile(
        { dockerfile: request.dockerfile, context: request.context, target: request.target, buildArgs: request.buildArgs, platform },
        { env: ctx.options.env ?? process.env, tmpDir: ctx.scratchDir, onOutput: (l) => ctx.debug(l) },
      );
      try {
        ctx.info(`built with ${built.engine}; unpacking ${built.ref}`);
        // `name`: what the manifest's `image` says it is made from — the Dockerfile, not the temporary layout
        const rel = relative(req.baseDir, request.dockerfile);
        const name = `dockerfile:${rel && !rel.startsWith("..") && !isAbsolute(rel) ? rel : request.dockerfile}`;
        const handled = await image.promise({ kind: IMAGE_KIND, options: { ref: built.ref, name }, keyPath: req.keyPath, baseDir: req.baseDir }, tree, ctx);
        if (!handled) throw new FledgeError("FLEDGE_DOCKERFILE", `${req.keyPath}: no image source took ${built.ref}`);
        return true;
      } finally {
        await built.dispose();
      }
    });
  }
}
