import { readFileSync } from "node:fs";
import AjvModule, { type ErrorObject } from "ajv";

// ajv is CommonJS: from ESM its class is the default export's `default`.
const Ajv = ((AjvModule as unknown as { default?: typeof AjvModule.default }).default ?? AjvModule) as typeof AjvModule.default;

export const VENDORED_SCHEMA = new URL("../schema/plugin-manifest-v1.json", import.meta.url).pathname;

/** A real JSON Schema (draft-07) validator for a schema file: returns its errors, empty when valid. */
export function jsonSchemaValidator(schemaFile: string): (value: unknown) => string[] {
  const ajv = new Ajv({ allErrors: true, strict: false });
  const validate = ajv.compile(JSON.parse(readFileSync(schemaFile, "utf8")));
  return (value) => (validate(value) ? [] : (validate.errors ?? []).map((e: ErrorObject) => `${e.instancePath || "/"} ${e.message}`));
}
