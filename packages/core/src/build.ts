import { dirname, join, resolve } from "node:path";
import { loadFledgeConfig, loadManifestToml } from "@fledge/config";
import { Builder, type FledgePlugin } from "./builder.js";
import type { BuildOptions, BuildResult } from "./context.js";
import { loadPlugins } from "./load-plugins.js";

export interface BuildRequest extends Omit<BuildOptions, "output"> {
  /** fledge.toml path. */
  config: string;
  /** manifest.toml path; default: manifest.toml beside fledge.toml (optional file). */
  manifest?: string;
  /** Artifact path; default plugin.cpio.gz in the current directory. */
  output?: string;
  /** Plugins given in code, applied before those of fledge.toml. */
  plugins?: FledgePlugin[];
  /** Called with the builder before it runs, e.g. to attach observers. */
  onBuilder?: (builder: Builder) => void;
}

/** Loads both documents, applies plugins, runs the build. */
export async function build(req: BuildRequest): Promise<BuildResult> {
  const config = await loadFledgeConfig(req.config);
  const manifestFile = req.manifest ?? join(dirname(resolve(req.config)), "manifest.toml");
  const manifestConfig = await loadManifestToml(manifestFile, { required: req.manifest !== undefined });
  const fromConfig = await loadPlugins(config.plugins, config.rootDir);
  const { config: _c, manifest: _m, plugins: _p, onBuilder: _o, ...options } = req;
  const builder = new Builder({
    config,
    manifestConfig,
    options: { ...options, output: resolve(req.output ?? "plugin.cpio.gz") },
    plugins: [...(req.plugins ?? []), ...fromConfig],
  });
  req.onBuilder?.(builder);
  return builder.run();
}
