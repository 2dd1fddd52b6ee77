import { execFileSync } from "node:child_process";
import { mkdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { createRequire } from "node:module";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { describe, expect, it } from "vitest";

const DOCS = fileURLToPath(new URL("../../../docs/plugins.md", import.meta.url));
const PKG = fileURLToPath(new URL("..", import.meta.url));
const TSC = createRequire(import.meta.url).resolve("typescript/bin/tsc");

/** The ```ts blocks of a markdown file, in order. */
export function tsBlocks(markdown: string): string[] {
  return [...markdown.matchAll(/^```ts\n([\s\S]*?)^```$/gm)].map((m) => m[1]!);
}

describe("the repository's docs stand alone", () => {
  it("no file cites a design document outside the repository", () => {
    const root = fileURLToPath(new URL("../../..", import.meta.url));
    const files = execFileSync("git", ["ls-files", "-z"], { cwd: root, encoding: "utf8" })
      .split("\0")
      .filter((f) => /\.(ts|mts|mjs|js|md|json|sh|c)$/.test(f));
    const citing = files.filter((f) => {
      try {
        return /DESIGN\.md/.test(readFileSync(join(root, f), "utf8"));
      } catch {
        return false; // listed but not on disk (a deletion not yet committed)
      }
    });
    expect(citing).toEqual([]);
  });
});

describe("docs/plugins.md", () => {
  it("every ts code block type-checks against the built @fledge/core (strict, as a plugin author compiles)", { timeout: 120_000 }, () => {
    const blocks = tsBlocks(readFileSync(DOCS, "utf8"));
    expect(blocks.length).toBeGreaterThanOrEqual(10);
    // Inside the package, so `@fledge/core` resolves like a dependency (the workspace link to dist).
    const dir = join(PKG, "node_modules", ".cache", `docs-check-${process.pid}`);
    rmSync(dir, { recursive: true, force: true });
    mkdirSync(dir, { recursive: true });
    try {
      for (const [i, b] of blocks.entries()) writeFileSync(join(dir, `block${i + 1}.ts`), b);
      // The testing example imports the plugin of the first example.
      writeFileSync(join(dir, "motd.ts"), blocks[0]!);
      writeFileSync(
        join(dir, "tsconfig.json"),
        JSON.stringify({
          compilerOptions: { target: "ES2022", module: "NodeNext", moduleResolution: "NodeNext", strict: true, noEmit: true, types: ["node"], skipLibCheck: true, noUncheckedIndexedAccess: true },
          include: ["*.ts"],
        }),
      );
      writeFileSync(join(dir, "package.json"), JSON.stringify({ type: "module" }));
      let out = "";
      try {
        execFileSync(process.execPath, [TSC, "-p", dir], { encoding: "utf8" });
      } catch (e) {
        out = (e as { stdout?: string }).stdout ?? String(e);
      }
      expect(out.replaceAll(dir + "/", "")).toBe("");
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
