import { stat } from "node:fs/promises";
import { initBinaryPath } from "@fledge/cinit";
import type { Builder } from "../builder.js";
import { FledgeError } from "../errors.js";
import { PLUGIN } from "./names.js";

/** Where the C init reads the path of the user's init in custom-image mode. */
export const VOLANT_INIT_FILE = "/.volant_init";

/**
 * Stage 4: /init by mode (DESIGN.md §3).
 * - default: fledge's C init, which execs /bin/kestrel;
 * - custom-host: the user's host file is /init (0755);
 * - custom-image: fledge's C init, which execs the path recorded in /.volant_init;
 * - none: nothing here; a mapping must provide /init.
 */
export class InitPlugin {
  readonly name = PLUGIN.init;
  apply(builder: Builder): void {
    const { hooks } = builder;
    hooks.beforeBuild.tapPromise(this.name, async (ctx) => {
      const { init, mappings, source, output } = ctx.config;
      if (init.mode === "default" || init.mode === "custom-image") {
        try {
          initBinaryPath(output.arch);
        } catch (err) {
          throw new FledgeError("FLEDGE_NO_INIT_BINARY", (err as Error).message);
        }
      }
      if (init.mode === "none" && !mappings.some((m) => m.dest === "/init") && !source.image && !source.dockerfile) {
        throw new FledgeError("FLEDGE_NO_INIT", "[init] none = true, but no mapping puts anything at /init", {
          hint: 'add a mapping such as "./my-supervisor" = "/init" to [mappings]',
        });
      }
    });
    hooks.init.tapPromise(this.name, async (tree, ctx) => {
      const { init, output } = ctx.config;
      switch (init.mode) {
        case "none":
          return;
        case "custom-host": {
          const st = await stat(init.hostPath);
          tree.addHostFile("/init", init.hostPath, 0o755, st.size);
          return;
        }
        case "custom-image":
          tree.addHostFile("/init", initBinaryPath(output.arch), 0o755);
          tree.addFile(VOLANT_INIT_FILE, init.imagePath + "\n", 0o644);
          return;
        case "default":
          tree.addHostFile("/init", initBinaryPath(output.arch), 0o755);
          return;
      }
    });
    // After mappings and overlays: the custom-image init must be in the image by now.
    hooks.beforeArchive.tapPromise({ name: this.name, stage: -1000 }, async (tree, ctx) => {
      const { init } = ctx.config;
      if (init.mode !== "custom-image") return;
      const node = tree.get(init.imagePath);
      if (!node) {
        throw new FledgeError(
          "FLEDGE_NO_INIT",
          `[init] path "${init.imagePath}" is neither a file on the host (relative to ${ctx.config.rootDir}) nor provided in the image by a mapping or overlay`,
          { hint: `add a mapping such as "./my-init" = "${init.imagePath}", or point path at a host file` },
        );
      }
      if (node.type !== "file" && node.type !== "symlink")
        throw new FledgeError("FLEDGE_NO_INIT", `[init] path "${init.imagePath}" is a ${node.type} in the image, not an executable file`);
    });
  }
}
