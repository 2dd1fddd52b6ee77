import { z } from "zod";
import { FledgeTomlInput } from "./schema.js";
import { ManifestTomlInput } from "./manifest-toml.js";

/** Where the committed schemas are published (packages/config/schema/ in the repository). */
const SCHEMA_BASE = "https://raw.githubusercontent.com/fledge/fledge/main/packages/config/schema";

function generate(schema: z.ZodType, id: string, title: string): Record<string, unknown> {
  const json = z.toJSONSchema(schema, { io: "input", target: "draft-7", unrepresentable: "throw" }) as Record<string, unknown>;
  const { $schema, ...rest } = json;
  return { $schema, $id: `${SCHEMA_BASE}/${id}`, title, ...rest };
}

/** JSON Schema (draft-07) of fledge.toml, generated from the zod schema, for editors (taplo, VS Code). */
export function fledgeTomlJsonSchema(): Record<string, unknown> {
  return generate(FledgeTomlInput, "fledge.schema.json", "fledge.toml v1");
}

/** JSON Schema (draft-07) of manifest.toml, generated from the zod schema. */
export function manifestTomlJsonSchema(): Record<string, unknown> {
  return generate(ManifestTomlInput, "manifest.schema.json", "fledge manifest.toml v1");
}

/** The schema text as committed under packages/config/schema/ and printed by `fledge schema`. */
export function jsonSchemaText(which: "fledge" | "manifest"): string {
  return JSON.stringify(which === "fledge" ? fledgeTomlJsonSchema() : manifestTomlJsonSchema(), null, 2) + "\n";
}
