import type { Builder } from "../builder.js";
import { PLUGIN } from "./names.js";

export const SKELETON_DIRS = ["/bin", "/sbin", "/etc", "/proc", "/sys", "/dev", "/run", "/usr/bin", "/usr/sbin", "/usr/lib", "/var/log"];

/** Stage 1: the directories every image has, and the device nodes the kernel opens before /init. */
export class SkeletonPlugin {
  readonly name = PLUGIN.skeleton;
  apply(builder: Builder): void {
    builder.hooks.skeleton.tapPromise(this.name, async (t) => {
      const tree = t.withOrigin("skeleton");
      for (const d of SKELETON_DIRS) tree.mkdir(d, 0o755);
      tree.mkdir("/tmp", 0o1777);
      tree.device("/dev/console", "char", 5, 1, 0o600);
      tree.device("/dev/null", "char", 1, 3, 0o666);
    });
  }
}
