import { join } from "node:path";
import { builtinCompressors, checkLevel, writeArchiveFile, type ArchiveStats } from "@fledge/cpio";
import { defaultCacheDir } from "@fledge/fetch";
import type { Builder } from "../builder.js";
import { FledgeError } from "../errors.js";
import { tappedKeys } from "../hooks.js";
import { PLUGIN } from "./names.js";

/** Registers the built-in compressors under hooks.compressor. */
export class CompressionPlugin {
  readonly name = PLUGIN.compression;
  apply(builder: Builder): void {
    for (const c of Object.values(builtinCompressors)) builder.hooks.compressor.for(c.name).tap(this.name, () => c);
  }
}

/** Stage 8: newc straight from the tree, compressed, into a temp file beside the output. */
export class ArchivePlugin {
  readonly name = PLUGIN.archive;
  apply(builder: Builder): void {
    const { hooks } = builder;
    hooks.check.tap(this.name, (check, ctx) => {
      const name = ctx.options.compression ?? ctx.config.output.compression;
      // A value from the command line is reported as such; one from fledge.toml at its line.
      const report = (flag: boolean, keyPath: string, option: string, message: string, hint: string) =>
        flag ? check.issue({ file: "(command line)", keyPath: option, message, hint }) : check.problem(keyPath, message, hint);
      if (!hooks.compressor.get(name)?.isUsed()) {
        report(ctx.options.compression !== undefined, "output.compression", "--compression", `unknown compression "${name}"`, `choose one of: ${tappedKeys(hooks.compressor).join(", ")}`);
        return;
      }
      const compressor = hooks.compressor.get(name)!.call();
      const level = ctx.options.level ?? ctx.config.output.level;
      if (compressor && level !== undefined) {
        try {
          checkLevel(compressor, level);
        } catch (err) {
          const range = compressor.levels ? `levels ${compressor.levels.min}–${compressor.levels.max}` : "no levels";
          report(ctx.options.level !== undefined, "output.level", "--level", (err as Error).message, `${compressor.name} takes ${range}`);
        }
      }
    });
    hooks.archive.tapPromise(this.name, async (tree, ctx) => {
      const name = ctx.options.compression ?? ctx.config.output.compression;
      const compressor = hooks.compressor.get(name)?.call();
      if (!compressor) throw new FledgeError("FLEDGE_COMPRESSION", `unknown compression "${name}"`);
      const level = ctx.options.level ?? ctx.config.output.level ?? compressor.defaultLevel;
      const { path: out, stagedPath: temp } = ctx.outputs.artifact;
      const entries = tree.toCpioEntries();
      // Segmented, parallel, cached: the bytes depend on the tree only (not on cores or cache).
      // Written straight to the temp file and hashed on the way, with buffers reused.
      const stats = {} as ArchiveStats;
      const { size, sha256 } = await writeArchiveFile(
        entries,
        {
          mtime: ctx.options.mtime,
          compressor,
          level,
          cacheDir: join(ctx.options.cacheDir ?? defaultCacheDir(), "segments"),
          verify: ctx.options.verify,
          // The last step is reported once, below, with the tree's entry count.
          onProgress: (current, total) => {
            if (current < total) hooks.progress.call({ kind: "archive", label: "archive", current, total: entries.length });
          },
        },
        temp,
        stats,
        "wx",
      );
      ctx.debug(
        `archive: ${stats.segments} segments (${stats.cached} from cache, ${stats.compressed} compressed on ${stats.workers} workers), ${stats.uncompressedSize} bytes of newc; ${stats.statHits} files unchanged by the stat cache, ${stats.hashed} read and hashed`,
        this.name,
      );
      if (stats.cacheSkipped) ctx.warn(`segment cache not used: ${stats.cacheSkipped}`, this.name);
      if (stats.rejected)
        ctx.warn(
          `${stats.rejected} segment-cache ${stats.rejected === 1 ? "entry was" : "entries were"} not written by you for this content (forged, swapped or damaged); recomputed, the artifact is unaffected`,
          this.name,
        );
      hooks.progress.call({ kind: "archive", label: "archive", current: entries.length, total: entries.length });
      return { kind: "initramfs", path: out, stagedPath: temp, sha256, size, compression: compressor.name, entries: entries.length };
    });
  }
}
