import { resolveGitHubRelease, type Fetcher } from "@fledge/fetch";
import { hostKernels, inspectKernel, type KernelInfo } from "./kernel.js";
import { VmError, type GuestArch } from "./qemu.js";

/** Volant publishes its kernel with every release, beside kestrel. */
export const VOLANT_REPO = "volantvm/volant";
export const VOLANT_KERNEL_ASSET = "bzImage";
export const VOLANT_KERNEL_CHECKSUM = "bzImage.sha256";

/** What a Volant kernel resolved to: enough to pin it (fledge.lock's [kernel]). */
export interface VolantKernelPin {
  /** The release version asked for ("latest", "v0.1.0"). */
  version: string;
  tag: string;
  url: string;
  sha256: string;
}

/**
 * Volant's release kernel: `bzImage` of release `version` of volantvm/volant, verified against
 * the release's `bzImage.sha256` (or a pin from fledge.lock, then with no API call), through the
 * fetcher's cache, mirrors and offline mode.
 */
export async function fetchVolantKernel(fetcher: Fetcher, version: string, pin?: VolantKernelPin): Promise<{ path: string; pin: VolantKernelPin }> {
  const label = "Volant kernel";
  if (pin && pin.version === version) {
    const got = await fetcher.fetch({ url: pin.url, sha256: pin.sha256, label });
    return { path: got.path, pin };
  }
  if (fetcher.offline) throw new VmError("EOFFLINE", `${label}: release ${version} of ${VOLANT_REPO} is not pinned, and resolving it needs the GitHub API`, "run once with the network, or pass --kernel");
  const rel = await resolveGitHubRelease(fetcher, { repo: VOLANT_REPO, version, asset: VOLANT_KERNEL_ASSET, checksumsAsset: VOLANT_KERNEL_CHECKSUM, label });
  if (!rel.sha256) throw new VmError("FLEDGE_KERNEL", `${label}: release ${rel.tag} of ${VOLANT_REPO} publishes no ${VOLANT_KERNEL_CHECKSUM}, so its kernel cannot be verified`, "pass --kernel, or pin another release");
  const got = await fetcher.fetch({ url: rel.url, sha256: rel.sha256, label });
  return { path: got.path, pin: { version, tag: rel.tag, url: rel.url, sha256: got.sha256 } };
}

export type KernelSource = "flag" | "config" | "volant" | "host";

export interface KernelChoice {
  kernel: KernelInfo;
  source: KernelSource;
  /** True only for Volant's release kernel. */
  volant: boolean;
  /** One line for the user: which kernel and why. */
  description: string;
  /** Set when Volant's kernel was wanted and not used, saying why. */
  notice?: string;
  /** For source "volant": what to pin. */
  pin?: VolantKernelPin;
}

export interface SelectKernelOptions {
  arch: GuestArch;
  /** `--kernel` (absolute or relative to cwd). */
  flag?: string;
  /** `[run] kernel` (absolute). */
  config?: string;
  /** Where Volant's kernel comes from; without a fetcher it is not tried. */
  fetcher?: Fetcher;
  /** Release of Volant to take the kernel from (kestrel's; default "latest"). */
  volantVersion?: string;
  /** A pin from fledge.lock. */
  pin?: VolantKernelPin;
  /** Volant's kernel, already fetched and verified elsewhere (a build's inputs): its file, with `pin`. */
  volantFile?: string;
  /** Why Volant's kernel is not available, when the caller already knows (nothing is fetched). */
  unavailable?: string;
  /** /boot, for tests. */
  bootDir?: string;
}

/**
 * The kernel to boot: `--kernel`, else `[run] kernel`, else Volant's release kernel (x86_64),
 * else the host's newest /boot kernel of the right architecture, said plainly to be not Volant's.
 */
export async function selectKernel(o: SelectKernelOptions): Promise<KernelChoice> {
  const given = async (path: string, source: KernelSource, what: string): Promise<KernelChoice> => {
    const kernel = await inspectKernel(path);
    if (kernel.arch !== o.arch) throw new VmError("FLEDGE_KERNEL_ARCH", `${what} ${kernel.path} is an ${kernel.arch} kernel, the artifact is ${o.arch}`, `give a ${o.arch} kernel`);
    return { kernel, source, volant: false, description: `${kernel.path}${kernel.release ? ` (${kernel.release})` : ""}, from ${what}` };
  };
  if (o.flag) return given(o.flag, "flag", "--kernel");
  if (o.config) return given(o.config, "config", "[run] kernel");
  let why: string;
  if (o.volantFile && o.pin) {
    const kernel = await inspectKernel(o.volantFile);
    return { kernel, source: "volant", volant: true, pin: o.pin, description: `Volant's kernel, release ${o.pin.tag} (sha256:${o.pin.sha256.slice(0, 12)}…)` };
  }
  if (o.unavailable) why = o.unavailable;
  else if (o.arch !== "x86_64") why = `Volant publishes no ${o.arch} kernel`;
  else if (!o.fetcher) why = "Volant's kernel was not looked up";
  else {
    const version = o.volantVersion ?? "latest";
    try {
      const { path, pin } = await fetchVolantKernel(o.fetcher, version, o.pin);
      const kernel = await inspectKernel(path);
      return { kernel, source: "volant", volant: true, pin, description: `Volant's kernel, release ${pin.tag} (sha256:${pin.sha256.slice(0, 12)}…)` };
    } catch (err) {
      why = `Volant's kernel (release ${version}) is not available: ${(err as Error).message.split("\n")[0]}`;
    }
  }
  const host = await hostKernels(o.arch, o.bootDir);
  if (!host.length) throw new VmError("FLEDGE_NO_KERNEL", `no kernel to boot: ${why}, and ${o.bootDir ?? "/boot"} has no ${o.arch} vmlinuz`, `pass --kernel <bzImage or Image>, or set [run] kernel in fledge.toml`);
  const kernel = host[0]!;
  return {
    kernel,
    source: "host",
    volant: false,
    notice: `${why}; booting the host's ${kernel.path} instead — NOT Volant's kernel: drivers, config and boot time differ from a Volant host`,
    description: `${kernel.path}${kernel.release ? ` (${kernel.release})` : ""}, the host's kernel (not Volant's)`,
  };
}
