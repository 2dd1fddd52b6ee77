// Per-core throughput and size of fledge's compressors against native ones, on one file (for
// instance a newc stream: `find . | LC_ALL=C sort | cpio -o -H newc > tree.cpio`).
//
//   node wasm-src/bench-codecs.mjs FILE [--runs N] [--only gzip,zstd,xz] [--pako DIR]
//
// The input is cut into 2 MiB pieces, each compressed as one member on this thread (as a segment
// is in a worker): fledge's WebAssembly codecs, Node's zlib (not reproducible; for scale) and,
// with --pako DIR (a directory holding node_modules/pako), pako. The native CLIs (gzip, zstd, xz)
// compress the whole file in one process, single-threaded, for scale. Prints medians of N runs
// (default 3) of the CPU time (and the wall time) of the compression alone; needs GNU time
// (/usr/bin/time) for the CLIs. Build first (npm run build).
import { spawnSync } from "node:child_process";
import { readFileSync } from "node:fs";
import { cpus, loadavg } from "node:os";
import { createRequire } from "node:module";
import zlib from "node:zlib";

const args = process.argv.slice(2);
const file = args.find((a) => !a.startsWith("--") && !/^\d+$/.test(a) && !a.includes(","));
const opt = (name, def) => {
  const i = args.indexOf(name);
  return i >= 0 ? args[i + 1] : def;
};
if (!file) {
  console.error("usage: node wasm-src/bench-codecs.mjs FILE [--runs N] [--only gzip,zstd,xz] [--pako DIR]");
  process.exit(2);
}
const RUNS = Number(opt("--runs", 3));
const only = new Set(opt("--only", "gzip,zstd,xz").split(","));
const { builtinCompressors: codecs } = await import(new URL("../dist/index.js", import.meta.url).href);
const data = readFileSync(file);
const SEG = 2 << 20;
const median = (a) => [...a].sort((x, y) => x - y)[Math.floor(a.length / 2)];

// CPU time (user + system) measures the work of one core even on a busy machine, where wall time
// mostly measures the other processes; both are printed.
function timeJs(fn) {
  fn(data.subarray(0, SEG));
  const cpu = [];
  const wall = [];
  let size = 0;
  for (let r = 0; r < RUNS; r++) {
    const c0 = process.cpuUsage();
    const t0 = process.hrtime.bigint();
    size = 0;
    for (let i = 0; i < data.length; i += SEG) size += fn(data.subarray(i, i + SEG)).length;
    wall.push(Number(process.hrtime.bigint() - t0) / 1e9);
    const c = process.cpuUsage(c0);
    cpu.push((c.user + c.system) / 1e6);
  }
  return { s: median(cpu), wall: median(wall), size };
}
function timeCli(cmd, cliArgs) {
  const cpu = [];
  const wall = [];
  let size = 0;
  for (let r = 0; r < RUNS; r++) {
    // GNU time prints the child's user and system CPU seconds on stderr's last line.
    const p = spawnSync("/usr/bin/time", ["-f", "%e %U %S", cmd, ...cliArgs], { input: data, maxBuffer: 2 * data.length + (64 << 20) });
    if (p.status !== 0) throw new Error(`${cmd} ${cliArgs.join(" ")}: ${p.stderr}`);
    const [e, u, sy] = p.stderr.toString().trim().split("\n").pop().split(" ").map(Number);
    wall.push(e);
    cpu.push(u + sy);
    size = p.stdout.length;
  }
  return { s: median(cpu), wall: median(wall), size };
}

const rows = [];
const row = (label, r) => {
  rows.push({ label, ...r });
  process.stderr.write(`${label}: ${r.s.toFixed(2)} s CPU, ${r.wall.toFixed(2)} s wall, ${r.size} bytes\n`);
};
const c = (name) => codecs[name];
if (only.has("gzip")) {
  const gz9 = timeCli("gzip", ["-9", "-n", "-c"]);
  const base = gz9.size;
  for (const l of [6, 9]) row(`gzip -${l} (CLI, whole file)`, l === 9 ? gz9 : timeCli("gzip", [`-${l}`, "-n", "-c"]));
  for (const l of [4, 5, 6, 7, 9])
    row(
      `fledge gzip -${l} (libdeflate, wasm)`,
      timeJs((s) => c("gzip").compress(s, l)),
    );
  row(
    "Node zlib -6 (gzipSync)",
    timeJs((s) => zlib.gzipSync(s, { level: 6 })),
  );
  const pakoDir = opt("--pako");
  if (pakoDir) {
    const pako = createRequire(`${pakoDir}/`)("pako");
    row(
      "pako 2.1.0 -6",
      timeJs((s) => pako.gzip(s, { level: 6 })),
    );
  }
  for (const r of rows) r.vs = `${(((r.size - base) / base) * 100).toFixed(2)}% vs gzip -9`;
}
if (only.has("zstd")) {
  row("zstd -3 (CLI, single thread)", timeCli("zstd", ["-3", "-T1", "-c", "-q"]));
  row(
    "fledge zstd -3 (wasm)",
    timeJs((s) => c("zstd").compress(s, 3)),
  );
}
if (only.has("xz")) {
  row("xz -6 --check=crc32 (CLI, single thread)", timeCli("xz", ["-6", "-T1", "--check=crc32", "-c"]));
  row(
    "fledge xz -6 (wasm)",
    timeJs((s) => c("xz").compress(s, 6)),
  );
}

const cpu = cpus()[0]?.model ?? "unknown CPU";
console.log(`codec throughput, one core — ${new Date().toISOString().slice(0, 16)}Z, ${cpu}, Node ${process.version}`);
console.log(
  `input: ${file}, ${(data.length / 1e6).toFixed(1)} MB; fledge/Node/pako in 2 MiB members, CLIs on the whole file; medians of ${RUNS}; load average ${loadavg()
    .map((l) => l.toFixed(1))
    .join(" ")}`,
);
console.log("");
console.log("| codec | CPU time | MB/s per core (CPU) | wall time | size | |");
console.log("| --- | ---: | ---: | ---: | ---: | --- |");
for (const r of rows) console.log(`| ${r.label} | ${r.s.toFixed(2)} s | ${(data.length / 1e6 / r.s).toFixed(1)} | ${r.wall.toFixed(2)} s | ${r.size} | ${r.vs ?? ""} |`);
