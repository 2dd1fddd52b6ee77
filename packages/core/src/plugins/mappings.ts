import { lstat, readdir, readlink, stat } from "node:fs/promises";
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
        const st = await stat(m.source).catch(() => undefined);
        if (!st) check.problem(`mappings.${JSON.stringify(m.written)}`, `${m.source} does not exist`, "host paths are relative to the directory of fledge.toml");
      }
    });
    hooks.mappings.tapPromise(this.name, async (t, ctx) => {
      for (const m of ctx.config.mappings) {
        const tree = t.withOrigin(`mapping:${m.written}`);
        const st = await stat(m.source); // follows a top-level link: the user named this file
        if (st.isDirectory()) await copyDir(tree, m.source, m.dest, ctx, this.name);
        else if (st.isFile()) tree.addHostFile(m.dest, m.source, mappedFileMode(st.mode, m.dest), st.size);
        else throw new FledgeError("FLEDGE_MAPPING", `mapping source ${m.source} is not a regular file or directory`);
      }
    });
  }
}

async function copyDir(tree: RootfsTree, src: string, dest: string, ctx: BuildContext, source: string): Promise<void> {
  tree.mkdir(dest, 0o755);
  const names = (await readdir(src)).sort();
  for (const name of names) {
    const from = join(src, name);
    const to = dest === "/" ? `/${name}` : `${dest}/${name}`;
    const st = await lstat(from);
    if (st.isSymbolicLink()) tree.symlink(to, await readlink(from));
    else if (st.isDirectory()) await copyDir(tree, from, to, ctx, source);
    else if (st.isFile()) tree.addHostFile(to, from, mappedFileMode(st.mode, to), st.size);
    else ctx.warn(`skipped ${from}: ${st.isSocket() ? "a socket" : st.isFIFO() ? "a fifo" : "a device node"} cannot be mapped from the host`, source);
  }
}
