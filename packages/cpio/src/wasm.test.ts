import { execFileSync, spawnSync } from "node:child_process";
import { createHash } from "node:crypto";
import { cpSync, existsSync, mkdtempSync, readFileSync, readdirSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { afterAll, describe, expect, it } from "vitest";
import { WASM_SHA256 } from "./codecs.js";
import { loadWasm, seaAssetKey, wasmModule, type WasmName } from "./wasm.js";

const pkgDir = fileURLToPath(new URL("..", import.meta.url));
const MODULES = ["deflate", "zstd", "xz"] as const;
const shipped = (m: string) => existsSync(join(pkgDir, "wasm", `${m}.wasm`));
const sha256 = (path: string) => createHash("sha256").update(readFileSync(path)).digest("hex");

function buildInfo(m: string): Record<string, string> {
  const out: Record<string, string> = {};
  for (const line of readFileSync(join(pkgDir, "wasm", `${m}.wasm.buildinfo`), "utf8").split("\n")) {
    const x = /^(\w+) (.*)$/.exec(line);
    if (x && !line.startsWith("#")) out[x[1]!] = x[2]!;
  }
  return out;
}

/** What build.sh records about the toolchain here, or undefined when it is not installed. */
function hostToolchain(): { cc: string; ld: string; libc: string } | undefined {
  const cc = spawnSync("clang", ["--version"], { encoding: "utf8" });
  const ld = spawnSync("wasm-ld", ["--version"], { encoding: "utf8" });
  if (cc.status !== 0 || ld.status !== 0 || !existsSync("/usr/lib/wasm32-wasi/libc.a")) return undefined;
  // biome-ignore lint/suspicious/noTemplateCurlyInString: dpkg-query's own format syntax
  const libc = spawnSync("dpkg-query", ["-W", "-f", "${Version}", "wasi-libc"], { encoding: "utf8" });
  return { cc: cc.stdout.split("\n")[0]!, ld: ld.stdout.split("\n")[0]!, libc: `wasi-libc ${libc.status === 0 && libc.stdout ? libc.stdout : "unknown"}` };
}

describe("the committed WebAssembly modules", () => {
  for (const m of MODULES.filter(shipped)) {
    it(`${m}.wasm matches its .buildinfo, imports nothing, and its id prefix is in the codec id`, () => {
      const info = buildInfo(m);
      const path = join(pkgDir, "wasm", `${m}.wasm`);
      expect(info.module).toBe(m);
      expect(sha256(path)).toBe(info.sha256);
      expect(readFileSync(path).length).toBe(Number(info.size));
      expect(WebAssembly.Module.imports(wasmModule(`${m}.wasm` as WasmName))).toEqual([]);
      if (m in WASM_SHA256) expect(info.sha256!.startsWith(WASM_SHA256[m as keyof typeof WASM_SHA256])).toBe(true);
    });
  }

  it("loadWasm reads the module next to dist/ (outside a single executable) and names the SEA asset key", () => {
    expect(Buffer.compare(Buffer.from(loadWasm("deflate.wasm")), readFileSync(join(pkgDir, "wasm", "deflate.wasm")))).toBe(0);
    expect(seaAssetKey("zstd.wasm")).toBe("@fledge/cpio/wasm/zstd.wasm");
  });
});

const tmps: string[] = [];
afterAll(() => {
  for (const t of tmps) rmSync(t, { recursive: true, force: true });
});

describe("reproducible rebuild of the modules from their pinned sources", () => {
  const toolchain = hostToolchain();
  it.skipIf(!toolchain)(
    toolchain
      ? "a rebuild from a copy of wasm-src/ elsewhere gives the committed bytes (same toolchain) or another rebuild's"
      : "SKIPPED: the rebuild needs Debian's clang, lld and wasi-libc, which are not installed here",
    () => {
      // A copy at another path, with another TZ and locale, so none of them can leak into the bytes.
      const copy = mkdtempSync(join(tmpdir(), "fledge-wasm-copy-"));
      tmps.push(copy);
      cpSync(join(pkgDir, "wasm-src"), join(copy, "wasm-src"), { recursive: true });
      const sources = join(pkgDir, "..", "..", ".cache", "wasm-src");
      const build = (script: string, out: string, env: Record<string, string>) => execFileSync("sh", [script, "--out", out], { stdio: "pipe", env: { ...process.env, FLEDGE_WASM_SOURCES: sources, ...env } });
      const outA = join(copy, "out");
      build(join(copy, "wasm-src", "build.sh"), outA, { TZ: "Pacific/Kiritimati", LC_ALL: "C.UTF-8" });
      const built = readdirSync(outA)
        .filter((f) => f.endsWith(".wasm"))
        .sort();
      expect(built).toEqual(MODULES.map((m) => `${m}.wasm`).sort());
      const same = MODULES.every((m) => {
        const info = buildInfo(m);
        return info.cc === toolchain!.cc && info.ld === toolchain!.ld && info.libc === toolchain!.libc;
      });
      if (same) {
        for (const m of MODULES) expect(sha256(join(outA, `${m}.wasm`)), `${m}.wasm rebuilt`).toBe(buildInfo(m).sha256);
        return;
      }
      // Another toolchain: its output may differ from the committed one, but never between two runs.
      console.warn(`wasm: the toolchain here (${toolchain!.cc}, ${toolchain!.ld}, ${toolchain!.libc}) is not the committed modules' (${buildInfo("deflate").cc}): compared two rebuilds only`);
      const outB = mkdtempSync(join(tmpdir(), "fledge-wasm-out-"));
      tmps.push(outB);
      build(join(pkgDir, "wasm-src", "build.sh"), outB, {});
      for (const f of built) expect(sha256(join(outB, f)), f).toBe(sha256(join(outA, f)));
    },
    300_000,
  );
});
