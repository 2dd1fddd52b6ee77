/**
 * Finds where keys are written in TOML text, so schema errors can point at a line and column.
 *
 * smol-toml gives positions only for syntax errors, so this scans the source: it follows table
 * headers (`[a.b]`, `[[a.b]]`), dotted and quoted keys, and skips multi-line strings and arrays.
 * It is only called on text that already parsed, so it can be forgiving.
 */

export interface Position {
  /** 1-based. */
  line: number;
  /** 1-based. */
  column: number;
}

export type KeyPath = readonly PropertyKey[];

const BARE = /^[A-Za-z0-9_-]+/;

/** Parses a (dotted) TOML key at `s[i]`; returns the key parts and the index after the key. */
function parseKey(s: string, i: number): { parts: string[]; end: number } | undefined {
  const parts: string[] = [];
  for (;;) {
    while (s[i] === " " || s[i] === "\t") i++;
    const ch = s[i];
    if (ch === '"') {
      let j = i + 1;
      let out = "";
      while (j < s.length && s[j] !== '"') {
        if (s[j] === "\\") {
          const e = s[j + 1];
          const simple: Record<string, string> = { b: "\b", t: "\t", n: "\n", f: "\f", r: "\r", e: "\x1b", '"': '"', "\\": "\\" };
          if (e && e in simple) {
            out += simple[e];
            j += 2;
          } else if (e === "u" || e === "U" || e === "x") {
            const n = e === "u" ? 4 : e === "U" ? 8 : 2;
            out += String.fromCodePoint(parseInt(s.slice(j + 2, j + 2 + n), 16) || 0);
            j += 2 + n;
          } else {
            out += e ?? "";
            j += 2;
          }
        } else out += s[j++];
      }
      if (s[j] !== '"') return undefined;
      parts.push(out);
      i = j + 1;
    } else if (ch === "'") {
      const j = s.indexOf("'", i + 1);
      if (j < 0) return undefined;
      parts.push(s.slice(i + 1, j));
      i = j + 1;
    } else {
      const m = BARE.exec(s.slice(i));
      if (!m) return undefined;
      parts.push(m[0]);
      i += m[0].length;
    }
    while (s[i] === " " || s[i] === "\t") i++;
    if (s[i] !== ".") return { parts, end: i };
    i++;
  }
}

/** How many `[` minus `]` a value opens, ignoring brackets inside strings and comments. */
function bracketDepth(s: string): { depth: number; openString?: '"""' | "'''" } {
  let depth = 0;
  for (let i = 0; i < s.length; i++) {
    const ch = s[i];
    if (ch === "#") break;
    if (s.startsWith('"""', i) || s.startsWith("'''", i)) {
      const q = s.slice(i, i + 3) as '"""' | "'''";
      const close = s.indexOf(q, i + 3);
      if (close < 0) return { depth, openString: q };
      i = close + 2;
    } else if (ch === '"') {
      i++;
      while (i < s.length && s[i] !== '"') i += s[i] === "\\" ? 2 : 1;
    } else if (ch === "'") {
      const close = s.indexOf("'", i + 1);
      i = close < 0 ? s.length : close;
    } else if (ch === "[" || ch === "{") depth++;
    else if (ch === "]" || ch === "}") depth--;
  }
  return { depth };
}

const pathKey = (p: KeyPath) => JSON.stringify(p.map((x) => (typeof x === "number" ? x : String(x))));

/** Maps every key path written in `text` to where it is first written. */
export function indexKeys(text: string): Map<string, Position> {
  const out = new Map<string, Position>();
  const put = (p: KeyPath, pos: Position) => {
    const k = pathKey(p);
    if (!out.has(k)) out.set(k, pos);
  };
  const lines = text.split(/\r?\n/);
  let table: (string | number)[] = [];
  const arrayCounts = new Map<string, number>();
  let skipUntil: '"""' | "'''" | undefined;
  let depth = 0;
  for (let n = 0; n < lines.length; n++) {
    const line = lines[n]!;
    if (skipUntil) {
      if (line.includes(skipUntil)) {
        const rest = line.slice(line.indexOf(skipUntil) + 3);
        skipUntil = undefined;
        const b = bracketDepth(rest);
        depth += b.depth;
        skipUntil = b.openString;
      }
      continue;
    }
    if (depth > 0) {
      const b = bracketDepth(line);
      depth += b.depth;
      skipUntil = b.openString;
      continue;
    }
    const start = line.search(/\S/);
    if (start < 0 || line[start] === "#") continue;
    if (line.startsWith("[[", start)) {
      const k = parseKey(line, start + 2);
      if (!k) continue;
      const base = pathKey(k.parts);
      const idx = arrayCounts.get(base) ?? 0;
      arrayCounts.set(base, idx + 1);
      const pos = { line: n + 1, column: start + 1 };
      for (let i = 1; i <= k.parts.length; i++) put(k.parts.slice(0, i), pos);
      table = [...k.parts, idx];
      put(table, pos);
      continue;
    }
    if (line[start] === "[") {
      const k = parseKey(line, start + 1);
      if (!k) continue;
      const pos = { line: n + 1, column: start + 1 };
      for (let i = 1; i <= k.parts.length; i++) put(k.parts.slice(0, i), pos);
      table = k.parts;
      continue;
    }
    const k = parseKey(line, start);
    if (!k || line[k.end] !== "=") continue;
    const pos = { line: n + 1, column: start + 1 };
    for (let i = 1; i <= k.parts.length; i++) put([...table, ...k.parts.slice(0, i)], pos);
    const value = line.slice(k.end + 1);
    // Keys of a one-line inline table: `x = { a = 1, b = 2 }`.
    const inline = /^\s*\{(.*)\}\s*(#.*)?$/.exec(value);
    if (inline) {
      const body = inline[1]!;
      const offset = k.end + 1 + value.indexOf("{") + 1;
      for (const m of body.matchAll(/(?:^|,)\s*([A-Za-z0-9_"'-][^=,{}]*?)\s*=/g)) {
        const kk = parseKey(m[1]!, 0);
        if (kk) put([...table, ...k.parts, ...kk.parts], { line: n + 1, column: offset + m.index! + m[0].indexOf(m[1]!) + 1 });
      }
    }
    const b = bracketDepth(value);
    depth = Math.max(0, b.depth);
    skipUntil = b.openString;
  }
  return out;
}

/**
 * Where a key path is written: the key itself, else the closest written parent (a table header
 * or the key holding an inline value). Undefined when nothing of it is written (e.g. a missing
 * top-level key).
 */
export function locateKey(text: string | Map<string, Position>, path: KeyPath): Position | undefined {
  const index = typeof text === "string" ? indexKeys(text) : text;
  for (let n = path.length; n > 0; n--) {
    const hit = index.get(pathKey(path.slice(0, n)));
    if (hit) return hit;
  }
  return undefined;
}
