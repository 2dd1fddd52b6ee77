import { dirname } from "node:path";
import { fileURLToPath } from "node:url";
import type { BundledPlugins } from "@fledge/core";

/** Where the CLI is installed: first-party plugins installed with it are found from here. */
export const CLI_DIR = dirname(fileURLToPath(import.meta.url));

/**
 * The first-party plugins that ship with the CLI (its dependencies), as `import()`s: the one-file
 * executable (`npm run package`) has no node_modules to find them in, so its bundler resolves
 * these at build time and they are part of the executable. Loaded only when a build needs one
 * (fledge.toml names it, or a key such as `[source] image` asks for it). A copy installed in the
 * project wins.
 */
export const BUNDLED_PLUGINS: BundledPlugins = {
  "@fledge/plugin-oci": () => import("@fledge/plugin-oci"),
  "@fledge/plugin-rootfs": () => import("@fledge/plugin-rootfs"),
  "@fledge/plugin-dockerfile": () => import("@fledge/plugin-dockerfile"),
  "@fledge/plugin-bootcheck": () => import("@fledge/plugin-bootcheck"),
  "@fledge/plugin-origins": () => import("@fledge/plugin-origins"),
  "@fledge/plugin-tarball": () => import("@fledge/plugin-tarball"),
  "@fledge/plugin-sbom": () => import("@fledge/plugin-sbom"),
};

/** What every command that loads plugins passes to pre-flight. */
export const PLUGIN_LOOKUP = { pluginSearchPaths: [CLI_DIR], bundledPlugins: BUNDLED_PLUGINS };
