import type { Builder } from "./builder.js";
import type { BuildContext } from "./context.js";
import { TREE_STAGES, type TreeStage } from "./hooks.js";
import { RootfsTree } from "./tree.js";

export interface TreeStagesOptions {
  /** The tree to build on (default: a new one whose scratch directory is the build's). */
  tree?: RootfsTree;
  /** The stages to run, in this order (default all of `TREE_STAGES`). */
  stages?: readonly TreeStage[];
}

/**
 * Runs the tree stages (skeleton, overlay, busybox, init, agent, mappings, beforeArchive) over
 * one tree, as the initramfs strategy does, and returns it. A strategy that writes something
 * other than a cpio (a disk image) calls this from its `hooks.strategy.for(name)` tap, then
 * writes `ctx.outputs.artifact.stagedPath` from the tree.
 */
export async function runTreeStages(builder: Builder, ctx: BuildContext, opts: TreeStagesOptions = {}): Promise<RootfsTree> {
  const tree = opts.tree ?? new RootfsTree({ scratchDir: ctx.scratchDir });
  for (const stage of opts.stages ?? TREE_STAGES) await builder.hooks[stage].promise(tree, ctx);
  return tree;
}
