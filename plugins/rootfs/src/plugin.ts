import { randomBytes } from "node:crypto";
import { mkdir } from "node:fs/promises";
import { basename, dirname, join } from "node:path";
import { FledgeError, RootfsTree, STAGE_HOOKS, type ArtifactInfo, type BuildContext, type Builder } from "@fledge/core";
import { writeExt4, type Ext4Entry } from "@fledge/ext4";
import { planFilesystem, type FilesystemPlan } from "./filesystem.js";
import { writeSquashfs } from "./squashfs.js";

export const STRATEGY = "oci_rootfs";
/** Where kestrel goes on the disk: Volant's kestrel copies itself to the first and execs it after switch_root. */
export const KESTREL_PATHS = ["/bin/kestrel", "/usr/local/bin/kestrel"] as const;
/** The stages this strategy runs, in order: the initramfs stages less `init` (Volant's own initramfs runs kestrel as PID 1). */
export const ROOTFS_STAGES = STAGE_HOOKS.filter((s) => s !== "init");

const PLUGIN_NAME = "@fledge/plugin-rootfs";

/**
 * The `oci_rootfs` strategy: the same tree as an initramfs build — the image (overlay stage),
 * busybox, kestrel, the mappings — written as a root disk that Volant attaches as `vda` and
 * kestrel mounts read-write: a raw ext4 image with free space, by default.
 */
export class RootfsPlugin {
  readonly name = PLUGIN_NAME;

  apply(builder: Builder): void {
    const { hooks } = builder;
    const plans = new WeakMap<BuildContext, FilesystemPlan>();

    hooks.beforeBuild.tapPromise(this.name, async (ctx) => {
      if (ctx.config.strategy !== STRATEGY) return;
      const file = basename(ctx.config.file);
      if (ctx.config.init.mode !== "default")
        throw new FledgeError("FLEDGE_ROOTFS", `[init] is not used by the ${STRATEGY} strategy: Volant boots a root disk from its own initramfs, whose kestrel is PID 1 and runs the workload`, {
          hint: `remove [init] from ${file} (the workload is manifest.toml's workload.entrypoint)`,
        });
      const plan = planFilesystem(ctx.config.filesystem, file);
      for (const w of plan.warnings) ctx.warn(w, this.name);
      plans.set(ctx, plan);
    });

    hooks.strategy.for(STRATEGY).tapPromise(this.name, async (ctx) => {
      const plan = plans.get(ctx) ?? planFilesystem(ctx.config.filesystem);
      const tree = new RootfsTree();
      for (const stage of ROOTFS_STAGES) await builder.hooks[stage].promise(tree, ctx);
      if (!tree.has("/bin/kestrel") && ctx.config.agent)
        throw new FledgeError("FLEDGE_ROOTFS", "the root disk has no /bin/kestrel: Volant's kestrel execs /usr/local/bin/kestrel on it after switch_root");

      const out = ctx.options.output;
      await mkdir(dirname(out), { recursive: true });
      const temp = join(dirname(out), `.fledge-tmp-${randomBytes(6).toString("hex")}-${basename(out)}`);
      ctx.trackTemp(temp);
      const entries = treeEntries(tree);
      const label = "rootfs";
      let artifact: ArtifactInfo;
      if (plan.type === "ext4") {
        const r = await writeExt4(entries, temp, {
          mtime: ctx.options.mtime,
          freeBytes: plan.freeBytes,
          preallocate: plan.preallocate,
          onProgress: (current, total) => hooks.progress.call({ kind: "archive", label, current, total, done: current === total }),
        });
        ctx.info(
          `ext4 root disk: ${(r.size / 2 ** 20).toFixed(1)} MiB, ${(r.dataBytes / 2 ** 20).toFixed(1)} MiB of files, ${((r.freeBlocks * 4096) / 2 ** 20).toFixed(1)} MiB free (${plan.freeRule}), ${r.freeInodes} free inodes, UUID ${r.uuid}`,
          this.name,
        );
        artifact = { path: out, tempPath: temp, sha256: r.sha256, size: r.size, compression: "raw ext4", entries: tree.size };
      } else {
        const r = await writeSquashfs(entries, temp, { mtime: ctx.options.mtime, level: plan.compressionLevel, env: ctx.options.env ?? process.env });
        ctx.info(`squashfs image: ${(r.size / 2 ** 20).toFixed(1)} MiB (zstd level ${plan.compressionLevel})`, this.name);
        artifact = { path: out, tempPath: temp, sha256: r.sha256, size: r.size, compression: "squashfs zstd", entries: tree.size };
      }
      return artifact;
    });

    // kestrel at /usr/local/bin/kestrel too, after the built-in agent stage put it at /bin/kestrel.
    hooks.agent.tapPromise({ name: this.name, stage: 100 }, async (tree, ctx) => {
      if (ctx.config.strategy !== STRATEGY) return;
      const k = tree.get(KESTREL_PATHS[0]);
      if (k?.type === "file") tree.set(KESTREL_PATHS[1], { ...k });
    });

    // The manifest points at the disk: rootfs { url, checksum, format }, never initramfs.
    hooks.manifest.tapPromise(this.name, async (manifest, ctx) => {
      if (ctx.config.strategy !== STRATEGY) return manifest;
      const plan = plans.get(ctx);
      const media = manifest.initramfs ?? manifest.rootfs;
      if (!media) return manifest;
      const { initramfs: _drop, ...rest } = manifest;
      return { ...rest, rootfs: { url: media.url, checksum: media.checksum, format: "raw" } };
    });
  }
}

/**
 * The tree as writer entries. kestrel's two paths become one inode (a hardlink) when they hold
 * the same file, as kestrel replaces /usr/local/bin/kestrel by rename at boot.
 */
export function treeEntries(tree: RootfsTree): Ext4Entry[] {
  const entries = tree.toCpioEntries() as Ext4Entry[];
  const a = entries.find((e) => e.path === KESTREL_PATHS[0].slice(1));
  const b = entries.find((e) => e.path === KESTREL_PATHS[1].slice(1));
  if (a && b && a.type === "file" && b.type === "file" && a.file !== undefined && a.file === b.file && a.mode === b.mode && a.uid === b.uid && a.gid === b.gid) {
    delete b.file;
    delete b.size;
    b.linkTo = a.path;
  }
  return entries;
}
