import { lstatSync, readdirSync, readlinkSync, statfsSync, type Stats } from "node:fs";
import { stat, statfs } from "node:fs/promises";
import { describeKind, readRegularFile } from "@fledge/safe-fs";
import { join } from "node:path";
import type { Builder } from "../builder.js";
import { FledgeError } from "../errors.js";
import { mappedFileMode } from "../modes.js";
import type { RootfsTree } from "../tree.js";
import type { BuildContext } from "../context.js";
import { PLUGIN } from "./names.js";

/** Stage 6: copies `[mappings]` into the tree. A mapping wins over anything earlier at its path. */
export class MappingsPlugin {
  readonly name = PLUGIN.mappings;
  apply(builder: Builder): void {
    const { hooks } = builder;
    hooks.check.tapPromise(this.name, async (check, ctx) => {
      for (const m of ctx.config.mappings) {
        const key = `mappings.${JSON.stringify(m.written)}`;
        const st = await stat(m.source).catch(() => undefined); // never opened here: a FIFO must not block the build
        if (!st) check.problem(key, `${m.source} does not exist`, "host paths are relative to the directory of fledge.toml");
        else if (!st.isFile() && !st.isDirectory())
          check.problem(
            key,
            `${m.source} is ${describeKind(st)}, not a regular file or directory`,
            "fledge maps only regular files, directories and symlinks; write a device node into the image from a plugin (tree.device) instead",
          );
      }
    });
    hooks.mappings.tapPromise(this.name, async (t, ctx) => {
      for (const m of ctx.config.mappings) {
        const tree = t.withOrigin(`mapping:${m.written}`);
        const st = await stat(m.source); // follows a top-level link: the user named this file
        if (st.isDirectory()) await copyDir(tree, m.source, m.dest, ctx, this.name);
        else if (st.isFile()) await addFile(tree, m.source, m.dest, st, await onPseudoFs(m.source));
        else throw new FledgeError("FLEDGE_MAPPING", `mapping source ${m.source} is ${describeKind(st)}, not a regular file or directory`);
      }
    });
  }
}

/** proc, sysfs, debugfs, tracefs, securityfs, configfs: their files' sizes in stat are not their content's. */
const PSEUDO_FS = new Set([0x9fa0, 0x62656572, 0x64626720, 0x74726163, 0x73636673, 0x62656570, 0xcafe4a11]);

async function onPseudoFs(path: string): Promise<boolean> {
  try {
    return PSEUDO_FS.has((await statfs(path)).type);
  } catch {
    return false;
  }
}

function onPseudoFsSync(path: string): boolean {
  try {
    return PSEUDO_FS.has(statfsSync(path).type);
  } catch {
    return false;
  }
}

/**
 * A host file into the tree. A file whose stat size cannot be trusted — zero (as every file in
 * /proc says), or any file on a pseudo file system — is read to its end now, so a mapped
 * `/proc/cpuinfo` gets its content instead of becoming silently empty.
 */
async function addFile(tree: RootfsTree, from: string, to: string, st: Stats, pseudo: boolean): Promise<void> {
  const mode = mappedFileMode(st.mode, to);
  if (st.size > 0 && !pseudo) {
    tree.addHostFile(to, from, mode, st.size);
    return;
  }
  let data: Buffer;
  try {
    data = await readRegularFile(from, { maxBytes: 64 * 2 ** 20 });
  } catch (err) {
    throw new FledgeError("FLEDGE_MAPPING", `cannot map ${from}: ${(err as Error).message}`, {
      hint: "a file whose size the kernel reports as 0 is read to its end; this one could not be",
    });
  }
  tree.addFile(to, data, mode);
}

/** A name as it is on disk, with bytes that are not UTF-8 shown as \xNN. */
function showName(raw: Buffer): string {
  let out = "";
  for (let i = 0; i < raw.length; ) {
    const b = raw[i]!;
    const len = b < 0x80 ? 1 : b >= 0xc2 && b < 0xe0 ? 2 : b >= 0xe0 && b < 0xf0 ? 3 : b >= 0xf0 && b < 0xf5 ? 4 : 0;
    const chunk = len ? raw.subarray(i, i + len) : undefined;
    if (chunk && chunk.length === len && Buffer.from(chunk.toString("utf8"), "utf8").equals(chunk) && !chunk.toString("utf8").includes("\ufffd")) {
      out += chunk.toString("utf8");
      i += len;
    } else out += `\\x${raw[i++]!.toString(16).padStart(2, "0")}`;
  }
  return out;
}

async function copyDir(tree: RootfsTree, src: string, dest: string, ctx: BuildContext, source: string): Promise<void> {
  tree.mkdir(dest, 0o755);
  // Synchronous on purpose: listing is metadata from the dentry cache, a few µs a call, while each
  // async call is a thread-pool round trip — the real 7,000-entry tree lists in ~50 ms of CPU
  // instead of ~300 ms (issue 14, fixed cost). Nothing else runs while the tree is listed.
  const raw = readdirSync(src, { encoding: "buffer" });
  const bad = raw.filter((n) => !Buffer.from(n.toString("utf8"), "utf8").equals(n));
  if (bad.length)
    throw new FledgeError("FLEDGE_MAPPING", `${src} holds ${bad.length === 1 ? "a file whose name is" : `${bad.length} files whose names are`} not valid UTF-8: ${bad.map((n) => `"${showName(n)}"`).join(", ")}`, {
      hint: "image paths are UTF-8 (fledge.toml, the manifest and cpio listings are text); rename the file, e.g. with convmv, or leave it out of the mapped directory",
    });
  const names = raw.map((n) => n.toString("utf8")).sort();
  const pseudo = onPseudoFsSync(src);
  for (const name of names) {
    const from = join(src, name);
    const to = dest === "/" ? `/${name}` : `${dest}/${name}`;
    const st = lstatSync(from);
    if (st.isSymbolicLink()) {
      const target = readlinkSync(from, { encoding: "buffer" });
      if (!Buffer.from(target.toString("utf8"), "utf8").equals(target))
        throw new FledgeError("FLEDGE_MAPPING", `symlink ${from} points at "${showName(target)}", which is not valid UTF-8`, { hint: "image paths are UTF-8; point the link at a UTF-8 name" });
      tree.symlink(to, target.toString("utf8"));
    } else if (st.isDirectory()) await copyDir(tree, from, to, ctx, source);
    else if (st.isFile()) await addFile(tree, from, to, st, pseudo);
    else ctx.warn(`skipped ${from}: ${st.isSocket() ? "a socket" : st.isFIFO() ? "a fifo" : "a device node"} cannot be mapped from the host`, source);
  }
}
