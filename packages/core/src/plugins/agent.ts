import { stat } from "node:fs/promises";
import type { Builder } from "../builder.js";
import { FledgeError } from "../errors.js";
import { PLUGIN } from "./names.js";

/** Stage 5 (default mode): kestrel at /bin/kestrel, 0755. */
export class AgentPlugin {
  readonly name = PLUGIN.agent;
  apply(builder: Builder): void {
    const { hooks } = builder;
    hooks.beforeBuild.tapPromise(this.name, async (ctx) => {
      const agent = ctx.config.agent;
      if (agent?.source !== "local") return;
      let st;
      try {
        st = await stat(agent.path);
      } catch {
        throw new FledgeError("FLEDGE_AGENT", `[agent] path: ${agent.path} does not exist`, { hint: "point path at the kestrel binary, relative to fledge.toml" });
      }
      if (!st.isFile()) throw new FledgeError("FLEDGE_AGENT", `[agent] path: ${agent.path} is a directory, expected the kestrel binary`);
    });
    hooks.agent.tapPromise(this.name, async (tree, ctx) => {
      const agent = ctx.config.agent;
      if (ctx.config.init.mode !== "default" || !agent) return;
      let path: string;
      let size: number;
      if (agent.source === "local") {
        path = agent.path;
        size = (await stat(path)).size;
      } else if (agent.source === "http") {
        if (!agent.checksum) ctx.warn(`kestrel from ${agent.url} has no [agent] checksum: its content is not verified`, this.name);
        const got = await ctx.fetcher.fetch({ url: agent.url, sha256: agent.checksum, label: "kestrel" });
        path = got.path;
        size = got.size;
      } else {
        throw new FledgeError("FLEDGE_AGENT", `[agent] source_strategy "release" (${agent.version}) cannot be resolved yet: GitHub release resolution is not implemented in this build`, {
          hint: 'use source_strategy = "local" with a kestrel binary, or "http" with its url',
        });
      }
      tree.addHostFile("/bin/kestrel", path, 0o755, size);
    });
  }
}
