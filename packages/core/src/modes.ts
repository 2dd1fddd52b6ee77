import { posix } from "node:path";

/** Directories on PATH: a file mapped into one is a program (0755). */
export const EXEC_DIRS = ["/bin", "/sbin", "/usr/bin", "/usr/sbin", "/usr/local/bin", "/usr/local/sbin", "/opt/bin", "/opt/sbin"];
const LIB_DIRS = ["/lib", "/lib64", "/usr/lib", "/usr/lib64", "/usr/local/lib", "/usr/local/lib64"];

const under = (dest: string, dirs: string[]) => dirs.some((d) => dest.startsWith(d + "/"));

/**
 * The mode a mapped regular file gets in the image (docs/architecture.md, "File modes for mappings"),
 * normalised as git does so that neither the umask nor the host's group/other bits reach the
 * artifact: 0755 when the host file has any execute bit, lies in a bin directory or is a shared
 * library in a lib directory; otherwise 0644. No setuid, setgid or sticky bit and no group/other
 * write ever comes from the host. `/init` is what the kernel executes, so it is always 0755.
 */
export function mappedFileMode(hostMode: number, dest: string): number {
  if (hostMode & 0o111) return 0o755;
  if (under(dest, EXEC_DIRS) || dest === "/init") return 0o755;
  const base = posix.basename(dest);
  if (under(dest, LIB_DIRS) && /\.so(\.\d+)*$/.test(base)) return 0o755;
  return 0o644;
}
