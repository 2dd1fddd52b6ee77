// npm run bench: fledge (the real CLI, whole processes) side by side with the tools a user would
// pick instead, on a real tree (a copy of four Debian directories, ~300 MB) and a generated one.
// Not a test: prints the table for each tree (medians of alternating runs, GNU time's
// wall, CPU and peak RSS), the warm rebuild, the 1 GB tree's peak RSS per compressor, the hello
// example's cold start, and which targets are met, with the date, the machine and its load.
//
// Env: BENCH_RUNS (default 5; the gzip -9 and xz rows run 3 and 1 times), BENCH_TREE_MB (generated
// tree, default 160), BENCH_DIR (work dir, default the system temp dir), BENCH_NODE (Node to measure).
// Flags: --rss-1g (the 1 GB tree, every compressor once), --no-real / --no-generated, --keep.
import { spawnSync } from "node:child_process";
import { existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync } from "node:fs";
import { cpus, loadavg, release, tmpdir, totalmem } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { rng32 } from "../src/test/rng.mjs";

const args = new Set(process.argv.slice(2));
const RUNS = Number(process.env.BENCH_RUNS ?? 5);
const MB = Number(process.env.BENCH_TREE_MB ?? 160);
const here = fileURLToPath(new URL(".", import.meta.url));
const repo = join(here, "../../..");
const CLI = join(repo, "packages/cli/dist/bin.js");
const work = mkdtempSync(join(process.env.BENCH_DIR ?? tmpdir(), "fledge-bench-"));
if (!existsSync("/usr/bin/time")) throw new Error("GNU time is needed for peak RSS: apt-get install time (scripts/install-e2e-deps.sh)");
const NODE = process.env.BENCH_NODE ?? process.execPath;
const NODE_VERSION = spawnSync(NODE, ["--version"], { encoding: "utf8" }).stdout.trim();
const log = (s) => process.stderr.write(s + "\n");
const q = (s) => `'${String(s).replace(/'/g, "'\\''")}'`;

// ---- deterministic reference tree ----------------------------------------------------------
const WORDS =
  "the of and to in is for on that with as are be this by from at or an it not which have has config init mount kernel device driver plugin volant fledge busybox agent module static const return if else while struct int char void unsigned long size_t null true false error warning debug http https server client request response buffer stream".split(
    " ",
  );

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
/** One whole process (a shell pipeline) under GNU time: wall, CPU (user + sys), peak RSS of its largest process. */
function timed(cmd, env) {
  const r = spawnSync("/usr/bin/time", ["-f", "@@%e %U %S %M", "sh", "-c", cmd], { encoding: "utf8", maxBuffer: 1 << 26, env: { ...process.env, ...env } });
  const m = /@@([\d.]+) ([\d.]+) ([\d.]+) (\d+)\s*$/.exec(r.stderr ?? "");
  if (r.status !== 0 || !m) throw new Error(`${cmd} failed (${r.status}): ${r.stderr}`);
  return { wall: Number(m[1]), cpu: Number(m[2]) + Number(m[3]), rssKb: Number(m[4]) };
}
const median = (xs) => [...xs].sort((a, b) => a - b)[Math.floor((xs.length - 1) / 2)];

/** A fledge project that maps `tree` to /opt/tree, without busybox, as the issue measured it. */
function project(dir, tree) {
  mkdirSync(dir, { recursive: true });
  writeFileSync(join(dir, "init"), "#!/opt/tree/bin/true\n", { mode: 0o755 });
  writeFileSync(join(dir, "fledge.toml"), `version = "1"\nstrategy = "initramfs"\n\n[init]\npath = "./init"\n\n[source]\nbusybox = false\n\n[mappings]\n${JSON.stringify(tree)} = "/opt/tree"\n`);
  writeFileSync(join(dir, "manifest.toml"), `name = "bench"\nversion = "0.1.0"\nruntime = "bench"\n\n[workload]\nentrypoint = "/init"\nbase_url = "http://127.0.0.1:8000"\n`);
  return dir;
}

let cacheSeq = 0;
const fledge = (proj, out, c, cache) => `${q(NODE)} ${q(CLI)} build -q -C ${q(proj)} -o ${q(out)} --compression ${c} --cache-dir ${q(cache)} 2>/dev/null`;

/**
 * Every pipeline of the table (plus xz and lz4), run in alternation: round 1 runs each
 * once, then round 2, … so that load from other jobs hits all of them alike.
 */
