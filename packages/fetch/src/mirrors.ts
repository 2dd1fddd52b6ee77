import { FetchError } from "./errors.js";

/** A URL prefix rewrite: a URL starting with `from` is fetched from `to` + the rest. */
export interface Mirror {
  from: string;
  to: string;
}

/**
 * Parses `FLEDGE_MIRRORS`: comma-separated `from=to` pairs, e.g.
 * `https://busybox.net/=http://127.0.0.1:8080/busybox/`. Empty items are ignored.
 */
export function parseMirrors(value: string | undefined): Mirror[] {
  if (!value) return [];
  const out: Mirror[] = [];
  for (const item of value.split(",")) {
    const s = item.trim();
    if (!s) continue;
    // Split at the first "=" followed by a URL or an absolute path, so a `from` may itself
    // contain "=" (query strings); else at the first "=".
    const m = /=(?=[a-z][a-z0-9+.-]*:\/\/|\/)/i.exec(s);
    const i = m ? m.index : s.indexOf("=");
    if (i <= 0 || i === s.length - 1)
      throw new FetchError("FLEDGE_INPUT", "", `FLEDGE_MIRRORS: "${s}" is not a from=to pair`, {
        hint: "write FLEDGE_MIRRORS=https://busybox.net/=http://mirror.local/busybox/ (several pairs separated by commas)",
      });
    out.push({ from: s.slice(0, i), to: s.slice(i + 1) });
  }
  return out;
}

/**
 * Rewrites `url` with the first list's longest matching prefix; the lists are tried in order
 * (so FLEDGE_MIRRORS, given first, wins over fledge.toml). Returns the URL unchanged when
 * nothing matches.
 */
export function applyMirrors(url: string, ...lists: Mirror[][]): { url: string; mirror?: Mirror } {
  for (const list of lists) {
    let best: Mirror | undefined;
    for (const m of list) if (url.startsWith(m.from) && (!best || m.from.length > best.from.length)) best = m;
    if (best) return { url: best.to + url.slice(best.from.length), mirror: best };
  }
  return { url };
}
