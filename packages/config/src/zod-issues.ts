import type { z } from "zod";
import type { ConfigIssue } from "./errors.js";
import { allTables, shapeKeysAt } from "./shape.js";

/** Levenshtein distance, for "did you mean" hints. */
function distance(a: string, b: string): number {
  const d = Array.from({ length: a.length + 1 }, (_, i) => [i, ...Array<number>(b.length).fill(0)]);
  for (let j = 1; j <= b.length; j++) d[0]![j] = j;
  for (let i = 1; i <= a.length; i++) for (let j = 1; j <= b.length; j++) d[i]![j] = Math.min(d[i - 1]![j]! + 1, d[i]![j - 1]! + 1, d[i - 1]![j - 1]! + (a[i - 1] === b[j - 1] ? 0 : 1));
  return d[a.length]![b.length]!;
}

/** The candidate closest to `word`, when it is close enough to be a typo of it. */
export function didYouMean(word: string, candidates: readonly string[]): string | undefined {
  const w = word.toLowerCase().replace(/-/g, "_");
  let best: string | undefined;
  let bestD = Infinity;
  for (const c of candidates) {
    const cc = c.toLowerCase();
    // A plural/singular slip or a prefix (`mapping`, `env_vars`) is a typo too.
    const dd = cc === w ? 0 : cc.startsWith(w) || w.startsWith(cc) ? Math.min(distance(w, cc), 2) : distance(w, cc);
    if (dd < bestD) {
      bestD = dd;
      best = c;
    }
  }
  // Short words are too easily "close" to anything (`zfs` is not a typo of `xfs`).
  return best !== undefined && word.length >= 4 && bestD <= Math.floor(word.length / 4) + 1 ? best : undefined;
}

