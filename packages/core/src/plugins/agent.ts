import { stat } from "node:fs/promises";
import type { FledgeConfig } from "@fledge/config";
import { FetchError, normalizeSha256, resolveGitHubRelease } from "@fledge/fetch";
import type { Builder } from "../builder.js";
import { FledgeError } from "../errors.js";
import { resolvedInput, type InputSpec } from "./inputs.js";
import { PLUGIN } from "./names.js";
import { describeKind } from "@fledge/safe-fs";

/** Where kestrel releases come from. */
export const AGENT_REPO = "volantvm/volant";
export const AGENT_ASSET = "kestrel";

/** The kestrel agent as an input of the build (default mode only). */
export function agentInput(config: FledgeConfig): InputSpec | undefined {
  const agent = config.agent;
  if (config.init.mode !== "default" || !agent) return undefined;
  const label = "kestrel";
  if (agent.source === "local") {
    return {
      key: "agent",
      label,
      lockable: false,
      request: agent.path,
      matches: () => false,
      async resolve(fetcher) {
        return { key: "agent", label, fetched: await fetcher.fetch({ url: agent.path, label }) };
      },
    };
  }
  if (agent.source === "http") {
    const remote = /^https?:\/\//i.test(agent.url);
    return {
      key: "agent",
      label,
      lockable: remote,
      request: agent.url,
      matches: (e) => e.source === "http" && e.url === agent.url && (!agent.checksum || normalizeSha256(agent.checksum) === e.sha256),
      async resolve(fetcher, entry, opts) {
        if (!agent.checksum) opts.warn(`kestrel from ${agent.url} has no [agent] checksum: its content is not verified${remote ? " (fledge.lock pins what was downloaded)" : ""}`);
        const fetched = await fetcher.fetch({ url: agent.url, sha256: agent.checksum ?? entry?.sha256, label, refresh: opts.refresh });
        return { key: "agent", label, fetched, entry: remote ? { source: "http", url: agent.url, sha256: fetched.sha256 } : undefined };
      },
    };
  }
  const version = agent.version;
  return {
    key: "agent",
    label,
    lockable: true,
    request: `release ${version} of ${AGENT_REPO}`,
    matches: (e) => e.source === "release" && e.version === version && !!e.tag,
    async resolve(fetcher, entry, opts) {
      if (entry) {
        // Pinned by fledge.lock: the same bytes, and no API call.
        const fetched = await fetcher.fetch({ url: entry.url, sha256: entry.sha256, label });
        return { key: "agent", label, fetched, entry };
      }
      if (fetcher.offline)
        throw new FetchError("EOFFLINE", "", `${label}: release ${version} of ${AGENT_REPO} is not in fledge.lock, and resolving it needs the GitHub API`, {
          hint: "run fledge build (or fledge update) once with the network, and keep fledge.lock",
        });
      const rel = await resolveGitHubRelease(fetcher, { repo: AGENT_REPO, version, asset: AGENT_ASSET, label });
      for (const w of rel.warnings) opts.warn(w);
      opts.info(`kestrel: release ${version} of ${AGENT_REPO} is ${rel.tag}`);
      const fetched = await fetcher.fetch({ url: rel.url, sha256: rel.sha256, label, refresh: opts.refresh });
      return { key: "agent", label, fetched, entry: { source: "release", version, tag: rel.tag, url: rel.url, sha256: fetched.sha256 } };
    },
  };
}

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
      if (!st.isFile()) throw new FledgeError("FLEDGE_AGENT", `[agent] path: ${agent.path} is ${describeKind(st)}, expected the kestrel binary`);
    });
    hooks.agent.tapPromise(this.name, async (tree, ctx) => {
      if (ctx.config.init.mode !== "default" || !ctx.config.agent) return;
      const { fetched: got } = await resolvedInput(ctx, "agent");
      ctx.debug(`kestrel ${got.fromCache ? "from cache" : got.local ? "from a local file" : "fetched"}: ${got.url} sha256:${got.sha256}`, this.name);
      // the verified bytes themselves when fetch kept them: a shared cache entry swapped since cannot get in
      if (got.data) tree.addFile("/bin/kestrel", got.data, 0o755);
      else tree.addHostFile("/bin/kestrel", got.path, 0o755, got.size);
    });
  }
}
