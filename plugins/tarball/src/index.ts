import { createHash } from "node:crypto";
import { createReadStream } from "node:fs";
import { stat } from "node:fs/promises";
import { isAbsolute, posix, resolve } from "node:path";
import { Readable, Transform } from "node:stream";
import { createGunzip } from "node:zlib";
import { Decompress } from "fzstd";
import { extract, type Header } from "tar-stream";
import { FledgeError, type Builder, type BuildContext, type FetchedFile, type FledgePlugin, type OptionsSchema, type RootfsTree, type SourceRequest } from "@fledge/core";

export const PLUGIN_NAME = "@fledge/plugin-tarball";

/** One `[[overlay]] kind = "tarball"` table, as written in fledge.toml. */
export interface TarballRequest {
  /** A host file, relative to fledge.toml (read in place, not locked). */
  path?: string;
  /** An http(s) URL: downloaded through fledge's cache and mirrors, pinned in fledge.lock. */
  url?: string;
  /** Expected sha256 of the tarball file (`sha256:<hex>` or hex). */
  sha256?: string;
  /** Where in the image the archive's root goes (default `/`). */
  dest?: string;
  /** Leading path components to drop from every name, as `tar --strip-components` (default 0). */
  strip_components?: number;
  /** `"archive"` (default): keep the archive's uid/gid; `"root"`: everything 0:0. */
  owner?: "archive" | "root";
}

const KEYS = ["path", "url", "sha256", "dest", "strip_components", "owner"] as const;

