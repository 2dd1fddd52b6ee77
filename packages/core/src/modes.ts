import { posix } from "node:path";

const EXEC_DIRS = ["/bin", "/sbin", "/usr/bin", "/usr/sbin", "/usr/local/bin", "/usr/local/sbin", "/opt/bin", "/opt/sbin"];
const LIB_DIRS = ["/lib", "/lib64", "/usr/lib", "/usr/lib64", "/usr/local/lib", "/usr/local/lib64"];

const under = (dest: string, dirs: string[]) => dirs.some((d) => dest.startsWith(d + "/"));

/**
 * The mode a mapped regular file gets in the image (docs/architecture.md, "File modes for mappings"):
 * executables keep their bits and gain x wherever r is set; files in bin directories and shared
 * libraries in lib directories become 0755; everything else 0644. `/init` is what the kernel
 * executes, so a file mapped there is always executable.
 */
export function mappedFileMode(hostMode: number, dest: string): number {
  const perm = hostMode & 0o777;
  if (perm & 0o111) {
    const r = perm & 0o444;
    return perm | (r >> 2);
  }
  if (under(dest, EXEC_DIRS) || dest === "/init") return 0o755;
  const base = posix.basename(dest);
  if (under(dest, LIB_DIRS) && /\.so(\.\d+)*$/.test(base)) return 0o755;
  return 0o644;
}
