import { existsSync, readFileSync, readdirSync } from "node:fs";
import { dirname, join, resolve } from "node:path";
import { describe, expect, it } from "vitest";
import { jsonSchemaText } from "./json-schema.js";
import { checkFledgeConfig } from "./fledge.js";
import { checkManifestToml } from "./manifest-toml.js";

const pkg = new URL("..", import.meta.url).pathname;
const examples = resolve(pkg, "../../examples");

describe("JSON Schemas for editors", () => {
  it.each(["fledge", "manifest"] as const)("schema/%s.schema.json is what the zod schema generates (run `npm run schema -w @fledge/config` after a change)", (which) => {
    expect(readFileSync(join(pkg, "schema", `${which}.schema.json`), "utf8")).toBe(jsonSchemaText(which));
  });

  it("documents every key", () => {
    const undocumented: string[] = [];
    type Schema = { description?: string; properties?: Record<string, Schema>; anyOf?: Schema[] };
    const walk = (s: Schema, path: string) => {
      for (const [k, v] of Object.entries(s.properties ?? {})) {
        const inner = v.anyOf?.find((o) => o.properties) ?? v;
        if (!v.description && !inner.description && k !== "name" && !path.includes("expose")) undocumented.push(`${path}${k}`);
        walk(inner, `${path}${k}.`);
      }
    };
    walk(JSON.parse(jsonSchemaText("fledge")), "");
    expect(undocumented).toEqual([]);
  });
});

describe("examples/", () => {
  const dirs = readdirSync(examples).filter((d) => existsSync(join(examples, d, "fledge.toml")));
  it("has examples", () => expect(dirs.length).toBeGreaterThan(0));

  it.each(dirs)("%s: fledge.toml and manifest.toml reference the committed schemas and validate", (d) => {
    for (const [file, schema] of [
      ["fledge.toml", "fledge.schema.json"],
      ["manifest.toml", "manifest.schema.json"],
    ] as const) {
      const path = join(examples, d, file);
      if (!existsSync(path)) continue;
      const text = readFileSync(path, "utf8");
      const ref = /^#:schema (\S+)$/m.exec(text)?.[1];
      expect(ref, `${path} starts with #:schema`).toBeDefined();
      expect(resolve(dirname(path), ref!)).toBe(join(pkg, "schema", schema));
      const r = file === "fledge.toml" ? checkFledgeConfig(text, path) : checkManifestToml(text, path);
      expect(r.problems).toEqual([]);
    }
  });
});
