import { open, lstat, stat } from "node:fs/promises";
import { join, posix } from "node:path";
import { initBinary } from "@fledge/cinit";
import type { FledgeConfig } from "@fledge/config";
import type { Builder } from "../builder.js";
import type { BuildContext } from "../context.js";
import { FledgeError } from "../errors.js";
import type { RootfsTree, TreeNode } from "../tree.js";
import { PLUGIN } from "./names.js";

/** Where the C init reads the path of the user's init in custom-image mode. */
export const VOLANT_INIT_FILE = "/.volant_init";

/**
 * Stage 4: /init by mode (docs/architecture.md, "Init modes").
 * - default: fledge's C init, which execs /bin/kestrel;
 * - custom-host: the user's host file is /init (0755);
 * - custom-image: fledge's C init, which execs the path recorded in /.volant_init;
 * - none: nothing here; a mapping must provide /init.
 *
 * Everything that can be known from the config and the host is checked in `check`, so a
 * broken init setup fails before anything is downloaded. What only the finished tree can tell
 * (an overlay providing the init, a plugin removing it) is checked again in `beforeArchive`.
 */
export class InitPlugin {
  readonly name = PLUGIN.init;
  apply(builder: Builder): void {
    const { hooks } = builder;
    hooks.check.tapPromise(this.name, async (check, ctx) => {
      const { init, output } = ctx.config;
      if (init.mode === "default" || init.mode === "custom-image") {
        try {
          initBinary(output.arch);
        } catch (err) {
          check.problem("output.arch", (err as Error).message, "set [output] arch to an architecture @fledge/cinit ships (x86_64, aarch64), or use [init] path / none with your own init");
        }
      }
      const overlay = ctx.config.overlays.length > 0;
      switch (init.mode) {
        case "custom-host": {
          const st = await stat(init.hostPath).catch(() => undefined);
          if (!st?.isFile()) check.problem("init.path", `${init.hostPath} ${st ? "is not a regular file" : "no longer exists"}`, "point [init] path at your init program, relative to fledge.toml");
          return;
        }
        case "custom-image":
          if (!overlay && !(await mappingProvides(ctx.config, init.imagePath))) {
            const e = missingImageInit(ctx.config, init.imagePath);
            check.problem("init.path", e.message, e.hint);
          }
          return;
        case "none":
          if (!overlay && !(await mappingProvides(ctx.config, "/init"))) {
            const e = missingNoneInit();
            check.problem("init.none", e.message, e.hint);
          }
          return;
        case "default":
          return;
      }
    });

    hooks.init.tapPromise(this.name, async (t, ctx) => {
      const { init, output } = ctx.config;
      const tree = t.withOrigin("init");
      switch (init.mode) {
        case "none":
          return;
        case "custom-host": {
          const st = await stat(init.hostPath);
          tree.addHostFile("/init", init.hostPath, 0o755, st.size);
          return;
        }
        case "custom-image":
          tree.addFile("/init", initBinary(output.arch), 0o755);
          tree.addFile(VOLANT_INIT_FILE, init.imagePath + "\n", 0o644);
          return;
        case "default":
          tree.addFile("/init", initBinary(output.arch), 0o755);
          return;
      }
    });

    // After mappings, overlays and the other plugins: what the kernel or the C init will exec must be there.
    hooks.beforeArchive.tapPromise({ name: this.name, enforce: "post" }, async (tree, ctx) => {
      const { init } = ctx.config;
      if (init.mode === "custom-host") {
        // The seed also maps the same file to /init: redundant, but the mapping gave it the
        // host file's mode (0644 for a non-executable file), and PID 1 must be executable.
        const node = tree.get("/init");
        if (node?.type === "file" && "hostPath" in node && node.hostPath === init.hostPath) node.mode = 0o755;
        else if (node) ctx.warn(`[init] path ${init.hostPath} was replaced at /init by a mapping or plugin; the image runs that instead`, this.name);
      }
      if (init.mode === "custom-image") {
        const node = tree.get(init.imagePath);
        if (!node) throw missingImageInit(ctx.config, init.imagePath);
        if (node.type !== "file" && node.type !== "symlink") throw new FledgeError("FLEDGE_NO_INIT", `[init] path "${init.imagePath}" is a ${node.type} in the image, not an executable file`);
      }
      if (init.mode === "none") {
        const node = tree.get("/init");
        if (!node) throw missingNoneInit();
        if (node.type !== "file" && node.type !== "symlink") throw new FledgeError("FLEDGE_NO_INIT", `[init] none = true, but /init is a ${node.type} in the image, not an executable file`);
      }
    });

    // Then: a script PID 1 whose interpreter is not in the image (e.g. `busybox = false` and `#!/bin/sh`).
    hooks.beforeArchive.tapPromise({ name: this.name, enforce: "post" }, async (tree, ctx) => {
      const { init } = ctx.config;
      if (init.mode === "default") return;
      const script = init.mode === "custom-image" ? init.imagePath : "/init";
      await warnMissingInterpreter(tree, script, ctx, this.name);
    });
  }
}

