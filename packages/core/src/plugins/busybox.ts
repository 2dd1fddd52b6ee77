import type { FledgeConfig } from "@fledge/config";
import { normalizeSha256 } from "@fledge/fetch";
import type { Builder } from "../builder.js";
import { resolvedInput, type InputSpec } from "./inputs.js";
import { PLUGIN } from "./names.js";

/** Applets linked to /bin/busybox (relative links, so they work wherever the image is unpacked). */
export const BUSYBOX_APPLETS = [
  "sh", "ash", "ls", "cat", "cp", "mv", "rm", "mkdir", "rmdir", "ln", "chmod", "chown", "ps", "kill",
  "mount", "umount", "grep", "sed", "awk", "find", "test", "[", "echo", "printf", "true", "false", "sleep",
  "pwd", "env", "which", "tar", "gzip", "gunzip", "wget", "vi", "head", "tail", "wc", "sort", "uniq", "cut",
  "tr", "xargs", "tee", "touch", "stat", "readlink", "basename", "dirname", "du", "df", "free", "uname",
  "id", "date", "dmesg", "hostname", "ip", "ifconfig", "route", "ping", "nc", "udhcpc", "mknod", "mkfifo",
  "sync", "poweroff", "reboot", "halt", "switch_root", "chroot", "top", "less", "more", "seq", "expr",
  "sha256sum", "md5sum", "hexdump", "od", "yes", "sysctl", "nslookup", "netstat", "clear", "reset", "httpd",
].sort();

/** busybox as an input of the build (undefined when `[source] busybox = false`). */
export function busyboxInput(config: FledgeConfig): InputSpec | undefined {
  const bb = config.busybox;
  if (!bb.include) return undefined;
  const remote = /^https?:\/\//i.test(bb.url);
  return {
    key: "busybox",
    label: "busybox",
    lockable: remote,
    request: bb.url,
    matches: (e) => e.source === "url" && e.url === bb.url && (!bb.sha256 || normalizeSha256(bb.sha256) === e.sha256),
    async resolve(fetcher, entry, opts) {
      if (!bb.sha256) opts.warn(`busybox from ${bb.url} has no busybox_sha256: its content is not verified${remote ? " (fledge.lock pins what was downloaded)" : ""}`);
      const fetched = await fetcher.fetch({ url: bb.url, sha256: bb.sha256 ?? entry?.sha256, label: "busybox", refresh: opts.refresh, baseDir: config.rootDir });
      return { key: "busybox", label: "busybox", fetched, entry: remote ? { source: "url", url: bb.url, sha256: fetched.sha256 } : undefined };
    },
  };
}

/** Stage 3: busybox at /bin/busybox (0755) and /bin/<applet> -> busybox. */
export class BusyboxPlugin {
  readonly name = PLUGIN.busybox;
  apply(builder: Builder): void {
    builder.hooks.busybox.tapPromise(this.name, async (tree, ctx) => {
      if (!ctx.config.busybox.include) {
        ctx.info("busybox left out ([source] busybox = false)", this.name);
        return;
      }
      const { fetched: got } = await resolvedInput(ctx, "busybox");
      ctx.debug(`busybox ${got.fromCache ? "from cache" : got.local ? "from a local file" : "fetched"}: ${got.url} sha256:${got.sha256}`, this.name);
      // the verified bytes themselves when fetch kept them: a shared cache entry swapped since cannot get in
      if (got.data) tree.addFile("/bin/busybox", got.data, 0o755);
      else tree.addHostFile("/bin/busybox", got.path, 0o755, got.size);
      for (const applet of BUSYBOX_APPLETS) tree.symlink(`/bin/${applet}`, "busybox");
    });
  }
}
