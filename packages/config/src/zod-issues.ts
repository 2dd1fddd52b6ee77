import type { z } from "zod";
import type { ConfigIssue } from "./errors.js";

/** Levenshtein distance, for "did you mean" hints. */
function distance(a: string, b: string): number {
  const d = Array.from({ length: a.length + 1 }, (_, i) => [i, ...Array<number>(b.length).fill(0)]);
  for (let j = 1; j <= b.length; j++) d[0]![j] = j;
  for (let i = 1; i <= a.length; i++)
    for (let j = 1; j <= b.length; j++)
      d[i]![j] = Math.min(d[i - 1]![j]! + 1, d[i]![j - 1]! + 1, d[i - 1]![j - 1]! + (a[i - 1] === b[j - 1] ? 0 : 1));
  return d[a.length]![b.length]!;
}

export function didYouMean(word: string, candidates: string[]): string | undefined {
  let best: string | undefined;
  let bestD = Infinity;
  for (const c of candidates) {
    const dd = distance(word.toLowerCase(), c.toLowerCase());
    if (dd < bestD) {
      bestD = dd;
      best = c;
    }
  }
  return best !== undefined && bestD <= Math.max(2, Math.floor(word.length / 3)) ? best : undefined;
}

function keyPathOf(path: PropertyKey[]): string {
  return path
    .map((p) => (typeof p === "number" ? `[${p}]` : /^[A-Za-z0-9_-]+$/.test(String(p)) ? String(p) : `"${String(p)}"`))
    .join(".")
    .replace(/\.\[/g, "[");
}

function valueAt(data: unknown, path: PropertyKey[]): unknown {
  let v: any = data;
  for (const p of path) v = v?.[p as any];
  return v;
}

/** Turns zod issues into ConfigIssues with key paths and fixes a user can act on. */
export function zodIssues(error: z.ZodError, file: string, data: unknown, knownKeys?: (path: PropertyKey[]) => string[]): ConfigIssue[] {
  const out: ConfigIssue[] = [];
  for (const issue of error.issues) {
    if (issue.code === "unrecognized_keys") {
      const parent = valueAt(data, issue.path) as Record<string, unknown> | undefined;
      const known = knownKeys?.(issue.path) ?? [];
      for (const key of issue.keys) {
        const suggestion = didYouMean(key, known);
        out.push({
          file,
          keyPath: keyPathOf([...issue.path, key]),
          message: `unknown key${parent && typeof parent[key] === "object" ? " (table)" : ""}`,
          hint: suggestion ? `did you mean \`${suggestion}\`?` : known.length ? `known keys here: ${known.join(", ")}` : "remove it",
        });
      }
      continue;
    }
    let message = issue.message;
    if (issue.code === "invalid_type") {
      const got = valueAt(data, issue.path);
      message = got === undefined ? `is required (${issue.expected})` : `expected ${issue.expected}, got ${Array.isArray(got) ? "array" : typeof got} ${JSON.stringify(got)}`;
    }
    out.push({ file, keyPath: keyPathOf(issue.path), message });
  }
  return out;
}
