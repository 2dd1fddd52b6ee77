// npm run bench: fledge against the Go fledge's pipeline and bsdtar|pigz on one generated tree.
// Not a test: prints one table (medians of several runs) with the machine and the date.
import { spawnSync } from "node:child_process";
import { existsSync, mkdirSync, mkdtempSync, readdirSync, rmSync, statSync, writeFileSync } from "node:fs";
import { cpus, tmpdir, totalmem } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { rng32 } from "../src/test/rng.mjs";

const args = new Set(process.argv.slice(2));
const RUNS = Number(process.env.BENCH_RUNS ?? 3);
const MB = Number(process.env.BENCH_TREE_MB ?? 160);
const here = fileURLToPath(new URL(".", import.meta.url));
const runner = join(here, "fledge-run.mjs");
const work = mkdtempSync(join(process.env.BENCH_DIR ?? tmpdir(), "fledge-bench-"));
const haveTime = existsSync("/usr/bin/time");

/** The Node to measure: the one running the bench, or BENCH_NODE. */
function hostNode() {
  return process.env.BENCH_NODE ?? process.execPath;
}
const NODE = hostNode();
const NODE_VERSION = spawnSync(NODE, ["--version"], { encoding: "utf8" }).stdout.trim();

// ---- deterministic reference tree ----------------------------------------------------------
const WORDS = "the of and to in is for on that with as are be this by from at or an it not which have has config init mount kernel device driver plugin volant fledge busybox agent module static const return if else while struct int char void unsigned long size_t null true false error warning debug http https server client request response buffer stream".split(" ");

function textFile(r, size) {
  const parts = [];
  let n = 0;
  while (n < size) {
    const line = [];
    const words = 3 + (r() % 12);
    for (let i = 0; i < words; i++) line.push(WORDS[r() % WORDS.length]);
    const s = "  ".repeat(r() % 4) + line.join(" ") + (r() % 5 === 0 ? ` ${r() % 100000};` : "") + "\n";
    parts.push(s);
    n += s.length;
  }
  return Buffer.from(parts.join("")).subarray(0, size);
}

function binaryFile(r, size, snippets) {
  // Machine-code-like: a vocabulary of instruction snippets, random immediates, some tables.
  const b = Buffer.alloc(size);
  let p = 0;
  while (p < size) {
    const k = r() % 100;
    if (k < 82) {
      const s = snippets[(r() % 64) * (r() % 8)];
      s.copy(b, p);
      p += s.length;
    } else if (k < 93) {
      b.writeUInt16LE(r() & 0x3ff, Math.min(p, size - 2));
      p += 2;
    } else if (k < 96) {
      const n = 4 + (r() % 16);
      for (let i = 0; i < n && p < size; i++) b[p++] = r() & 0xff;
    } else p += 16 + (r() % 48); // zero padding
  }
  return b;
}

function randomFile(r, size) {
  const b = Buffer.alloc(size);
  for (let i = 0; i + 4 <= size; i += 4) b.writeUInt32LE(r(), i);
  return b;
}

function generate(root, totalMb) {
  const r = rng32(20241125);
  const snippets = Array.from({ length: 512 }, () => randomFile(r, 3 + (r() % 10)));
  const target = totalMb * 1e6;
  let bytes = 0;
  let files = 0;
  const dirs = [];
  for (let i = 0; i < 60; i++) {
    const d = join(root, ["usr/lib", "usr/share/doc", "etc", "opt/app", "usr/bin", "srv/www"][i % 6], `pkg${i}`);
    mkdirSync(d, { recursive: true });
    dirs.push(d);
  }
  // A few large binaries (the agent, a runtime) ...
  for (let i = 0; i < Math.max(4, Math.round(totalMb / 40)); i++) {
    const size = 8e6 + (r() % 6e6);
    writeFileSync(join(root, "usr/bin", `big${i}`), binaryFile(r, size, snippets), { mode: 0o755 });
    bytes += size;
    files++;
  }
  // ... and thousands of small and mid-size files: text, binaries, already-compressed assets.
  while (bytes < target || files < 3000) {
    if (files % 500 === 0) process.stderr.write(`  ${files} files, ${(bytes / 1e6).toFixed(0)} MB\r`);
    const d = dirs[r() % dirs.length];
    const kind = r() % 20;
    const size = kind < 10 ? 200 + (r() % 30000) : kind < 19 ? 2000 + (r() % 150000) : 1000 + (r() % 60000);
    const data = kind < 10 ? textFile(r, size) : kind < 19 ? binaryFile(r, size, snippets) : randomFile(r, size);
    writeFileSync(join(d, `f${files}`), data, { mode: kind < 10 ? 0o644 : 0o755 });
    bytes += size;
    files++;
  }
  return { bytes, files };
}

// ---- measuring ------------------------------------------------------------------------------
function timed(cmd) {
  const shell = haveTime ? ["/usr/bin/time", ["-f", "@@%e %M", "sh", "-c", cmd]] : ["sh", ["-c", cmd]];
  const t0 = performance.now();
  const r = spawnSync(shell[0], shell[1], { encoding: "utf8", maxBuffer: 1 << 26 });
  const ms = performance.now() - t0;
  if (r.status !== 0) throw new Error(`${cmd} failed: ${r.stderr}`);
  const m = /@@([\d.]+) (\d+)/.exec(r.stderr ?? "");
  return { ms, rssKb: m ? Number(m[2]) : undefined, stdout: r.stdout };
}

