#!/usr/bin/env node
// Run by `npm run typecheck` and `npm test` before nx: every workspace (package.json "workspaces")
// has the nx target `typecheck` (its "typecheck" script runs tsc --noEmit) and a tsconfig.json
// whose "include" has "src" and which excludes nothing, so tests and test helpers are checked too.
// A new package that lacks either would otherwise be skipped by `nx run-many -t typecheck` in silence.
import { existsSync, readdirSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { fileURLToPath } from "node:url";

const root = fileURLToPath(new URL("..", import.meta.url));
const globs = JSON.parse(readFileSync(join(root, "package.json"), "utf8")).workspaces;
const dirs = globs.flatMap((g) => {
  if (!g.endsWith("/*")) return [g];
  const parent = g.slice(0, -2);
  return readdirSync(join(root, parent), { withFileTypes: true })
    .filter((d) => d.isDirectory())
    .map((d) => `${parent}/${d.name}`);
});

const problems = [];
let checked = 0;
for (const dir of dirs) {
  const pkgFile = join(root, dir, "package.json");
  if (!existsSync(pkgFile)) continue;
  checked++;
  const script = JSON.parse(readFileSync(pkgFile, "utf8")).scripts?.typecheck;
  if (typeof script !== "string" || !/\btsc --noEmit\b/.test(script)) problems.push(`${dir}/package.json: no "typecheck" script running tsc --noEmit (add "typecheck": "tsc --noEmit -p tsconfig.json")`);
  const tsconfigFile = join(root, dir, "tsconfig.json");
  if (!existsSync(tsconfigFile)) {
    problems.push(`${dir}: no tsconfig.json (copy packages/core/tsconfig.json)`);
    continue;
  }
  let tsconfig;
  try {
    tsconfig = JSON.parse(readFileSync(tsconfigFile, "utf8"));
  } catch (err) {
    problems.push(`${dir}/tsconfig.json: not plain JSON (${err.message})`);
    continue;
  }
  if (!tsconfig.include?.includes("src")) problems.push(`${dir}/tsconfig.json: "include" must have "src" (tests and helpers live there)`);
  if (tsconfig.exclude) problems.push(`${dir}/tsconfig.json: "exclude" would leave files unchecked; remove it`);
  if (!String(tsconfig.extends ?? "").endsWith("tsconfig.base.json")) problems.push(`${dir}/tsconfig.json: must extend the repository's tsconfig.base.json`);
}

if (problems.length) {
  process.stderr.write(`typecheck coverage: ${problems.length} problem${problems.length === 1 ? "" : "s"}\n${problems.map((p) => `  ${p}\n`).join("")}`);
  process.exit(1);
}
process.stdout.write(`typecheck coverage: all ${checked} workspaces have a typecheck target over src\n`);
