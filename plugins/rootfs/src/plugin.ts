import { basename } from "node:path";
import { FledgeError, runTreeStages, Stage, TREE_STAGES, type ArtifactInfo, type Builder, type FledgePlugin, type RootfsTree } from "@fledge/core";
import { writeExt4, type Ext4Entry } from "@fledge/ext4";
import { planFilesystem, type FilesystemPlan } from "./filesystem.js";
import { findMksquashfs, MKSQUASHFS_HINT, writeSquashfs } from "./squashfs.js";

export const STRATEGY = "oci_rootfs";
/** Where kestrel goes on the disk: Volant's kestrel copies itself to the second and execs it after switch_root. */
export const KESTREL_PATHS = ["/bin/kestrel", "/usr/local/bin/kestrel"] as const;
/** The stages this strategy runs, in order: the tree stages less `init` (Volant's own initramfs runs kestrel as PID 1). */
export const ROOTFS_STAGES = TREE_STAGES.filter((s) => s !== "init");

const PLUGIN_NAME = "@fledge/plugin-rootfs";

/**
 * The `oci_rootfs` strategy: the same tree as an initramfs build — the image (overlay stage),
 * busybox, kestrel, the mappings — written as a root disk that Volant attaches as `vda` and
 * kestrel mounts read-write: a raw ext4 image with free space, by default.
 */
export class RootfsPlugin implements FledgePlugin {
  readonly name = PLUGIN_NAME;

  apply(builder: Builder): void {
    const { hooks } = builder;
    let plan: FilesystemPlan | undefined;

    // Pre-flight (fledge build, validate, update): every finding at its key, before any work.
    hooks.check.tapPromise(this.name, async (check, ctx) => {
      if (ctx.config.strategy !== STRATEGY) return;
      if (ctx.config.init.mode !== "default")
        check.problem(
          "init",
          `[init] is not used by the ${STRATEGY} strategy: Volant boots a root disk from its own initramfs, whose kestrel is PID 1 and runs the workload`,
          "remove [init] (the workload is manifest.toml's workload.entrypoint)",
        );
      try {
        plan = planFilesystem(ctx.config.filesystem, basename(ctx.config.file));
      } catch (err) {
        const e = err as FledgeError & { keyPath?: string };
        check.problem(e.keyPath ?? "filesystem", e.message, e.hint);
        return;
      }
      for (const w of plan.warnings) check.warning(w.keyPath, w.message, w.hint);
      if (plan.type === "squashfs" && !findMksquashfs(ctx.options.env ?? process.env)) check.problem("filesystem.type", 'type = "squashfs" needs mksquashfs, which is not installed', MKSQUASHFS_HINT);
    });

    hooks.strategy.for(STRATEGY).tapPromise(this.name, async (ctx) => {
      const fs = plan ?? planFilesystem(ctx.config.filesystem);
      const tree = await runTreeStages(builder, ctx, { stages: ROOTFS_STAGES });
      if (!tree.has(KESTREL_PATHS[0]) && ctx.config.agent) throw new FledgeError("FLEDGE_ROOTFS", "the root disk has no /bin/kestrel: Volant's kestrel execs /usr/local/bin/kestrel on it after switch_root");

      const out = ctx.outputs.artifact;
      const entries = treeEntries(tree);
      if (fs.type === "ext4") {
        const r = await writeExt4(entries, out.stagedPath, {
          mtime: ctx.options.mtime,
          freeBytes: fs.freeBytes,
          preallocate: fs.preallocate,
          onProgress: (current, total) => hooks.progress.call({ kind: "archive", label: "rootfs", current, total, done: current === total }),
        });
        ctx.info(
          `ext4 root disk: ${(r.size / 2 ** 20).toFixed(1)} MiB, ${(r.dataBytes / 2 ** 20).toFixed(1)} MiB of files, ${((r.freeBlocks * 4096) / 2 ** 20).toFixed(1)} MiB free (${fs.freeRule}), ${r.freeInodes} free inodes, UUID ${r.uuid}`,
        );
        return artifact(out, r.sha256, r.size, "raw ext4", tree);
      }
      const r = await writeSquashfs(entries, out.stagedPath, { mtime: ctx.options.mtime, level: fs.compressionLevel, env: ctx.options.env ?? process.env });
      ctx.info(`squashfs image: ${(r.size / 2 ** 20).toFixed(1)} MiB (zstd level ${fs.compressionLevel})`);
      return artifact(out, r.sha256, r.size, "squashfs zstd", tree);
    });

    // kestrel at /usr/local/bin/kestrel too, after the built-in agent stage put it at /bin/kestrel.
    hooks.agent.tapPromise({ name: this.name, stage: Stage.POST }, async (tree, ctx) => {
      if (ctx.config.strategy !== STRATEGY) return;
      if (tree.get(KESTREL_PATHS[0])?.type === "file") tree.hardlink(KESTREL_PATHS[1], KESTREL_PATHS[0]);
    });
  }
}

function artifact(out: { path: string; stagedPath: string }, sha256: string, size: number, compression: string, tree: RootfsTree): ArtifactInfo {
  return { kind: "rootfs", format: "raw", path: out.path, stagedPath: out.stagedPath, sha256, size, compression, entries: tree.size, tree };
}

/** The tree as writer entries (the shape of `@fledge/cpio`'s entries, which `@fledge/ext4` takes too). */
export function treeEntries(tree: RootfsTree): Ext4Entry[] {
  return tree.toCpioEntries() as Ext4Entry[];
}