const median = (xs) => [...xs].sort((a, b) => a - b)[Math.floor((xs.length - 1) / 2)];

function measure(label, mkCmd, out, runs = RUNS, before) {
  const res = [];
  for (let i = 0; i < runs; i++) {
    before?.(i);
    const r = timed(mkCmd(i));
    res.push({ ...r, size: statSync(out).size });
    process.stderr.write(`  ${label} run ${i + 1}/${runs}: ${(r.ms / 1000).toFixed(2)} s\n`);
  }
  return { label, ms: median(res.map((x) => x.ms)), rssKb: median(res.map((x) => x.rssKb ?? NaN)), size: res[0].size, runs };
}

const tree = join(work, "tree");
mkdirSync(tree);
process.stderr.write(`generating a ${MB} MB reference tree in ${tree} …\n`);
const gen = generate(tree, MB);
const q = (s) => `'${s.replace(/'/g, "'\\''")}'`;
const out = (n) => join(work, n);
const rows = [];
try {
  rows.push(measure("Go fledge: find | cpio -o -H newc | gzip -9", () => `cd ${q(tree)} && find . | cpio -o -H newc --quiet | gzip -9 > ${q(out("go.cpio.gz"))}`, out("go.cpio.gz")));
  rows.push(measure("bsdtar --format newc | pigz", () => `bsdtar --format newc -cf - -C ${q(tree)} . | pigz > ${q(out("bsdtar.cpio.gz"))}`, out("bsdtar.cpio.gz")));
  for (const c of ["gzip", "zstd", "xz", "lz4", "none"]) {
    const file = out(`fledge.${c}`);
    // Cold: a fresh segment cache each run (cache writes included in the time).
    rows.push(measure(`fledge ${c} (cold)`, (i) => `${q(NODE)} ${q(runner)} ${q(tree)} ${q(file)} ${c} ${q(out(`cache-${c}-${i}`))}`, file, c === "xz" ? 1 : RUNS));
  }
  // Warm: the cache from a cold gzip build, then one mapped file changed per run.
  const cache = out("cache-warm");
  const changed = join(tree, "usr/lib/pkg0", readdirSync(join(tree, "usr/lib/pkg0")).sort()[0]);
  timed(`${q(NODE)} ${q(runner)} ${q(tree)} ${q(out("warm.gz"))} gzip ${q(cache)}`);
  rows.push(
    measure(
      "fledge gzip, warm rebuild after a one-file change",
      () => `${q(NODE)} ${q(runner)} ${q(tree)} ${q(out("warm.gz"))} gzip ${q(cache)}`,
      out("warm.gz"),
      RUNS,
      // Rewrite one existing file (new content, new size): one mapped file changed.
      (i) => writeFileSync(changed, `changed content, run ${i}\n`.repeat(1000 + i * 100)),
    ),
  );
  if (args.has("--rss-1g")) {
    // Peak RSS must not grow with the tree: one gzip build of a 1 GB tree.
    const big = join(work, "tree-1g");
    mkdirSync(big);
    process.stderr.write("generating a 1 GB tree …\n");
    const g = generate(big, 1024);
    rows.push({ ...measure(`fledge gzip (cold), 1 GB tree (${g.files} files)`, () => `${q(NODE)} ${q(runner)} ${q(big)} ${q(out("big.gz"))} gzip`, out("big.gz"), 1), noRatio: true });
    rmSync(big, { recursive: true, force: true });
  }
} finally {
  if (!args.has("--keep")) rmSync(work, { recursive: true, force: true });
}

const go = rows[0];
const gzip9 = go.size;
const lines = [];
const cpu = cpus()[0]?.model ?? "unknown CPU";
lines.push(`fledge benchmark — ${new Date().toISOString().slice(0, 10)}, ${cpu}, ${cpus().length} cores, ${Math.round(totalmem() / 2 ** 30)} GiB, Node ${NODE_VERSION}`);
lines.push(`tree: ${gen.files} files, ${(gen.bytes / 1e6).toFixed(1)} MB (generated, deterministic); medians of ${RUNS} runs (xz: 1)`);
lines.push("");
lines.push("| pipeline | wall time | vs Go fledge | output size | vs gzip -9 | peak RSS |");
lines.push("| --- | ---: | ---: | ---: | ---: | ---: |");
for (const r of rows) {
  lines.push(
    `| ${r.label.replace(/\|/g, "\\|")} | ${(r.ms / 1000).toFixed(2)} s | ${(go.ms / r.ms).toFixed(1)}x | ${(r.size / 1e6).toFixed(2)} MB | ${r.label.includes("none") || r.noRatio ? "—" : `${((r.size / gzip9 - 1) * 100).toFixed(2)}%`} | ${Number.isNaN(r.rssKb) ? "n/a" : `${Math.round(r.rssKb / 1024)} MB`} |`,
  );
}
const cold = rows.find((r) => r.label === "fledge gzip (cold)");
const warm = rows.find((r) => r.label.includes("warm rebuild"));
lines.push("");
lines.push(`warm rebuild / cold build (gzip): ${((warm.ms / cold.ms) * 100).toFixed(1)}%`);
console.log(lines.join("\n"));
