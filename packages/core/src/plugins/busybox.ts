import { stat } from "node:fs/promises";
import { fileURLToPath } from "node:url";
import type { Builder } from "../builder.js";
import { inImage } from "./in-image.js";
import { PLUGIN } from "./names.js";

/** Applets linked to /bin/busybox (relative links, so they work wherever the image is unpacked). */
export const BUSYBOX_APPLETS = [
  "sh",
  "ash",
  "ls",
  "cat",
  "cp",
  "mv",
  "rm",
  "mkdir",
  "rmdir",
  "ln",
  "chmod",
  "chown",
  "ps",
  "kill",
  "mount",
  "umount",
  "grep",
  "sed",
  "awk",
  "find",
  "test",
  "[",
  "echo",
  "printf",
  "true",
  "false",
  "sleep",
  "pwd",
  "env",
  "which",
  "tar",
  "gzip",
  "gunzip",
  "wget",
  "vi",
  "head",
  "tail",
  "wc",
  "sort",
  "uniq",
  "cut",
  "tr",
  "xargs",
  "tee",
  "touch",
  "stat",
  "readlink",
  "basename",
  "dirname",
  "du",
  "df",
  "free",
  "uname",
  "id",
  "date",
  "dmesg",
  "hostname",
  "ip",
  "ifconfig",
  "route",
  "ping",
  "nc",
  "udhcpc",
  "mknod",
  "mkfifo",
  "sync",
  "poweroff",
  "reboot",
  "halt",
  "switch_root",
  "chroot",
  "top",
  "less",
  "more",
  "seq",
  "expr",
  "sha256sum",
  "md5sum",
  "hexdump",
  "od",
  "yes",
  "sysctl",
  "nslookup",
  "netstat",
  "clear",
  "reset",
  "httpd",
].sort();

/**
 * Stage 3: busybox at /bin/busybox (0755) and /bin/<applet> -> busybox; busybox is the `busybox`
 * input. Never replaces what an overlaid image has (its shell, its own busybox and links).
 */
export class BusyboxPlugin {
  readonly name = PLUGIN.busybox;
  apply(builder: Builder): void {
    const { hooks } = builder;
    hooks.check.tapPromise(this.name, async (check, ctx) => {
      const bb = ctx.config.busybox;
      if (!bb.include || /^https?:\/\//i.test(bb.url)) return;
      const path = bb.url.startsWith("file://") ? fileURLToPath(bb.url) : bb.url;
      const st = await stat(path).catch(() => undefined);
      if (!st) check.problem("source.busybox_url", `${path} does not exist`, "give the busybox binary's path relative to fledge.toml, or a URL");
      else if (!st.isFile()) check.problem("source.busybox_url", `${path} is not a regular file`);
    });
    hooks.inputs.tap(this.name, (inputs, ctx) => {
      const bb = ctx.config.busybox;
      if (!bb.include) return;
      inputs.add({ name: "busybox", url: bb.url, ...(bb.sha256 ? { sha256: bb.sha256 } : {}), checksumKey: "busybox_sha256" });
    });
    hooks.busybox.tapPromise(this.name, async (t, ctx) => {
      if (!ctx.config.busybox.include) {
        ctx.info("busybox left out ([source] busybox = false)");
        return;
      }
      const got = await ctx.inputs.file("busybox");
      ctx.debug(`busybox ${got.fromCache ? "from cache" : got.local ? "from a local file" : "fetched"}: ${got.url} sha256:${got.sha256}`);
      const tree = t.withOrigin("busybox");
      // An image overlaid before this stage keeps what it has: its /bin/busybox, its /bin/sh and
      // every other command. fledge's busybox only fills in what is missing, in the image's real
      // /bin (an image's `/bin -> usr/bin` is followed inside the image).
      const bin = inImage(tree, "/bin/busybox").slice(0, -"/busybox".length) || "/bin";
      if (tree.has(`${bin}/busybox`)) {
        ctx.info(`the image has its own ${bin}/busybox: fledge's busybox is not installed, the image's applets stay as they are`);
        return;
      }
      // the verified bytes themselves when fetch kept them: a shared cache entry swapped since cannot get in
      if (got.data) tree.addFile(`${bin}/busybox`, got.data, 0o755);
      else tree.addHostFile(`${bin}/busybox`, got.path, 0o755, got.size);
      const kept: string[] = [];
      for (const applet of BUSYBOX_APPLETS) {
        if (tree.has(`${bin}/${applet}`)) kept.push(applet);
        else tree.symlink(`${bin}/${applet}`, "busybox");
      }
      if (kept.length)
        ctx.info(
          `busybox: the image's own ${kept
            .slice(0, 8)
            .map((a) => `${bin}/${a}`)
            .join(", ")}${kept.length > 8 ? ` and ${kept.length - 8} more` : ""} kept; busybox links only what the image lacks`,
        );
    });
  }
}
