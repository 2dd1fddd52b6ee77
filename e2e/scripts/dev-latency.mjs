#!/usr/bin/env node
// Save → "rebuilt" latency of `fledge dev` on the hello example (no VM: --no-boot).
//
//   node e2e/scripts/dev-latency.mjs [--runs 15]
//
// Copies examples/hello to a temp dir, starts `fledge dev --no-boot`, then edits
// www/index.html `runs` times, each time timing from just before the write until fledge dev
// prints its "rebuilt" line. Prints every sample, the median and the machine's load.
import { spawn } from "node:child_process";
import { cpSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { cpus, loadavg, tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { parseArgs } from "node:util";

const { values } = parseArgs({ options: { runs: { type: "string", default: "15" } } });
const runs = Number(values.runs);
const cli = fileURLToPath(new URL("../../packages/cli/dist/bin.js", import.meta.url));
const hello = fileURLToPath(new URL("../../examples/hello/", import.meta.url));
const dir = mkdtempSync(join(tmpdir(), "fledge-dev-latency-"));
cpSync(hello, dir, { recursive: true });
rmSync(join(dir, "fledge.lock"), { force: true });
const busyboxDir = "/bin/";
const child = spawn(process.execPath, [cli, "dev", "--no-boot", "--cache-dir", join(dir, ".cache")], {
  cwd: dir,
  env: { ...process.env, NO_COLOR: "1", FLEDGE_MIRRORS: `https://busybox.net/downloads/binaries/1.35.0-x86_64-linux-musl/=file://${busyboxDir}` },
  stdio: ["ignore", "ignore", "pipe"],
});
let err = "";
let waiter;
child.stderr.setEncoding("utf8").on("data", (d) => {
  err += d;
  if (waiter && /rebuilt in/.test(d)) waiter();
});
const until = (re) =>
  new Promise((r) => {
    const t = setInterval(() => {
      if (re.test(err)) {
        clearInterval(t);
        r();
      }
    }, 20);
  });
await until(/watching \d+ paths/);
const samples = [];
for (let i = 0; i < runs; i++) {
  await new Promise((r) => setTimeout(r, 300));
  const done = new Promise((r) => (waiter = r));
  const t0 = performance.now();
  writeFileSync(join(dir, "www", "index.html"), `<h1>hello ${i}</h1>\n`);
  await done;
  samples.push(performance.now() - t0);
}
child.kill("SIGINT");
await new Promise((r) => child.on("close", r));
rmSync(dir, { recursive: true, force: true });
const sorted = [...samples].sort((a, b) => a - b);
const median = sorted[Math.floor(sorted.length / 2)];
console.log(`fledge dev, hello example, save → "rebuilt" (${runs} edits of www/index.html, --no-boot)`);
console.log(`samples (ms): ${samples.map((s) => Math.round(s)).join(" ")}`);
console.log(`median ${Math.round(median)} ms, min ${Math.round(sorted[0])} ms, max ${Math.round(sorted[sorted.length - 1])} ms`);
console.log(
  `${new Date().toISOString()}, ${cpus().length} × ${cpus()[0]?.model}, load average ${loadavg()
    .map((l) => l.toFixed(1))
    .join(" ")}, Node ${process.version}`,
);
