import { posix } from "node:path";
import type { RootfsTree } from "../tree.js";

/**
 * Where `path` really is in the image: its directories' symlinks (an image's `/bin -> usr/bin`,
 * merged /usr) are followed *inside the image* — an absolute target starts at the image root,
 * `..` stops at it — so a built-in can add `/bin/kestrel` to an image whose /bin is a link.
 * The last component is not followed. Gives up (returns `path`) after 40 links, like the kernel.
 */
export function inImage(tree: RootfsTree, path: string): string {
  let parts = path.split("/").filter(Boolean);
  let out: string[] = [];
  let hops = 0;
  while (parts.length > 1) {
    const [head, ...rest] = parts as [string, ...string[]];
    const cur = "/" + [...out, head].join("/");
    const n = tree.has(cur) ? tree.get(cur) : undefined;
    if (n?.type === "symlink") {
      if (++hops > 40) return path;
      const target = posix.normalize(n.target.startsWith("/") ? n.target : posix.join("/", ...out, n.target));
      out = [];
      parts = [...target.split("/").filter((c) => c && c !== ".."), ...rest];
      continue;
    }
    out.push(head);
    parts = rest;
  }
  return "/" + [...out, ...parts].join("/");
}
