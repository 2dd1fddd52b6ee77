import type { FledgePlugin } from "../builder.js";
import { AgentPlugin } from "./agent.js";
import { ArchivePlugin, CompressionPlugin } from "./archive.js";
import { BusyboxPlugin } from "./busybox.js";
import { InitPlugin } from "./init.js";
import { InitramfsStrategyPlugin } from "./initramfs.js";
import { LockPlugin } from "./lock.js";
import { MappingsPlugin } from "./mappings.js";
import { SkeletonPlugin } from "./skeleton.js";

export { AgentPlugin, ArchivePlugin, BusyboxPlugin, CompressionPlugin, InitPlugin, InitramfsStrategyPlugin, LockPlugin, MappingsPlugin, SkeletonPlugin };
export { PLUGIN } from "./names.js";
export { BUSYBOX_APPLETS } from "./busybox.js";
export { SKELETON_DIRS } from "./skeleton.js";
export { VOLANT_INIT_FILE } from "./init.js";
export { AGENT_ASSET, AGENT_REPO, agentInput } from "./agent.js";
export { busyboxInput } from "./busybox.js";
export { resolvedInput, type InputSpec, type LockEntry, type ResolvedInput, type ResolveOptions } from "./inputs.js";
export {
  LOCK_FILE,
  configInputs,
  formatLock,
  lockChanges,
  lockPath,
  readLock,
  resolveInputs,
  updateLock,
  writeLock,
  type Lockfile,
  type LockMode,
  type UpdateLockRequest,
  type UpdateLockResult,
} from "./lock.js";

/** The built-in behaviour, as plugins, in the order they are applied (after user plugins). */
export function builtinPlugins(): FledgePlugin[] {
  return [
    new CompressionPlugin(),
    new InitramfsStrategyPlugin(),
    new SkeletonPlugin(),
    new BusyboxPlugin(),
    new InitPlugin(),
    new AgentPlugin(),
    new MappingsPlugin(),
    new ArchivePlugin(),
    new LockPlugin(),
  ];
}