/** `agent.version`, `mappings."./my app"`, `plugins[1]`. */
export function keyPathOf(path: readonly PropertyKey[]): string {
  return path
    .map((p) => (typeof p === "number" ? `[${p}]` : /^[A-Za-z0-9_-]+$/.test(String(p)) ? String(p) : JSON.stringify(String(p))))
    .join(".")
    .replace(/\.\[/g, "[");
}

export function valueAt(data: unknown, path: readonly PropertyKey[]): unknown {
  let v: unknown = data;
  for (const p of path) v = v !== null && typeof v === "object" ? (v as Record<PropertyKey, unknown>)[p] : undefined;
  return v;
}

/** A TOML value as a person would name it: `the integer 1`, `the string "x"`, `a table`. */
export function describeValue(v: unknown): string {
  if (typeof v === "string") return `the string ${JSON.stringify(v)}`;
  if (typeof v === "number") return Number.isInteger(v) ? `the integer ${v}` : `the float ${v}`;
  if (typeof v === "bigint") return `the integer ${v}`;
  if (typeof v === "boolean") return `the boolean ${v}`;
  if (v instanceof Date) return "a date-time";
  if (Array.isArray(v)) return "an array";
  if (v && typeof v === "object") return "a table";
  return String(v);
}

const EXPECTED: Record<string, string> = {
  string: "a string",
  number: "a number",
  int: "an integer",
  boolean: "a boolean (true or false)",
  array: "an array",
  object: "a table",
  record: "a table",
};

function isTable(v: unknown): boolean {
  return !!v && typeof v === "object" && !Array.isArray(v) && !(v instanceof Date);
}

export interface IssueContext {
  /** The other config file's schema: a top-level key of it written here gets "belongs in <file>". */
  other?: { name: string; here: string; schema: z.ZodType };
  /** Hints for unknown keys at given key paths, where a better answer than "did you mean" exists. */
  hints?: Record<string, string>;
}

/** Turns zod issues into ConfigIssues with key paths, messages and hints a user can act on. */
export function zodIssues(error: z.ZodError, file: string, data: unknown, schema: z.ZodType, ctx: IssueContext = {}): ConfigIssue[] {
  const out: ConfigIssue[] = [];
  // A misspelt required key shows as "unknown key" plus "is required": report only the typo.
  const misspelt = new Set<string>();
  for (const issue of error.issues)
    if (issue.code === "unrecognized_keys")
      for (const key of issue.keys) {
        const s = didYouMean(key, shapeKeysAt(schema, issue.path as PropertyKey[]));
        if (s) misspelt.add(keyPathOf([...(issue.path as PropertyKey[]), s]));
      }
  for (const issue of error.issues) {
    const path = issue.path as PropertyKey[];
    if (issue.code === "unrecognized_keys") {
      const parent = valueAt(data, path) as Record<string, unknown> | undefined;
      const known = shapeKeysAt(schema, path);
      for (const key of issue.keys) {
        const table = parent !== undefined && isTable(parent[key]);
        const where = path.length ? `[${keyPathOf(path)}]` : "the top level";
        const inWhere = path.length ? `in ${where}` : "at the top level";
        const suggestion = didYouMean(key, known);
        const otherKeys = !path.length && ctx.other ? shapeKeysAt(ctx.other.schema, []) : [];
        let hint: string;
        const special = ctx.hints?.[keyPathOf([...path, key])];
        if (special) hint = special;
        else if (otherKeys.includes(key)) hint = `${table ? `[${key}]` : `\`${key}\``} belongs in ${ctx.other!.name}, not ${ctx.other!.here}`;
        else if (suggestion) hint = table ? `did you mean [${keyPathOf([...path, suggestion])}]?` : `did you mean \`${suggestion}\`?`;
        else {
          // A key that belongs in another table (`busybox_url` at the top level, `none` in [agent]).
          const home = allTables(schema).find((t) => keyPathOf(t.path) !== keyPathOf(path) && t.keys.includes(key));
          hint = home ? `\`${key}\` belongs in ${home.path.length ? `[${keyPathOf(home.path)}]` : "the top level"}, not ${where}` : known.length ? `${where} accepts: ${known.join(", ")}` : "remove it";
        }
        out.push({ file, keyPath: keyPathOf([...path, key]), message: table ? `unknown table [${keyPathOf([...path, key])}]` : `unknown key \`${key}\` ${inWhere}`, hint });
      }
      continue;
    }
    const got = valueAt(data, path);
    if (got === undefined && misspelt.has(keyPathOf(path))) continue;
    const last = path[path.length - 1];
    let message = issue.message;
    let hint: string | undefined;
    if (issue.code === "invalid_type" && got === undefined) {
      message = `is required (${EXPECTED[issue.expected] ?? issue.expected})`;
    } else if (issue.code === "invalid_type") {
      const expected = EXPECTED[issue.expected] ?? issue.expected;
      message = `expected ${expected}, got ${describeValue(got)}`;
      if (issue.expected === "string" && (typeof got === "number" || typeof got === "boolean") && typeof last === "string") hint = `quote it: ${last} = "${String(got)}"`;
      if (issue.expected === "int" && typeof got === "number") hint = `write a whole number, e.g. ${Math.round(got)}`;
    } else if (issue.code === "invalid_value") {
      const values = issue.values.map((v) => JSON.stringify(v));
      const want = values.length === 1 ? `must be ${values[0]}` : `must be one of ${values.join(", ")}`;
      message = got === undefined ? `is required: ${values.length === 1 ? values[0] : `one of ${values.join(", ")}`}` : `${want}, got ${describeValue(got)}`;
      if (got === undefined && values.length === 1 && typeof last === "string") hint = `add ${last} = ${values[0]}`;
      else if (typeof got === "string") {
        const s = didYouMean(got, issue.values.map(String));
        if (s) hint = `did you mean "${s}"?`;
      } else if (got !== undefined && issue.values.map(String).includes(String(got)) && typeof last === "string") {
        hint = `quote it: ${last} = "${String(got)}"`;
      }
    } else if (issue.code === "invalid_union") {
      const wanted = [
        ...new Set(
          issue.errors
            .map((e) => e[0])
            .filter((e) => e?.code === "invalid_type")
            .map((e) => EXPECTED[(e as { expected: string }).expected] ?? (e as { expected: string }).expected),
        ),
      ];
      if (wanted.length && got === undefined) message = `is required (${wanted.join(" or ")})`;
      else if (wanted.length === issue.errors.length) message = `expected ${wanted.join(" or ")}, got ${describeValue(got)}`;
      else {
        // The value has a right type but is wrong inside: report the closest branch's problems.
        const branch = issue.errors.find((e) => e.every((i) => i.code !== "invalid_type" || i.path.length > 0));
        if (branch) {
          const sub = zodIssues({ issues: branch.map((i) => ({ ...i, path: [...path, ...i.path] })) } as unknown as z.ZodError, file, data, schema, ctx);
          out.push(...sub);
          continue;
        }
        message = `has the wrong type: got ${describeValue(got)}`;
      }
    } else if (issue.code === "too_small" && issue.origin === "number") {
      message = issue.message.startsWith("Too small") ? `must be at least ${issue.minimum}, got ${String(got)}` : `${issue.message}, got ${String(got)}`;
    } else if (issue.code === "too_big" && issue.origin === "number") {
      message = issue.message.startsWith("Too big") ? `must be at most ${issue.maximum}, got ${String(got)}` : `${issue.message}, got ${String(got)}`;
    }
    out.push({ file, keyPath: keyPathOf(path), message, ...(hint ? { hint } : {}) });
  }
  return out;
}
