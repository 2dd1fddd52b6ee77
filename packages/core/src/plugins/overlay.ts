import type { Builder } from "../builder.js";
import type { SourceRequest } from "../context.js";
import { FledgeError } from "../errors.js";
import { PLUGIN } from "./names.js";

/**
 * Stage 2: each rootfs source of fledge.toml, in order (`[source] image`, `[source]
 * dockerfile`, then every `[[overlay]]`), handed to `hooks.resolveSource.for(kind)`. Pre-flight
 * has already checked that a plugin provides every kind.
 */
export class OverlayPlugin {
  readonly name = PLUGIN.overlay;
  apply(builder: Builder): void {
    builder.hooks.overlay.tapPromise(this.name, async (tree, ctx) => {
      for (const o of ctx.config.overlays) {
        const request: SourceRequest = { kind: o.kind, options: o.options, keyPath: o.keyPath, baseDir: ctx.config.rootDir };
        const hook = builder.hooks.resolveSource.get(o.kind);
        const handled = hook ? await hook.promise(request, tree, ctx) : undefined;
        if (handled !== true)
          throw new FledgeError("FLEDGE_OVERLAY", `${o.keyPath}: no plugin handled the "${o.kind}" source`, {
            hint: `a tap on hooks.resolveSource.for(${JSON.stringify(o.kind)}) must overlay the source and return true`,
          });
        ctx.debug(`${o.keyPath}: "${o.kind}" source overlaid`, this.name);
      }
    });
  }
}