/** Whether some mapping puts something at `target`: a file mapped there, or a mapped directory holding it. */
async function mappingProvides(config: FledgeConfig, target: string): Promise<boolean> {
  for (const m of config.mappings) {
    if (m.dest === target) return true;
    const prefix = m.dest === "/" ? "/" : m.dest + "/";
    if (!target.startsWith(prefix)) continue;
    const st = await stat(m.source).catch(() => undefined);
    if (!st?.isDirectory()) continue;
    if (await lstat(join(m.source, target.slice(prefix.length))).catch(() => undefined)) return true;
  }
  return false;
}

function missingImageInit(config: FledgeConfig, imagePath: string): FledgeError {
  return new FledgeError("FLEDGE_NO_INIT", `[init] path "${imagePath}" is neither a file on the host (looked for ${join(config.rootDir, imagePath)}) nor provided in the image by a mapping or overlay`, {
    hint: `add a mapping such as "./my-init" = "${imagePath}", or point path at a host file relative to fledge.toml`,
  });
}

function missingNoneInit(): FledgeError {
  return new FledgeError("FLEDGE_NO_INIT", "[init] none = true, but no mapping puts anything at /init", {
    hint: 'add a mapping such as "./my-supervisor" = "/init" to [mappings]',
  });
}

/** Follows symlinks inside the tree (relative or absolute), up to 40 hops as the kernel does. */
function resolveInTree(tree: RootfsTree, path: string): { path: string; node: TreeNode } | undefined {
  let cur = posix.normalize(path);
  for (let hops = 0; hops < 40; hops++) {
    // Resolve links in parent directories too (e.g. /usr/bin -> /bin).
    const parts = cur.split("/").filter(Boolean);
    let resolved = "";
    let redirected = false;
    for (let i = 0; i < parts.length; i++) {
      const p = `${resolved}/${parts[i]}`;
      const node = tree.has(p) ? tree.get(p) : undefined;
      if (!node) return undefined;
      if (node.type === "symlink") {
        const base = node.target.startsWith("/") ? node.target : posix.join(resolved || "/", node.target);
        cur = posix.normalize(posix.join(base, ...parts.slice(i + 1)));
        redirected = true;
        break;
      }
      if (i === parts.length - 1) return { path: p, node };
      resolved = p;
    }
    if (!redirected) return undefined;
  }
  return undefined;
}

/** The `#!` interpreter of a file in the tree, or undefined when it is not a script. */
async function shebang(node: TreeNode): Promise<string | undefined> {
  if (node.type !== "file") return undefined;
  let head: Buffer;
  if ("data" in node) head = Buffer.from(node.data.subarray(0, 256));
  else if ("open" in node) {
    const parts: Buffer[] = [];
    let n = 0;
    for await (const chunk of node.open()) {
      parts.push(Buffer.from(chunk));
      n += chunk.length;
      if (n >= 256) break;
    }
    head = Buffer.concat(parts).subarray(0, 256);
  } else {
    const fh = await open(node.hostPath, "r");
    try {
      // a byte range of a host file (an image layer's member) starts at its offset
      const buf = Buffer.alloc(Math.min(256, node.size ?? 256));
      const { bytesRead } = await fh.read(buf, 0, buf.length, node.offset ?? 0);
      head = buf.subarray(0, bytesRead);
    } finally {
      await fh.close();
    }
  }
  if (head[0] !== 0x23 || head[1] !== 0x21) return undefined; // "#!"
  const line = (head.subarray(2).toString("latin1").split("\n")[0] ?? "").trim();
  return line.split(/[ \t]+/)[0] || undefined;
}

async function warnMissingInterpreter(tree: RootfsTree, script: string, ctx: BuildContext, source: string): Promise<void> {
  const found = resolveInTree(tree, script);
  if (!found) return;
  const interp = await shebang(found.node);
  if (!interp?.startsWith("/")) return;
  const target = resolveInTree(tree, interp);
  if (target && target.node.type === "file") return;
  const why = ctx.config.busybox.include ? "" : " (busybox is left out: [source] busybox = false)";
  ctx.warn(`${script} is a script for ${interp}, but ${interp} is not in the image${why}: the kernel will fail to run it`, source);
}
