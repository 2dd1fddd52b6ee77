import { stat } from "node:fs/promises";
import type { Builder } from "../builder.js";
import { inImage } from "./in-image.js";
import { PLUGIN } from "./names.js";
import { describeKind } from "@fledge/safe-fs";

/** Where kestrel releases come from. */
export const AGENT_REPO = "volantvm/volant";
export const AGENT_ASSET = "kestrel";

/** Stage 5 (default mode): kestrel at /bin/kestrel, 0755; kestrel is the `agent` input. */
export class AgentPlugin {
  readonly name = PLUGIN.agent;
  apply(builder: Builder): void {
    const { hooks } = builder;
    hooks.check.tapPromise(this.name, async (check, ctx) => {
      const agent = ctx.config.agent;
      if (ctx.config.init.mode !== "default" || agent?.source !== "local") return;
      const st = await stat(agent.path).catch(() => undefined);
      if (!st) check.problem("agent.path", `${agent.path} does not exist`, "point path at the kestrel binary, relative to fledge.toml");
      else if (!st.isFile()) check.problem("agent.path", `${agent.path} is ${describeKind(st)}, expected the kestrel binary`);
    });
    hooks.inputs.tap(this.name, (inputs, ctx) => {
      const agent = ctx.config.agent;
      if (ctx.config.init.mode !== "default" || !agent) return;
      const label = "kestrel";
      if (agent.source === "local") inputs.add({ name: "agent", label, url: agent.path });
      else if (agent.source === "http") inputs.add({ name: "agent", label, url: agent.url, ...(agent.checksum ? { sha256: agent.checksum } : {}), checksumKey: "[agent] checksum" });
      else inputs.add({ name: "agent", label, release: { repo: AGENT_REPO, version: agent.version, asset: AGENT_ASSET } });
    });
    hooks.agent.tapPromise(this.name, async (tree, ctx) => {
      if (ctx.config.init.mode !== "default" || !ctx.config.agent) return;
      const got = await ctx.inputs.file("agent");
      ctx.debug(`kestrel ${got.fromCache ? "from cache" : got.local ? "from a local file" : "fetched"}: ${got.url} sha256:${got.sha256}`);
      // In an image whose /bin is a link (`/bin -> usr/bin`), kestrel goes where the link points.
      const dest = inImage(tree, "/bin/kestrel");
      // the verified bytes themselves when fetch kept them: a shared cache entry swapped since cannot get in
      if (got.data) tree.addFile(dest, got.data, { mode: 0o755, origin: "kestrel" });
      else tree.addHostFile(dest, got.path, { mode: 0o755, origin: "kestrel" }, got.size);
    });
  }
}
