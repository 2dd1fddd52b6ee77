import type { Builder } from "../builder.js";
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

/** Stage 3: busybox at /bin/busybox (0755) and /bin/<applet> -> busybox. */
export class BusyboxPlugin {
  readonly name = PLUGIN.busybox;
  apply(builder: Builder): void {
    builder.hooks.busybox.tapPromise(this.name, async (tree, ctx) => {
      const bb = ctx.config.busybox;
      if (!bb.include) {
        ctx.info("busybox left out ([source] busybox = false)", this.name);
        return;
      }
      if (!bb.sha256) ctx.warn(`busybox from ${bb.url} has no busybox_sha256: its content is not verified`, this.name);
      const got = await ctx.fetcher.fetch({ url: bb.url, sha256: bb.sha256, label: "busybox" });
      ctx.debug(`busybox ${got.fromCache ? "from cache" : "fetched"}: ${got.url} sha256:${got.sha256}`, this.name);
      tree.addHostFile("/bin/busybox", got.path, 0o755, got.size);
      for (const applet of BUSYBOX_APPLETS) tree.symlink(`/bin/${applet}`, "busybox");
    });
  }
}