/** The problems of one request, as `[key, message, hint?]`. */
export function requestProblems(o: Record<string, unknown>): [string, string, string?][] {
  const out: [string, string, string?][] = [];
  for (const k of Object.keys(o)) if (!(KEYS as readonly string[]).includes(k)) out.push([k, `unknown key \`${k}\` for a tarball source`, `a tarball source takes: ${KEYS.join(", ")}`]);
  const str = (k: string) => o[k] === undefined || (typeof o[k] === "string" && (o[k] as string) !== "");
  for (const k of ["path", "url", "sha256", "dest"]) if (!str(k)) out.push([k, "must be a non-empty string"]);
  if ((o.path === undefined) === (o.url === undefined)) out.push(["", "give exactly one of `path` (a host file) and `url`", 'path = "./rootfs.tar.gz" or url = "https://…/rootfs.tar.zst"']);
  if (typeof o.url === "string" && !/^https?:\/\//i.test(o.url)) out.push(["url", `"${o.url}" is not an http(s) URL`, "a host file goes in `path`"]);
  if (typeof o.sha256 === "string" && !/^(sha256:)?[0-9a-fA-F]{64}$/.test(o.sha256)) out.push(["sha256", 'must be 64 hex digits, optionally prefixed "sha256:"']);
  if (typeof o.dest === "string" && (!o.dest.startsWith("/") || o.dest.split("/").includes(".."))) out.push(["dest", `"${o.dest}" must be an absolute path in the image without ".."`]);
  if (o.strip_components !== undefined && !(Number.isInteger(o.strip_components) && (o.strip_components as number) >= 0)) out.push(["strip_components", "must be a whole number, 0 or more"]);
  if (o.owner !== undefined && o.owner !== "archive" && o.owner !== "root") out.push(["owner", 'must be "archive" or "root"']);
  return out;
}

/** The input name of a tarball source in fledge.lock. */
const inputName = (req: TarballRequest) => `tarball:${req.url ?? req.path}`;

/** The origin recorded on every node a tarball adds. */
const originOf = (req: TarballRequest) => `tarball:${req.url ?? req.path}`;

/** What a tarball's first bytes say it is. */
export function sniff(head: Uint8Array): "gzip" | "zstd" | "tar" | { unsupported: string } {
  if (head[0] === 0x1f && head[1] === 0x8b) return "gzip";
  if (head[0] === 0x28 && head[1] === 0xb5 && head[2] === 0x2f && head[3] === 0xfd) return "zstd";
  if (head[0] === 0xfd && head[1] === 0x37 && head[2] === 0x7a && head[3] === 0x58 && head[4] === 0x5a) return { unsupported: "xz" };
  if (head[0] === 0x42 && head[1] === 0x5a && head[2] === 0x68) return { unsupported: "bzip2" };
  return "tar";
}

/** zstd frames, decompressed as they stream (pure JS: nothing to install). */
function zstdStream(): Transform {
  let out!: Transform;
  const d = new Decompress((chunk) => void out.push(Buffer.from(chunk.buffer, chunk.byteOffset, chunk.byteLength)));
  out = new Transform({
    transform(chunk: Buffer, _e, cb) {
      try {
        d.push(chunk);
        cb();
      } catch (err) {
        cb(new Error(`zstd: ${(err as Error).message}`));
      }
    },
    flush(cb) {
      try {
        d.push(new Uint8Array(0), true);
        cb();
      } catch (err) {
        cb(new Error(`zstd: ${(err as Error).message}`));
      }
    },
  });
  return out;
}

/**
 * A tar member's name as a path in the image: leading `/` and `./` dropped, `.` and empty
 * components removed, `strip` components stripped, then put under `dest`. A name with a `..`
 * component would leave the image root and is refused. Undefined when nothing is left.
 */
export function imageName(name: string, dest: string, strip: number, what: string): string | undefined {
  const parts = name.split("/").filter((p) => p !== "" && p !== ".");
  if (parts.includes("..")) throw new FledgeError("FLEDGE_TARBALL_ESCAPE", `${what}: the member "${name}" would leave the image root ("..")`, { hint: "nothing of this archive is used; fix the archive" });
  if (name.includes("\0")) throw new FledgeError("FLEDGE_TARBALL", `${what}: a member name holds a NUL byte`);
  const kept = parts.slice(strip);
  if (!kept.length) return undefined;
  return posix.join(dest, ...kept);
}

const MODE_BITS = 0o7777;

/**
 * Overlays one tarball into the tree, streaming (file data goes to the tree as it comes: small
 * files in memory, large ones spilled to the build's scratch directory).
 */
export async function overlayTarball(tree: RootfsTree, input: Readable, req: TarballRequest, what: string): Promise<number> {
  const dest = req.dest ?? "/";
  const strip = req.strip_components ?? 0;
  const root = req.owner === "root";
  const ex = extract();
  let count = 0;
  // Sniff the first bytes, then decompress accordingly.
  const reader = input[Symbol.asyncIterator]();
  const first = await reader.next();
  const head: Buffer = first.done ? Buffer.alloc(0) : Buffer.from(first.value as Buffer);
  const kind = sniff(head);
  if (typeof kind === "object") throw new FledgeError("FLEDGE_TARBALL", `${what} is ${kind.unsupported}-compressed`, { hint: "fledge reads .tar, .tar.gz and .tar.zst" });
  const rest = Readable.from(
    (async function* () {
      if (head.length) yield head;
      for (;;) {
        const r = await reader.next();
        if (r.done) return;
        yield r.value as Buffer;
      }
    })(),
  );
  const decoded = kind === "gzip" ? rest.pipe(createGunzip()) : kind === "zstd" ? rest.pipe(zstdStream()) : rest;
  decoded.on("error", (err) => ex.destroy(err));
  decoded.pipe(ex);
  try {
    for await (const entry of ex) {
      const h = entry.header as Header;
      const path = imageName(h.name, dest, strip, what);
      const owner = root ? {} : { uid: h.uid ?? 0, gid: h.gid ?? 0 };
      const mode = (h.mode ?? 0o644) & MODE_BITS;
      try {
        if (!path) {
          entry.resume();
          continue;
        }
        switch (h.type) {
          case "file":
          case "contiguous-file":
            await tree.addStream(path, entry as unknown as AsyncIterable<Uint8Array>, { mode, size: h.size ?? 0, ...owner });
            break;
          case "directory":
            tree.mkdir(path, { mode, ...owner });
            entry.resume();
            break;
          case "symlink":
            // kept as written and never followed: a later member under it is refused by the tree
            tree.symlink(path, h.linkname ?? "", owner);
            entry.resume();
            break;
          case "link": {
            const target = imageName(h.linkname ?? "", dest, strip, what);
            if (!target) throw new FledgeError("FLEDGE_TARBALL", `${what}: the hard link "${h.name}" points at "${h.linkname}", which is stripped away`);
            tree.hardlink(path, target);
            entry.resume();
            break;
          }
          case "character-device":
          case "block-device":
            tree.device(path, h.type === "character-device" ? "char" : "block", h.devmajor ?? 0, h.devminor ?? 0, { mode, ...owner });
            entry.resume();
            break;
          case "fifo":
            tree.fifo(path, { mode, ...owner });
            entry.resume();
            break;
          default:
            throw new FledgeError("FLEDGE_TARBALL", `${what}: the member "${h.name}" is a ${h.type}, which an image cannot hold`, { hint: "fledge takes files, directories, symlinks, hard links, devices and fifos" });
        }
        count++;
      } catch (err) {
        entry.resume();
        const e = err as Error & { code?: string; hint?: string };
        if (e.code?.startsWith("FLEDGE_TARBALL")) throw err;
        throw new FledgeError(e.code ?? "FLEDGE_TARBALL", `${what}: the member "${h.name}": ${e.message}`, { cause: err, ...(e.hint ? { hint: e.hint } : {}) });
      }
    }
  } catch (err) {
    const e = err as Error & { code?: string };
    if (e.code?.startsWith("FLEDGE_")) throw err;
    throw new FledgeError("FLEDGE_TARBALL", `${what} is not a readable tar archive: ${e.message}`, { cause: err, hint: "fledge reads .tar, .tar.gz and .tar.zst" });
  }
  return count;
}

/** Options of the plugin itself (none yet); the sources' options are their [[overlay]] tables. */
export type TarballPluginOptions = Record<string, never>;

const optionsSchema: OptionsSchema = {
  "~standard": {
    validate: (value) =>
      value && typeof value === "object" && Object.keys(value).length
        ? { issues: Object.keys(value).map((k) => ({ message: `unknown option \`${k}\`: the sources' options go in their [[overlay]] tables`, path: [{ key: k }] })) }
        : { value: {} },
  },
};

/**
 * `[[overlay]] kind = "tarball"`: a tar archive (plain, gzip or zstd) from a host file or a URL
 * overlaid into the image. A URL is an input of the build (cached, verified, locked); names are
 * sanitised so nothing leaves the image root; symlinks are kept and never followed; hard links,
 * devices and fifos are kept; owners and permission bits come from the archive (`owner = "root"`
 * makes everything 0:0); timestamps are the build's.
 */
export class TarballPlugin implements FledgePlugin {
  static optionsSchema = optionsSchema;
  readonly name = PLUGIN_NAME;

  constructor(_options: TarballPluginOptions = {}) {}

  apply(builder: Builder): void {
    const { hooks } = builder;
    const requests = (ctx: BuildContext) => ctx.config.overlays.filter((o) => o.kind === "tarball");

    hooks.check.tapPromise(this.name, async (check, ctx) => {
      for (const o of requests(ctx)) {
        const problems = requestProblems(o.options);
        for (const [k, msg, hint] of problems) check.problem(k ? `${o.keyPath}.${k}` : o.keyPath, msg, hint);
        const req = o.options as TarballRequest;
        if (problems.length || req.path === undefined) continue;
        const file = isAbsolute(req.path) ? req.path : resolve(ctx.config.rootDir, req.path);
        const st = await stat(file).catch(() => undefined);
        if (!st) check.problem(`${o.keyPath}.path`, `${file} does not exist`, "paths are relative to fledge.toml");
        else if (!st.isFile()) check.problem(`${o.keyPath}.path`, `${file} is not a regular file`);
        else check.readsHostPath(file, `the tarball ${req.path} (${o.keyPath})`);
      }
    });

    hooks.inputs.tap(this.name, (inputs, ctx) => {
      const seen = new Set<string>();
      for (const o of requests(ctx)) {
        const req = o.options as TarballRequest;
        const name = inputName(req);
        if (seen.has(name)) continue;
        seen.add(name);
        inputs.add({ name, label: req.url ?? req.path!, url: req.url ?? req.path!, ...(req.sha256 ? { sha256: req.sha256 } : {}), checksumKey: `${o.keyPath} sha256` });
      }
    });

    hooks.resolveSource.for("tarball").tapPromise(this.name, async (request: SourceRequest, t, ctx) => {
      const req = request.options as TarballRequest;
      const file: FetchedFile = await ctx.inputs.file(inputName(req));
      const what = `${request.keyPath} (${req.url ?? req.path})`;
      let n: number;
      if (file.data) {
        // the verified bytes fetch kept (up to 64 MiB): a shared cache entry swapped since cannot get in
        n = await overlayTarball(t.withOrigin(originOf(req)), Readable.from([Buffer.from(file.data.buffer, file.data.byteOffset, file.data.byteLength)]), req, what);
      } else {
        // streamed from the file and hashed on the way: bytes other than the verified ones fail the build
        const seen = createHash("sha256");
        let size = 0;
        const hashed = createReadStream(file.path).pipe(
          new Transform({
            transform(chunk: Buffer, _e, cb) {
              seen.update(chunk);
              size += chunk.length;
              cb(null, chunk);
            },
          }),
        );
        n = await overlayTarball(t.withOrigin(originOf(req)), hashed, req, what);
        const digest = seen.digest("hex");
        if (size !== file.size || digest !== file.sha256)
          throw new FledgeError("FLEDGE_CHECKSUM", `${what}: ${file.path} changed while it was read (sha256 ${digest}, ${size} bytes; verified: ${file.sha256}, ${file.size} bytes)`, {
            hint: "something else writes to this file or to fledge's cache; build again",
          });
      }
      ctx.debug(`${what}: ${n} members overlaid at ${req.dest ?? "/"}`);
      return true;
    });
  }
}

export default TarballPlugin;