function benchTree(name, tree) {
  const dir = join(work, name);
  const proj = project(join(dir, "project"), tree);
  const out = (f) => join(dir, f);
  const fresh = () => join(dir, `cache-${cacheSeq++}`);
  const fledgeRow = (c, label, runs = RUNS) => ({ label, runs, out: out(`fledge.${c}`), cmd: () => fledge(proj, out(`fledge.${c}`), c, fresh()), fledge: c });
  const rows = [
    fledgeRow("gzip", "fledge gzip (level 6)"),
    { label: "Go fledge: find | cpio -o -H newc | gzip -n -9", runs: Math.min(RUNS, 3), out: out("go.gz"), cmd: () => `cd ${q(tree)} && find . | cpio -o -H newc --quiet | gzip -n -9 > ${q(out("go.gz"))}` },
    { label: "bsdtar --format newc | pigz -6", runs: RUNS, out: out("pigz.gz"), cmd: () => `bsdtar --format newc -cf - -C ${q(tree)} . | pigz -6 > ${q(out("pigz.gz"))}` },
    fledgeRow("zstd", "fledge zstd (level 3)"),
    { label: "find | cpio -o -H newc | zstd -3 -T0", runs: RUNS, out: out("cpio.zst"), cmd: () => `cd ${q(tree)} && find . | cpio -o -H newc --quiet | zstd -q -3 -T0 > ${q(out("cpio.zst"))}` },
    fledgeRow("none", "fledge none"),
    { label: "find | cpio -o -H newc > file", runs: RUNS, out: out("plain.cpio"), cmd: () => `cd ${q(tree)} && find . | cpio -o -H newc --quiet > ${q(out("plain.cpio"))}` },
    fledgeRow("xz", "fledge xz (level 6)", 1),
    fledgeRow("lz4", "fledge lz4", Math.min(RUNS, 3)),
  ];
  const results = rows.map(() => []);
  const rounds = Math.max(...rows.map((r) => r.runs));
  for (let round = 0; round < rounds; round++) {
    rows.forEach((r, i) => {
      if (round >= r.runs) return;
      const m = timed(r.cmd());
      m.size = statSync(r.out).size;
      results[i].push(m);
      log(`  ${name}: ${r.label} run ${round + 1}/${r.runs}: ${m.wall.toFixed(2)} s, ${Math.round(m.rssKb / 1024)} MB`);
      for (const d of readdirSync(dir)) if (d.startsWith("cache-")) rmSync(join(dir, d), { recursive: true, force: true });
    });
  }
  const table = rows.map((r, i) => ({
    label: r.label,
    fledge: r.fledge,
    runs: r.runs,
    wall: median(results[i].map((x) => x.wall)),
    cpu: median(results[i].map((x) => x.cpu)),
    rssKb: Math.max(...results[i].map((x) => x.rssKb)),
    size: results[i][0].size,
  }));

  // Warm rebuild after a one-file change: a cold gzip build fills a cache; files then settle
  // (2 s: the stat cache's racy margin), and before each run one mapped file gets new content.
  const cache = join(dir, "warm-cache");
  timed(fledge(proj, out("warm.gz"), "gzip", cache));
  spawnSync("sleep", ["2.1"]);
  const victim = findFile(tree);
  const original = readFileSync(victim);
  const warm = [];
  try {
    for (let i = 0; i < RUNS; i++) {
      writeFileSync(victim, Buffer.concat([original, Buffer.from(`\nchanged by the benchmark, run ${i}\n`)]));
      const m = timed(fledge(proj, out("warm.gz"), "gzip", cache));
      warm.push(m);
      log(`  ${name}: warm rebuild run ${i + 1}/${RUNS}: ${m.wall.toFixed(2)} s`);
    }
  } finally {
    writeFileSync(victim, original);
  }
  table.push({
    label: "fledge gzip, warm rebuild after a one-file change",
    fledge: "gzip",
    warm: true,
    runs: RUNS,
    wall: median(warm.map((x) => x.wall)),
    cpu: median(warm.map((x) => x.cpu)),
    rssKb: Math.max(...warm.map((x) => x.rssKb)),
    size: statSync(out("warm.gz")).size,
  });
  rmSync(cache, { recursive: true, force: true });
  return table;
}

/** A mid-tree regular file (deterministic choice). */
function findFile(tree) {
  const files = [];
  const walk = (d) => {
    for (const e of readdirSync(d, { withFileTypes: true }).sort((a, b) => (a.name < b.name ? -1 : 1))) {
      if (e.isDirectory()) walk(join(d, e.name));
      else if (e.isFile()) files.push(join(d, e.name));
    }
  };
  walk(tree);
  return files[Math.floor(files.length / 2)];
}

