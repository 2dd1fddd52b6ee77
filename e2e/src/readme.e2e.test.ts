import { spawnSync } from "node:child_process";
import { cpSync, existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, symlinkSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { afterAll, expect, it } from "vitest";
import { hostBusybox } from "./qemu.js";

/**
 * README's "Using fledge" block, run as written with bash -e: `fledge` is what `npm ci` linked
 * into node_modules/.bin (the committed bin entry), in a copy of the repository's examples.
 */
const repo = fileURLToPath(new URL("../../", import.meta.url));
const work = mkdtempSync(join(tmpdir(), "fledge-e2e-readme-"));
afterAll(() => rmSync(work, { recursive: true, force: true }));

function usingFledgeBlock(): string {
  const readme = readFileSync(join(repo, "README.md"), "utf8");
  const section = readme.slice(readme.indexOf("## Using fledge"));
  const m = /```bash\n([\s\S]*?)```/.exec(section);
  if (!m) throw new Error('README.md has no bash block under "## Using fledge"');
  return m[1]!;
}

it('README\'s "Using fledge" commands run as written after npm ci && npm run build', () => {
  hostBusybox(); // the block's mirror reads Debian's busybox-static from /bin
  expect(existsSync(join(repo, "node_modules", ".bin", "fledge")), "npm ci links node_modules/.bin/fledge").toBe(true);
  mkdirSync(join(work, "examples"));
  cpSync(join(repo, "examples", "hello"), join(work, "examples", "hello"), {
    recursive: true,
    filter: (src) => !/plugin\.cpio\.gz$|\.manifest\.json$|fledge\.lock$/.test(src),
  });
  // the example's #:schema lines point into packages/; the commands don't need them
  symlinkSync(join(repo, "node_modules"), join(work, "node_modules"));
  const block = usingFledgeBlock();
  const r = spawnSync("bash", ["-euo", "pipefail", "-x", "-c", block], {
    cwd: work,
    encoding: "utf8",
    env: {
      PATH: process.env
        .PATH!.split(":")
        .filter((p) => !p.includes("node_modules"))
        .join(":"),
      HOME: work,
      FLEDGE_CACHE_DIR: join(work, "cache"),
      NO_COLOR: "1",
    },
    timeout: 120_000,
  });
  expect(r.status, `${r.stdout}\n${r.stderr}`).toBe(0);
  expect(r.stdout).toMatch(/^fledge \d+\.\d+\.\d+/m);
  expect(existsSync(join(work, "examples", "hello", "plugin.cpio.gz"))).toBe(true);
  expect(existsSync(join(work, "examples", "hello", "hello.manifest.json"))).toBe(true);
  expect(existsSync("/tmp/hello.cpio.gz")).toBe(true);
  // every line ran (bash -x echoes each command it runs)
  const ran = r.stderr.split("\n").filter((l) => l.startsWith("+ fledge")).length;
  expect(ran).toBe(block.split("\n").filter((l) => l.startsWith("fledge")).length);
});
