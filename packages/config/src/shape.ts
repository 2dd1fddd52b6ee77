import type { z } from "zod";

/** The keys a zod object schema accepts at a path (used for "did you mean" hints). */
export function shapeKeysAt(schema: z.ZodType, path: PropertyKey[]): string[] {
  let s: any = schema;
  const unwrap = () => {
    while (s && ["optional", "default", "nullable", "prefault", "pipe"].includes(s._zod?.def?.type)) {
      s = s._zod.def.type === "pipe" ? s._zod.def.in : s._zod.def.innerType;
    }
  };
  unwrap();
  for (const p of path) {
    const def = s?._zod?.def;
    if (def?.type === "object") s = def.shape[p as string];
    else if (def?.type === "record") s = def.valueType;
    else if (def?.type === "array") s = def.element;
    else return [];
    unwrap();
  }
  const def = s?._zod?.def;
  return def?.type === "object" ? Object.keys(def.shape) : [];
}