function treeInfo(tree) {
  let files = 0;
  let bytes = 0;
  const walk = (d) => {
    for (const e of readdirSync(d, { withFileTypes: true })) {
      if (e.isDirectory()) walk(join(d, e.name));
      else if (e.isFile()) {
        files++;
        bytes += statSync(join(d, e.name)).size;
      }
    }
  };
  walk(tree);
  return { files, bytes };
}

const fmt = {
  s: (x) => `${x.toFixed(2)} s`,
  mb: (kb) => `${Math.round(kb / 1024)} MB`,
  size: (b) => `${(b / 1e6).toFixed(1)} MB`,
};

function render(title, table) {
  const lines = [`### ${title}`, "", "| pipeline | wall | CPU | peak RSS | size | runs |", "| --- | ---: | ---: | ---: | ---: | ---: |"];
  for (const r of table) lines.push(`| ${r.label.replace(/\|/g, "\\|")} | ${fmt.s(r.wall)} | ${fmt.s(r.cpu)} | ${fmt.mb(r.rssKb)} | ${fmt.size(r.size)} | ${r.runs} |`);
  return lines;
}

function targets(table) {
  const by = (p) => table.find((r) => r.label.startsWith(p));
  const gz = by("fledge gzip (level"),
    pigz = by("bsdtar"),
    go = by("Go fledge"),
    zs = by("fledge zstd"),
    zc = by("find | cpio -o -H newc | zstd"),
    none = by("fledge none"),
    plain = by("find | cpio -o -H newc >"),
    warm = by("fledge gzip, warm");
  const yes = (ok) => (ok ? "met" : "**missed**");
  const rss = table.filter((r) => r.fledge);
  const worst = rss.reduce((a, b) => (a.rssKb >= b.rssKb ? a : b));
  return [
    `| gzip wall ≤ bsdtar \\| pigz -6 | ${fmt.s(gz.wall)} vs ${fmt.s(pigz.wall)} (${(gz.wall / pigz.wall).toFixed(2)}x) | ${yes(gz.wall <= pigz.wall)} |`,
    `| gzip size ≤ gzip -9 + 1% | ${((gz.size / go.size - 1) * 100).toFixed(2)}% | ${yes(gz.size <= go.size * 1.01)} |`,
    `| zstd ≤ 1.2x cpio \\| zstd -3 -T0 | ${(zs.wall / zc.wall).toFixed(2)}x (${fmt.s(zs.wall)} vs ${fmt.s(zc.wall)}) | ${yes(zs.wall <= 1.2 * zc.wall)} |`,
    `| none ≤ 1.3x cpio > file | ${(none.wall / plain.wall).toFixed(2)}x (${fmt.s(none.wall)} vs ${fmt.s(plain.wall)}) | ${yes(none.wall <= 1.3 * plain.wall)} |`,
    `| warm rebuild ≤ 10% of cold gzip | ${((warm.wall / gz.wall) * 100).toFixed(1)}% (${fmt.s(warm.wall)}) | ${yes(warm.wall <= 0.1 * gz.wall)} |`,
    `| peak RSS < 256 MB, every compressor | largest: ${worst.label}, ${fmt.mb(worst.rssKb)} | ${yes(worst.rssKb < 256 * 1024)} |`,
  ];
}

