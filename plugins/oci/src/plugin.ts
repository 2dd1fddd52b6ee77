import { createHash } from "node:crypto";
import { stat } from "node:fs/promises";
import { FledgeError, type Builder, type BuildContext, type FledgePlugin, type LockEntry, type OptionsSchema, type RootfsTree, type SourceRequest } from "@fledge/core";
import { imageDefaults } from "./defaults.js";
import { isOciError } from "./errors.js";
import { formatPlatform, platformForArch } from "./image.js";
import { DEFAULT_MAX_ENTRIES, DEFAULT_MAX_UNPACKED, loadImage, type LoadedImage } from "./load.js";
import { overlayNodes, toReopenable, type OverlayNode } from "./overlay.js";
import type { OpenLayer } from "./layers.js";
import { describeReference, parseReference, type ImageReference } from "./reference.js";

export const PLUGIN_NAME = "@fledge/plugin-oci";

/**
 * Files are byte ranges of the layer tars (`hostPath` + `offset`), read through the verified
 * handles by the archive writer like host files: in parallel, large ones streamed, none held
 * whole in memory. `open()` readers of the same bytes (`ranges: false`) would put each large file
 * in one in-memory segment while it is archived.
 */
const RANGES = true;

/** Options of the plugin (`plugins = [{ use = "@fledge/plugin-oci", options = { … } }]`), also accepted per `[[overlay]]`. */
export interface OciPluginOptions {
  /** Cap on what one image unpacks to: bytes, or "512MiB", "8GiB", "2GB" (default 8 GiB). */
  max_unpacked_size?: number | string;
  /** Cap on the members of one image (default 2,000,000). */
  max_entries?: number;
}

const OVERLAY_KEYS = ["ref", "max_unpacked_size", "max_entries"] as const;

/** "8GiB", "512 MiB", "2GB", "1048576" → bytes. */
export function parseSize(v: unknown): number | undefined {
  if (typeof v === "number") return Number.isSafeInteger(v) && v > 0 ? v : undefined;
  if (typeof v !== "string") return undefined;
  const m = /^\s*(\d+(?:\.\d+)?)\s*([KMGT]i?B?|B)?\s*$/i.exec(v);
  if (!m) return undefined;
  const unit = (m[2] ?? "B").toUpperCase();
  const pow = { B: 0, K: 1, M: 2, G: 3, T: 4 }[unit[0] as "B" | "K" | "M" | "G" | "T"];
  const base = unit.includes("I") || unit.length === 1 ? 1024 : 1000;
  const n = Math.floor(Number(m[1]) * base ** pow);
  return n > 0 && Number.isSafeInteger(n) ? n : undefined;
}

const optionsSchema: OptionsSchema = {
  "~standard": {
    version: 1,
    vendor: "fledge",
    validate(value) {
      const o = (value ?? {}) as Record<string, unknown>;
      const issues: { message: string; path: { key: string }[] }[] = [];
      for (const k of Object.keys(o)) if (k !== "max_unpacked_size" && k !== "max_entries") issues.push({ message: `unknown option "${k}" (known: max_unpacked_size, max_entries)`, path: [{ key: k }] });
      if (o.max_unpacked_size !== undefined && parseSize(o.max_unpacked_size) === undefined)
        issues.push({ message: 'max_unpacked_size must be a size such as "8GiB" or a number of bytes', path: [{ key: "max_unpacked_size" }] });
      if (o.max_entries !== undefined && !(Number.isSafeInteger(o.max_entries) && (o.max_entries as number) > 0)) issues.push({ message: "max_entries must be a whole number above 0", path: [{ key: "max_entries" }] });
      return issues.length ? { issues } : { value: o };
    },
  },
} as OptionsSchema;

interface ImageRequest {
  keyPath: string;
  ref: ImageReference;
  /** Input name (fledge.lock table). */
  input: string;
  maxUnpacked: number;
  maxEntries: number;
}

/**
 * Overlays container images onto the tree: `[source] image = "…"` and `[[overlay]] kind =
 * "image"` tables, from a registry, an OCI layout (`oci:<dir>[:tag]`) or a docker-archive
 * (`docker-archive:<file.tar>`). Registry images are inputs of the build: fledge.lock pins the
 * digest each reference resolved to (and, for an index, the platform's manifest), `fledge
 * update` moves tags, `--locked` and `--offline` apply. In the default init mode the image's
 * Entrypoint + Cmd, Env, WorkingDir and exposed port become manifest defaults (manifest.toml
 * wins), and the manifest records `image` and `image_digest`.
 */
