// biome-ignore-all lint/suspicious/noExplicitAny: this file walks zod's untyped internals (`_zod.def`), whose shape zod does not export
import type { z } from "zod";

const WRAPPERS = ["optional", "default", "nullable", "prefault", "pipe", "readonly", "catch"];

function unwrap(s: any): any {
  while (s && WRAPPERS.includes(s._zod?.def?.type)) s = s._zod.def.type === "pipe" ? s._zod.def.in : s._zod.def.innerType;
  return s;
}

/** The object schema inside unions (`string | { … }`), if there is exactly one. */
function objectIn(s: any): any {
  s = unwrap(s);
  const def = s?._zod?.def;
  if (def?.type === "union") {
    const objs = def.options.map(unwrap).filter((o: any) => o?._zod?.def?.type === "object" || o?._zod?.def?.type === "array");
    return objs.length === 1 ? objs[0] : s;
  }
  return s;
}

/** The schema at a key path, looking through optional/default wrappers, records and arrays. */
export function schemaAt(schema: z.ZodType, path: readonly PropertyKey[]): any {
  let s: any = objectIn(schema);
  for (const p of path) {
    const def = s?._zod?.def;
    if (def?.type === "object") s = def.shape[p as string];
    else if (def?.type === "record") s = def.valueType;
    else if (def?.type === "array") s = def.element;
    else return undefined;
    s = objectIn(s);
  }
  return s;
}

/** The keys a zod object schema accepts at a path (used for "did you mean" hints). */
export function shapeKeysAt(schema: z.ZodType, path: readonly PropertyKey[]): string[] {
  const def = schemaAt(schema, path)?._zod?.def;
  return def?.type === "object" ? Object.keys(def.shape) : [];
}

/** Every fixed-key table of a schema with its keys (records are not walked: their keys are free). */
export function allTables(schema: z.ZodType): { path: string[]; keys: string[] }[] {
  const out: { path: string[]; keys: string[] }[] = [];
  const walk = (s: any, path: string[]) => {
    s = objectIn(s);
    const def = s?._zod?.def;
    if (def?.type === "array") return walk(def.element, path);
    if (def?.type !== "object") return;
    out.push({ path, keys: Object.keys(def.shape) });
    for (const [k, v] of Object.entries(def.shape)) walk(v, [...path, k]);
  };
  walk(schema, []);
  return out;
}

/**
 * What can be kept of data that failed the schema: every value that is valid on its own, so the
 * rules that look across keys can still run and report their problems in the same pass.
 */
export function salvage(schema: z.ZodType, data: unknown): unknown {
  const whole = (schema as z.ZodType).safeParse(data);
  if (whole.success) return whole.data;
  if (data === undefined || data === null) return undefined;
  const s = unwrap(schema);
  const def = s?._zod?.def;
  const plain = typeof data === "object" && !Array.isArray(data) && !(data instanceof Date);
  if (def?.type === "object" && plain) {
    const out: Record<string, unknown> = {};
    for (const [k, sub] of Object.entries(def.shape as Record<string, z.ZodType>)) {
      const v = salvage(sub, (data as Record<string, unknown>)[k]);
      if (v !== undefined) out[k] = v;
    }
    return out;
  }
  if (def?.type === "record" && plain) {
    const out: Record<string, unknown> = {};
    for (const [k, v] of Object.entries(data as Record<string, unknown>)) {
      const r = def.valueType.safeParse(v);
      if (r.success) out[k] = r.data;
    }
    return out;
  }
  return undefined;
}
