// Regenerates schema/*.json from the zod schemas (run after `npm run build`).
// src/json-schema.test.ts fails when the committed files differ from what this writes.
import { writeFileSync } from "node:fs";
import { jsonSchemaText } from "../dist/index.js";

for (const which of ["fledge", "manifest"]) {
  const url = new URL(`../schema/${which}.schema.json`, import.meta.url);
  writeFileSync(url, jsonSchemaText(which));
  console.log(`wrote ${url.pathname}`);
}