export default class OciPlugin implements FledgePlugin {
  static optionsSchema = optionsSchema;
  readonly name = PLUGIN_NAME;
  readonly #options: OciPluginOptions;
  readonly #loaded = new Set<LoadedImage>();
  /** Range nodes put into the tree, swapped for reopening readers when the layers are closed. */
  readonly #ranges: { node: Extract<OverlayNode, { hostPath: string }>; layer: OpenLayer }[] = [];

  constructor(options: OciPluginOptions = {}) {
    this.#options = options ?? {};
  }

  #requests(ctx: BuildContext, report?: (keyPath: string, message: string, hint?: string) => void): ImageRequest[] {
    const out: ImageRequest[] = [];
    for (const o of ctx.config.overlays) {
      if (o.kind !== "image") continue;
      const problem = (key: string, message: string, hint?: string) => {
        if (report) report(key, message, hint);
        else throw ctx.configError(key, message, hint);
      };
      const isTable = o.keyPath.startsWith("overlay");
      for (const k of Object.keys(o.options))
        if (!(OVERLAY_KEYS as readonly string[]).includes(k)) problem(`${o.keyPath}.${k}`, `unknown key "${k}" for an image overlay`, `the keys of kind = "image" are ${OVERLAY_KEYS.join(", ")}`);
      const refKey = isTable ? `${o.keyPath}.ref` : o.keyPath;
      const written = o.options.ref;
      if (typeof written !== "string" || !written.trim()) {
        problem(refKey, "the image reference is missing", 'write ref = "nginx:alpine" (or "oci:./dir:tag", "docker-archive:./image.tar")');
        continue;
      }
      let ref: ImageReference;
      try {
        ref = parseReference(written, ctx.config.rootDir);
      } catch (err) {
        problem(refKey, (err as Error).message, (err as { hint?: string }).hint);
        continue;
      }
      const size = o.options.max_unpacked_size ?? this.#options.max_unpacked_size;
      const maxUnpacked = size === undefined ? DEFAULT_MAX_UNPACKED : parseSize(size);
      if (maxUnpacked === undefined) {
        problem(`${o.keyPath}.max_unpacked_size`, `max_unpacked_size ${JSON.stringify(size)} is not a size`, 'write e.g. "8GiB" or a number of bytes');
        continue;
      }
      const entries = o.options.max_entries ?? this.#options.max_entries ?? DEFAULT_MAX_ENTRIES;
      if (!Number.isSafeInteger(entries) || (entries as number) <= 0) {
        problem(`${o.keyPath}.max_entries`, "max_entries must be a whole number above 0");
        continue;
      }
      const local = ref.transport !== "registry";
      const input = local ? `image:local-${createHash("sha256").update(describeReference(ref)).digest("hex").slice(0, 12)}` : `image:${describeReference(ref)}`;
      out.push({ keyPath: o.keyPath, ref, input, maxUnpacked, maxEntries: entries as number });
    }
    return out;
  }

  #raiseHint(r: ImageRequest): string {
    return r.keyPath.startsWith("overlay")
      ? `max_unpacked_size = "16GiB" in ${r.keyPath.replace(/\[(\d+)\]/, " (the $1th [[overlay]] table, from 0)")}, or options = { max_unpacked_size = "16GiB" } for ${PLUGIN_NAME} in plugins`
      : `plugins = [{ use = "${PLUGIN_NAME}", options = { max_unpacked_size = "16GiB" } }] in fledge.toml`;
  }

  /**
   * An image another plugin hands over at build time (`@fledge/plugin-dockerfile` builds one and
   * passes `{ ref: "oci:<layout>:latest", name: <the Dockerfile> }`): not a key of fledge.toml,
   * so not an input declared ahead. Only a local layout or docker-archive: a registry image must
   * be named in fledge.toml to be locked. Loaded through the same cache, limits and flattening.
   */
  async #handOff(request: SourceRequest, ctx: BuildContext, builder: Builder): Promise<LoadedImage | undefined> {
    const written = request.options.ref;
    if (typeof written !== "string" || !written.trim()) return undefined;
    const ref = parseReference(written, request.baseDir);
    if (ref.transport === "registry")
      throw new FledgeError("FLEDGE_OCI_HANDOFF", `${request.keyPath}: ${describeReference(ref)} was handed to the image source by a plugin, and a registry image must be named in fledge.toml to be locked`, {
        hint: `write [source] image = "${describeReference(ref)}" (or an [[overlay]] kind = "image")`,
      });
    const size = this.#options.max_unpacked_size;
    const maxUnpacked = size === undefined ? DEFAULT_MAX_UNPACKED : parseSize(size);
    const r: ImageRequest = { keyPath: request.keyPath, ref, input: "", maxUnpacked: maxUnpacked ?? DEFAULT_MAX_UNPACKED, maxEntries: this.#options.max_entries ?? DEFAULT_MAX_ENTRIES };
    const loaded = await loadImage({
      reference: ref,
      platform: platformForArch(ctx.config.output.arch),
      fetcher: ctx.fetcher,
      maxUnpackedBytes: r.maxUnpacked,
      maxEntries: r.maxEntries,
      raiseHint: this.#raiseHint(r),
      log: (level, message) => (level === "warn" ? ctx.warn(message, this.name) : level === "info" ? ctx.info(message, this.name) : undefined),
      onProgress: (p) => builder.hooks.progress.call({ kind: "fetch", label: p.label, current: p.current, total: p.total, done: p.done }),
    });
    this.#loaded.add(loaded);
    return loaded;
  }

  apply(builder: Builder): void {
    const { hooks } = builder;
    const name = this.name;

    hooks.check.tapPromise(name, async (check, ctx) => {
      const reqs = this.#requests(ctx, (k, m, h) => check.problem(k, m, h));
      try {
        platformForArch(ctx.config.output.arch);
      } catch (err) {
        if (reqs.length) check.problem("output.arch", (err as Error).message, (err as { hint?: string }).hint);
      }
      for (const r of reqs) {
        if (r.ref.transport === "registry") continue;
        const st = await stat(r.ref.path).catch(() => undefined);
        const what = r.ref.transport === "oci" ? "an OCI image layout directory" : "a docker-archive tar file";
        const key = r.keyPath.startsWith("overlay") ? `${r.keyPath}.ref` : r.keyPath;
        if (!st) check.problem(key, `${r.ref.path} does not exist`, `give ${what}, relative to fledge.toml`);
        else if (r.ref.transport === "oci" ? !st.isDirectory() : !st.isFile()) check.problem(key, `${r.ref.path} is not ${what}`);
        else check.readsHostPath(r.ref.path, `image ${describeReference(r.ref)}`, { dir: r.ref.transport === "oci" });
      }
      if (reqs.length && ctx.config.init.mode === "default") {
        const from = `the image's config (${reqs.map((r) => describeReference(r.ref)).join(", ")})`;
        ctx.manifestDefaults.expect("workload.entrypoint", from);
        ctx.manifestDefaults.expect("workload.base_url", from);
      }
    });

    hooks.inputs.tap(name, (inputs, ctx) => {
      const platform = platformForArch(ctx.config.output.arch);
      const pstr = formatPlatform(platform);
      const seen = new Set<string>();
      for (const r of this.#requests(ctx)) {
        if (seen.has(r.input)) continue;
        seen.add(r.input);
        const ref = r.ref;
        const reference = describeReference(ref);
        const plugin = this;
        inputs.add<LoadedImage>({
          name: r.input,
          label: reference,
          request: `${reference} for ${pstr}`,
          lock: ref.transport === "registry",
          matches: (e: LockEntry) => e.source === "oci" && e.reference === reference && e.platform === pstr && (ref.transport !== "registry" || !ref.digest || e.digest === ref.digest),
          async resolve(entry, io) {
            const loaded = await loadImage({
              reference: ref,
              platform,
              fetcher: io.fetcher,
              pin: entry?.digest ? { digest: entry.digest, ...(entry.manifest ? { manifest: entry.manifest } : {}) } : undefined,
              maxUnpackedBytes: r.maxUnpacked,
              maxEntries: r.maxEntries,
              raiseHint: plugin.#raiseHint(r),
              log: (level, message) => (level === "warn" ? io.warn(message) : level === "info" ? io.info(message) : undefined),
              onProgress: (p) => builder.hooks.progress.call({ kind: "fetch", label: p.label, current: p.current, total: p.total, done: p.done }),
            });
            if (io.refresh)
              await loaded.close(); // `fledge update`: only the lock and the cache matter
            else plugin.#loaded.add(loaded);
            const img = loaded.image;
            const lockEntry: LockEntry | undefined =
              ref.transport === "registry" ? { source: "oci", reference, platform: pstr, digest: img.digest, ...(img.fromIndex && img.manifestDigest ? { manifest: img.manifestDigest } : {}) } : undefined;
            return { entry: lockEntry, value: loaded };
          },
        });
      }
    });

    hooks.resolveSource.for("image").tapPromise(name, async (request: SourceRequest, tree: RootfsTree, ctx: BuildContext) => {
      const r = this.#requests(ctx).find((x) => x.keyPath === request.keyPath);
      const loaded = r ? (await ctx.inputs.get<LoadedImage>(r.input)).value : await this.#handOff(request, ctx, builder);
      if (!loaded) return undefined;
      const img = loaded.image;
      /** What the manifest's `image` says: the reference, or what a hand-off names (its Dockerfile). */
      const shown = r || typeof request.options.name !== "string" ? img.reference : request.options.name;
      const origins = img.layers.map((l) => `layer:${l.digest ?? l.diffID}`);
      const layerOf = new Map(loaded.layers.map((l) => [l.readPath, l]));
      try {
        for (const [path, node] of overlayNodes(loaded.fs, loaded.layers, origins, { ranges: RANGES })) {
          tree.set(path, node);
          if ("hostPath" in node) this.#ranges.push({ node, layer: layerOf.get(node.hostPath)! });
        }
      } catch (err) {
        if (isOciError(err)) throw err;
        const e = err as Error & { code?: string; hint?: string };
        throw new FledgeError(e.code ?? "FLEDGE_PATH", `${img.reference}: ${e.message}`, { cause: err, hint: e.hint });
      }
      const x = loaded.fs.report.xattrs;
      if (x.length)
        ctx.warn(
          `${img.reference}: extended attributes (file capabilities, SELinux labels, …) of ${x.length} file(s) are dropped: an initramfs (newc) cannot hold them: ${x.slice(0, 20).join(", ")}${x.length > 20 ? `, … (${x.length - 20} more)` : ""}`,
        );
      ctx.info(`${img.reference} (${img.digest}${img.fromIndex ? `, ${formatPlatform(img.platform)} ${img.manifestDigest}` : ""}): ${img.layers.length} layer(s), ${loaded.cachedLayers} unpacked from the cache`);
      if (ctx.config.init.mode === "default") {
        const from = `image ${img.reference}@${img.imageDigest}`;
        const d = imageDefaults(img.config, img.reference);
        if (d.entrypoint) ctx.manifestDefaults.set("workload.entrypoint", d.entrypoint, from);
        if (d.env) ctx.manifestDefaults.set("workload.env", d.env, from);
        if (d.workdir) ctx.manifestDefaults.set("workload.workdir", d.workdir, from);
        if (d.baseUrl) ctx.manifestDefaults.set("workload.base_url", d.baseUrl, from);
        for (const n of d.notes) ctx.info(n);
      } else if (img.config.config.Entrypoint?.length || img.config.config.Cmd?.length) {
        ctx.info(`${img.reference}: the image's Entrypoint/Cmd is not used: in the ${ctx.config.init.mode} init mode /init is what runs`);
      }
      this.#top = { reference: shown, digest: img.imageDigest };
      return true;
    });

    hooks.manifest.tap(name, (manifest) => {
      const top = this.#top;
      if (!top) return manifest;
      // The last image overlaid is the one the plugin is "made from"; a value already there wins.
      return { ...manifest, image: manifest.image ?? top.reference, image_digest: manifest.image_digest ?? top.digest };
    });

    const close = async () => {
      // Files in the tree read through the layers' handles: once those close, the nodes still in
      // the tree (for readers after the build) reopen the cached layer and verify it first.
      // The node objects are ours: they change form in place (a tree.set per node would cost a
      // scan of the whole tree each).
      for (const r of this.#ranges.splice(0)) toReopenable(r.node, r.layer);
      const all = [...this.#loaded];
      this.#loaded.clear();
      await Promise.all(all.map((l) => l.close()));
    };
    hooks.done.tapPromise(name, close);
    hooks.failed.tap(name, () => void close());
  }

  #top?: { reference: string; digest: string };
}
