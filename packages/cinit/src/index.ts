import { existsSync, readFileSync } from "node:fs";
import { fileURLToPath } from "node:url";

/** Architectures fledge's init is built for. */
export type InitArch = "x86_64" | "aarch64";

/** Raised when no prebuilt init exists for an architecture. */
export class InitBinaryError extends Error {
  override name = "InitBinaryError";
  readonly code = "FLEDGE_NO_INIT";
}

/** The asset key of an init binary inside fledge's one-file executable (`node:sea`). */
export function initAssetKey(arch: string): string {
  return `@fledge/cinit/bin/init-${arch}`;
}

interface SeaModule {
  isSea(): boolean;
  getAsset(key: string): ArrayBuffer;
}

/** `node:sea` when running as a single executable application, else undefined. */
function sea(): SeaModule | undefined {
  const get = (process as { getBuiltinModule?: (id: string) => unknown }).getBuiltinModule;
  try {
    const m = get?.("node:sea") as SeaModule | undefined;
    return m?.isSea() ? m : undefined;
  } catch {
    return undefined;
  }
}

const noBinary = (arch: string, where: string) =>
  new InitBinaryError(`fledge's init has no prebuilt binary for ${arch} (looked for ${where}); choose another [output] arch, or rebuild @fledge/cinit with its scripts/build.sh`);

/**
 * Absolute path of the prebuilt static init for `arch`. Inside the one-file executable there is
 * no such file: use {@link initBinary}.
 */
export function initBinaryPath(arch: InitArch = "x86_64"): string {
  const path = fileURLToPath(new URL(`../bin/init-${arch}`, import.meta.url));
  if (!existsSync(path)) throw noBinary(arch, path);
  return path;
}

/** The prebuilt static init for `arch`: the package's file, or the executable's embedded asset. */
export function initBinary(arch: InitArch = "x86_64"): Uint8Array {
  const s = sea();
  if (s) {
    try {
      return new Uint8Array(s.getAsset(initAssetKey(arch)));
    } catch {
      throw noBinary(arch, `the asset ${initAssetKey(arch)} of this executable`);
    }
  }
  return readFileSync(initBinaryPath(arch));
}

/** Path of the C source the binaries are built from. */
export const initSourcePath = fileURLToPath(new URL("../src/init.c", import.meta.url));
