import type { Builder } from "../builder.js";
import { FledgeError } from "../errors.js";
import { runTreeStages } from "../stages.js";
import { PLUGIN } from "./names.js";

/** The initramfs strategy: runs the tree stages in order over one in-memory tree, then archives it. */
export class InitramfsStrategyPlugin {
  readonly name = PLUGIN.initramfs;
  apply(builder: Builder): void {
    builder.hooks.strategy.for("initramfs").tapPromise(this.name, async (ctx) => {
      const tree = await runTreeStages(builder, ctx);
      if (!tree.has("/init")) {
        throw new FledgeError("FLEDGE_NO_INIT", "the image has no /init, so the kernel would have nothing to run", {
          hint: 'map your PID 1 to "/init" in [mappings], or set [init] path',
        });
      }
      const artifact = await builder.hooks.archive.promise(tree, ctx);
      if (!artifact) throw new FledgeError("FLEDGE_ARCHIVE", "no plugin archived the image");
      return { ...artifact, tree };
    });
  }
}