const started = new Date();
const load0 = loadavg();
const out = [];
const head = [];
try {
  const trees = [];
  if (!args.has("--no-real")) {
    const real = join(work, "real-tree");
    const r = spawnSync("bash", [join(here, "make-real-tree.sh"), real], { stdio: ["ignore", "inherit", "inherit"] });
    if (r.status === 0) trees.push({ name: "real", tree: real, what: "copy of Debian's /usr/lib/python3.11, /usr/lib/gcc, /usr/share/doc, /usr/share/qemu" });
    else head.push(`(real tree skipped: bench/make-real-tree.sh failed, see above)`);
  }
  if (!args.has("--no-generated")) {
    const gen = join(work, "gen-tree");
    mkdirSync(gen);
    log(`generating a ${MB} MB tree in ${gen} …`);
    generate(gen, MB);
    trees.push({ name: "generated", tree: gen, what: "generated, deterministic: text, machine-code-like binaries, incompressible assets" });
  }
  const tables = [];
  for (const t of trees) {
    const info = treeInfo(t.tree);
    log(`benchmarking the ${t.name} tree (${info.files} files, ${fmt.size(info.bytes)}) …`);
    tables.push({ ...t, info, table: benchTree(t.name, t.tree) });
    // Each tree's table as soon as it is done (a long run interrupted later keeps it).
    const done = tables[tables.length - 1];
    log(["", ...render(`${done.name} tree: ${info.files} files, ${fmt.size(info.bytes)} (${done.what}) — ${new Date().toISOString()}`, done.table), "", ...targets(done.table), ""].join("\n"));
  }
  let big;
  if (args.has("--rss-1g")) {
    const tree = join(work, "tree-1g");
    mkdirSync(tree);
    log("generating a 1 GB tree …");
    generate(tree, 1024);
    const info = treeInfo(tree);
    const proj = project(join(work, "proj-1g"), tree);
    big = { info, rows: [] };
    for (const c of (process.env.BENCH_1G_COMPRESSORS ?? "gzip,zstd,xz,lz4,none").split(",")) {
      const cache = join(work, `cache-1g-${c}`);
      const m = timed(fledge(proj, join(work, `big.${c}`), c, cache));
      m.size = statSync(join(work, `big.${c}`)).size;
      rmSync(cache, { recursive: true, force: true });
      rmSync(join(work, `big.${c}`), { force: true });
      big.rows.push({ label: `fledge ${c}, 1 GB tree`, fledge: c, runs: 1, ...m });
      log(`  1 GB: ${c}: ${m.wall.toFixed(2)} s, CPU ${m.cpu.toFixed(2)} s, ${Math.round(m.rssKb / 1024)} MB, ${fmt.size(m.size)}`);
    }
    rmSync(tree, { recursive: true, force: true });
  }
  // The hello example end to end, cold process (its busybox from Debian's busybox-static via a mirror, as `npm run example`).
  const helloCache = join(work, "hello-cache");
  const hello = `${q(NODE)} ${q(CLI)} build -q -C ${q(join(repo, "examples/hello"))} -o ${q(join(work, "hello.cpio.gz"))} --cache-dir ${q(helloCache)}`;
  const env = { FLEDGE_MIRRORS: "https://busybox.net/downloads/binaries/1.35.0-x86_64-linux-musl/=file:///bin/" };
  timed(hello, env);
  const helloRuns = Array.from({ length: Math.max(RUNS, 5) * 2 }, () => timed(hello, env));
  const helloWall = median(helloRuns.map((x) => x.wall));

  const cpu = cpus()[0]?.model ?? "unknown CPU";
  out.push(`fledge benchmark — ${started.toISOString().replace(/\.\d+Z$/, "Z")}, ${cpu}, ${cpus().length} cores, ${Math.round(totalmem() / 2 ** 30)} GiB, Linux ${release()}, Node ${NODE_VERSION}`);
  out.push(
    `load average at start ${load0.map((x) => x.toFixed(2)).join(" ")}, at end ${loadavg()
      .map((x) => x.toFixed(2))
      .join(" ")}; medians of alternating runs (wall, CPU), largest peak RSS (GNU time); every fledge run is \`fledge build\` with an empty --cache-dir unless warm`,
  );
  out.push(...head, "");
  for (const t of tables) {
    out.push(...render(`${t.name} tree: ${t.info.files} files, ${fmt.size(t.info.bytes)} (${t.what})`, t.table), "");
    out.push("| target | measured | |", "| --- | --- | --- |", ...targets(t.table), "");
  }
  if (big) {
    out.push(...render(`1 GB generated tree: ${big.info.files} files, ${fmt.size(big.info.bytes)}, one run each`, big.rows), "");
    const worst = big.rows.reduce((a, b) => (a.rssKb >= b.rssKb ? a : b));
    out.push(`peak RSS < 256 MB on the 1 GB tree, every compressor: largest ${worst.label}, ${fmt.mb(worst.rssKb)}: ${worst.rssKb < 256 * 1024 ? "met" : "**missed**"}`, "");
  }
  out.push(
    `hello example, \`fledge build\` end to end, cold process (median of ${helloRuns.length}): ${fmt.s(helloWall)}, peak RSS ${fmt.mb(Math.max(...helloRuns.map((x) => x.rssKb)))} — target < 0.3 s: ${helloWall < 0.3 ? "met" : "**missed**"}`,
  );
} finally {
  if (!args.has("--keep")) rmSync(work, { recursive: true, force: true });
  else log(`kept ${work}`);
}
console.log(out.join("\n"));
