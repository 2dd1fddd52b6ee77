import type { ConfigIssue } from "./errors.js";
import { indexKeys, locateKey } from "./locate.js";

/** Splits `agent.version`, `mappings."./a b"`, `network.expose[0].port` back into parts. */
export function parseKeyPath(keyPath: string): (string | number)[] {
  const out: (string | number)[] = [];
  let i = 0;
  while (i < keyPath.length) {
    const ch = keyPath[i];
    if (ch === ".") i++;
    else if (ch === '"') {
      let j = i + 1;
      while (j < keyPath.length && keyPath[j] !== '"') j += keyPath[j] === "\\" ? 2 : 1;
      out.push(JSON.parse(keyPath.slice(i, j + 1)) as string);
      i = j + 1;
    } else if (ch === "[") {
      const j = keyPath.indexOf("]", i);
      out.push(Number(keyPath.slice(i + 1, j)));
      i = j + 1;
    } else {
      const m = /^[^.[]+/.exec(keyPath.slice(i))!;
      out.push(m[0]);
      i += m[0].length;
    }
  }
  return out;
}

/** Adds line and column to issues that have none, from where their key is written in `text`. */
export function placeIssues(issues: ConfigIssue[], text: string): ConfigIssue[] {
  const index = indexKeys(text);
  for (const i of issues) {
    if (i.line !== undefined || !i.keyPath) continue;
    const pos = locateKey(index, parseKeyPath(i.keyPath));
    if (pos) {
      i.line = pos.line;
      i.column = pos.column;
    }
  }
  return issues;
}
