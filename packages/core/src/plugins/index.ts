import type { FledgePlugin } from "../builder.js";
import { AgentPlugin } from "./agent.js";
import { ArchivePlugin, CompressionPlugin } from "./archive.js";
import { BusyboxPlugin } from "./busybox.js";
import { DeriveManifestPlugin } from "./derive-manifest.js";
import { InitPlugin } from "./init.js";
import { InitramfsStrategyPlugin } from "./initramfs.js";
import { MappingsPlugin } from "./mappings.js";
import { OverlayPlugin } from "./overlay.js";
import { SkeletonPlugin } from "./skeleton.js";

export { BUSYBOX_APPLETS } from "./busybox.js";
export { SKELETON_DIRS } from "./skeleton.js";
export { VOLANT_INIT_FILE } from "./init.js";
export { AGENT_ASSET, AGENT_REPO } from "./agent.js";

/** The built-in behaviour, as plugins, in the order they are applied (after every other plugin). */
export function builtinPlugins(): FledgePlugin[] {
  return [
    new CompressionPlugin(),
    new InitramfsStrategyPlugin(),
    new SkeletonPlugin(),
    new OverlayPlugin(),
    new BusyboxPlugin(),
    new InitPlugin(),
    new AgentPlugin(),
    new MappingsPlugin(),
    new ArchivePlugin(),
    new DeriveManifestPlugin(),
  ];
}
