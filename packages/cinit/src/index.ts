import { existsSync } from "node:fs";
import { fileURLToPath } from "node:url";

/** Architectures fledge's init is built for. */
export type InitArch = "x86_64" | "aarch64";

/** Raised when no prebuilt init exists for an architecture. */
export class InitBinaryError extends Error {
  override name = "InitBinaryError";
  readonly code = "FLEDGE_NO_INIT";
}

/** Absolute path of the prebuilt static init for `arch`. */
export function initBinaryPath(arch: InitArch = "x86_64"): string {
  const path = fileURLToPath(new URL(`../bin/init-${arch}`, import.meta.url));
  if (!existsSync(path)) {
    throw new InitBinaryError(
      `fledge's init has no prebuilt binary for ${arch} (looked for ${path}); choose another [output] arch, or rebuild @fledge/cinit with its scripts/build.sh`,
    );
  }
  return path;
}

/** Path of the C source the binaries are built from. */
export const initSourcePath = fileURLToPath(new URL("../src/init.c", import.meta.url));
