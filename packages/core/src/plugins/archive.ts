import { createHash } from "node:crypto";
import { createWriteStream } from "node:fs";
import { join } from "node:path";
import { Readable, Transform } from "node:stream";
import { pipeline } from "node:stream/promises";
import { builtinCompressors, checkLevel, writeArchive, type ArchiveStats } from "@fledge/cpio";
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
      const hash = createHash("sha256");
      let size = 0;
      const tap = new Transform({
        transform(chunk: Buffer, _e, cb) {
          hash.update(chunk);
          size += chunk.length;
          cb(null, chunk);
        },
      });
      // Segmented, parallel, cached: the bytes depend on the tree only (not on cores or cache).
      const stats = {} as ArchiveStats;
      const source = writeArchive(
        entries,
        {
          mtime: ctx.options.mtime,
          compressor,
          level,
          cacheDir: join(ctx.options.cacheDir ?? defaultCacheDir(), "segments"),
          // The last step is reported once, below, with the tree's entry count.
          onProgress: (current, total) => {
            if (current < total) hooks.progress.call({ kind: "archive", label: "archive", current, total: entries.length });
          },
        },
        stats,
      );
      await pipeline(Readable.from(source, { highWaterMark: 1 }), tap, createWriteStream(temp, { flags: "wx" }));
      ctx.debug(`archive: ${stats.segments} segments (${stats.cached} from cache, ${stats.compressed} compressed on ${stats.workers} workers), ${stats.uncompressedSize} bytes of newc`, this.name);
      hooks.progress.call({ kind: "archive", label: "archive", current: entries.length, total: entries.length });
      return { kind: "initramfs", path: out, stagedPath: temp, sha256: hash.digest("hex"), size, compression: compressor.name, entries: entries.length };
    });
  }
}
