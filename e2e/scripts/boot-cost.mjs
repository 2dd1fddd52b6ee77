#!/usr/bin/env node
// Boot cost of each init mode: builds a copy of e2e/fixtures/modes/<mode> with the built CLI,
// boots it in qemu with Debian's kernel several times, and reports the median time from the
// kernel's "Run /init as init process" line to the payload's first line, both on the kernel's
// printk clock (printk.time=1): in the copy, the payload's first command, `echo "FLEDGE-MODE
// start …"`, writes to /dev/kmsg, which a small plugin adds to every image (in modes without
// devtmpfs there is no /dev/kmsg otherwise). Every payload starts with that same echo, so the
// difference between default/custom-image (C init, then exec of the script) and
// none/custom-host (the script is /init) is what fledge's C init costs.
//
// That difference is small next to the noise of starting busybox under emulation, so the C init
// is also timed on its own: the kernel logs every exec (trace_event=sched:sched_process_exec
// tp_printk), and the C init's time is from its exec as /init to its exec of the payload.
// For scale, when musl-gcc is installed, an "exec-only" row replaces the C init with a static
// binary that does nothing but exec /bin/kestrel: what any init costs under this emulation
// before it does any work. (Only this measurement compiles anything; fledge build never does.)
//
// With --icount, qemu runs with `-icount shift=0,sleep=off`: the guest clock advances 1 ns per
// guest instruction, so the times count the work done in the guest (kernel and user), free of
// host load and of TCG's translation cost; without it they are wall-clock times under emulation.
//
//   npm run build && node e2e/scripts/boot-cost.mjs [--runs 7] [--icount] [--modes default,none] [--json]
//
// Needs qemu-system-x86_64, a kernel in /boot (or $FLEDGE_E2E_KERNEL) and /bin/busybox
// (scripts/install-e2e-deps.sh). Boots run one after another so they do not disturb each other.
import { spawn, spawnSync } from "node:child_process";
import { cpSync, existsSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { parseArgs } from "node:util";

const root = fileURLToPath(new URL("../../", import.meta.url));
const cli = join(root, "packages/cli/dist/bin.js");
const fixtures = join(root, "e2e/fixtures/modes");
const ALL_MODES = ["default", "custom-image", "custom-host", "none", "exec-only"];
const FIXTURE = { "exec-only": "default" };
const EXEC_ONLY_C = `#include <unistd.h>
int main(int argc, char **argv)
{
	char *env[] = { "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin", "HOME=/", "TERM=linux", 0 };
	char *none[] = { "/bin/kestrel", 0 };
	if (argc > 0)
		argv[0] = "/bin/kestrel";
	execve("/bin/kestrel", argc > 0 ? argv : none, env);
	return 1;
}
`;

const { values } = parseArgs({
  options: {
    runs: { type: "string", default: "5" },
    modes: { type: "string", default: ALL_MODES.join(",") },
    json: { type: "boolean", default: false },
    icount: { type: "boolean", default: false },
    help: { type: "boolean", short: "h", default: false },
  },
});
if (values.help) {
  console.log("usage: node e2e/scripts/boot-cost.mjs [--runs N] [--modes default,custom-image,custom-host,none,exec-only] [--json]");
  process.exit(0);
}
const runs = Number(values.runs);
if (!Number.isInteger(runs) || runs < 1) throw new Error(`--runs must be a positive whole number, not ${values.runs}`);
const hasMusl = spawnSync("musl-gcc", ["--version"]).status === 0;
const modes = values.modes.split(",").filter(Boolean);
if (modes.includes("exec-only") && !hasMusl) {
  if (values.modes !== ALL_MODES.join(",")) throw new Error("the exec-only row needs musl-gcc (Debian musl-tools)");
  modes.splice(modes.indexOf("exec-only"), 1);
  process.stderr.write("boot-cost: musl-gcc not found, leaving out the exec-only row\n");
}
for (const m of modes) if (!ALL_MODES.includes(m)) throw new Error(`unknown mode ${m} (known: ${ALL_MODES.join(", ")})`);
if (!existsSync(cli)) throw new Error(`${cli} is missing: run \`npm run build\` first`);

function kernel() {
  if (process.env.FLEDGE_E2E_KERNEL) return process.env.FLEDGE_E2E_KERNEL;
  const ks = readdirSync("/boot")
    .filter((f) => f.startsWith("vmlinuz-"))
    .sort((a, b) => a.localeCompare(b, "en", { numeric: true }));
  if (!ks.length) throw new Error("no /boot/vmlinuz-*: run scripts/install-e2e-deps.sh");
  return `/boot/${ks[ks.length - 1]}`;
}
const qemu = process.env.FLEDGE_E2E_QEMU ?? "qemu-system-x86_64";
// KVM by fledge run's rule (a /dev/kvm that opens is not enough: the CPU must advertise vmx/svm)
const kvm = (process.env.FLEDGE_E2E_KVM ? process.env.FLEDGE_E2E_KVM === "1" : (await import("@fledge/vm")).chooseAccel("x86_64").accel === "kvm") && !values.icount;

/** A fixture copy whose payload announces its start through /dev/kmsg, with a plugin that adds that node. */
function measuredCopy(mode, dir) {
  cpSync(join(fixtures, FIXTURE[mode] ?? mode), dir, { recursive: true });
  const toml = join(dir, "fledge.toml");
  writeFileSync(
    toml,
    readFileSync(toml, "utf8").replace(/^strategy = .*$/m, (l) => `${l}\nplugins = ["./kmsg.mjs"]`),
  );
  let replaceInit = "";
  if (mode === "exec-only") {
    writeFileSync(join(dir, "exec-only.c"), EXEC_ONLY_C);
    const cc = spawnSync("musl-gcc", ["-Os", "-static", "-s", "-o", join(dir, "exec-only"), join(dir, "exec-only.c")], { encoding: "utf8" });
    if (cc.status !== 0) throw new Error(`musl-gcc failed: ${cc.stderr}`);
    replaceInit = 'tree.addHostFile("/init", new URL("./exec-only", import.meta.url).pathname, 0o755); ';
  }
  writeFileSync(join(dir, "kmsg.mjs"), `export default { apply(b) { b.hooks.beforeArchive.tap("kmsg", (tree) => { tree.device("/dev/kmsg", "char", 1, 11, 0o600); ${replaceInit}}); } };\n`);
  let changed = 0;
  for (const f of readdirSync(dir)) {
    if (f === "exec-only") continue;
    const text = readFileSync(join(dir, f), "utf8");
    const next = text.replace(/^(echo "FLEDGE-MODE start [^"]*")$/m, "$1 >/dev/kmsg");
    if (next !== text) {
      writeFileSync(join(dir, f), next);
      changed++;
    }
  }
  if (changed !== 1) throw new Error(`expected one payload with an "FLEDGE-MODE start" line in ${mode}, found ${changed}`);
}

/** One boot; returns the printk times (ms) of "Run /init" and the payload's first line. */
function boot(initrd) {
  const args = [
    "-kernel",
    kernel(),
    "-initrd",
    initrd,
    "-append",
    "console=ttyS0 panic=-1 printk.time=1 trace_event=sched:sched_process_exec tp_printk",
    "-m",
    "256",
    "-nographic",
    "-no-reboot",
    "-nodefaults",
    "-serial",
    "stdio",
    "-monitor",
    "none",
  ];
  if (values.icount) args.unshift("-icount", "shift=0,sleep=off");
  else if (kvm) args.unshift("-enable-kvm", "-cpu", "host");
  return new Promise((resolve, reject) => {
    const started = performance.now();
    const child = spawn(qemu, args, { stdio: ["ignore", "pipe", "inherit"] });
    const t = {};
    let pending = "";
    const timer = setTimeout(() => child.kill("SIGKILL"), 120_000);
    child.stdout.setEncoding("utf8");
    child.stdout.on("data", (chunk) => {
      const now = performance.now() - started;
      pending += chunk;
      const lines = pending.split("\n");
      pending = lines.pop();
      for (const line of lines) {
        const stamp = /^\[\s*(\d+\.\d+)\]/.exec(line);
        const ms = stamp ? Number(stamp[1]) * 1000 : undefined;
        if (t.runInit === undefined && line.includes("Run /init as init process")) t.runInit = ms;
        if (t.first === undefined && line.includes("FLEDGE-MODE start")) {
          t.first = ms;
          t.hostFirst = now;
        }
        const exec = /sched_process_exec: filename=(\S+) pid=1 /.exec(line);
        if (exec && exec[1] === "/init") t.execInit = ms;
        else if (exec && t.execInit !== undefined && t.execPayload === undefined) t.execPayload = ms;
        if (line.includes("Kernel panic") || line.includes("fledge-init:")) t.error = line.trim();
      }
    });
    child.on("error", reject);
    child.on("close", () => {
      clearTimeout(timer);
      if (t.error || t.runInit === undefined || t.first === undefined) reject(new Error(`boot of ${initrd} did not reach the payload: ${t.error ?? "no FLEDGE-MODE start line"}`));
      else
        resolve({
          initToPayloadMs: t.first - t.runInit,
          // Only when /init execs something as PID 1 (the C init modes).
          cInitMs: t.execInit !== undefined && t.execPayload !== undefined ? t.execPayload - t.execInit : undefined,
          // The kernel's own exec of /init, for scale.
          kernelExecMs: t.execInit !== undefined ? t.execInit - t.runInit : undefined,
          qemuToPayloadMs: t.hostFirst,
        });
    });
  });
}

const median = (xs) => {
  const s = [...xs].sort((a, b) => a - b);
  const m = s.length >> 1;
  return s.length % 2 ? s[m] : (s[m - 1] + s[m]) / 2;
};

const out = mkdtempSync(join(tmpdir(), "fledge-boot-cost-"));
try {
  const artifacts = {};
  for (const mode of modes) {
    const artifact = join(out, `${mode}.cpio.gz`);
    const dir = join(out, mode);
    measuredCopy(mode, dir);
    const b = spawnSync(process.execPath, [cli, "build", "-q", "-C", dir, "-o", artifact, "--manifest-output", `${artifact}.json`, "--cache-dir", join(out, "cache")], { encoding: "utf8" });
    if (b.status !== 0) throw new Error(`fledge build of ${mode} failed:\n${b.stderr}`);
    artifacts[mode] = artifact;
  }
  // Round-robin, so a busy moment on the host hits every mode alike.
  const samples = Object.fromEntries(modes.map((m) => [m, []]));
  for (let i = 0; i < runs; i++) {
    for (const mode of modes) {
      const s = await boot(artifacts[mode]);
      samples[mode].push(s);
      if (!values.json) process.stderr.write(`${mode} ${i + 1}/${runs}: ${s.initToPayloadMs.toFixed(2)} ms${s.cInitMs === undefined ? "" : ` (exec /init → exec payload ${s.cInitMs.toFixed(2)} ms)`}\n`);
    }
  }
  const results = {};
  for (const mode of modes) {
    const x = samples[mode].map((s) => s.initToPayloadMs);
    const c = samples[mode].map((s) => s.cInitMs).filter((v) => v !== undefined);
    results[mode] = {
      runs,
      medianMs: median(x),
      minMs: Math.min(...x),
      maxMs: Math.max(...x),
      cInitMedianMs: c.length ? median(c) : undefined,
      cInitMaxMs: c.length ? Math.max(...c) : undefined,
      kernelExecMedianMs: median(samples[mode].map((s) => s.kernelExecMs ?? NaN)),
      medianBootMs: median(samples[mode].map((s) => s.qemuToPayloadMs)),
    };
  }
  const kernelName = kernel().split("/").pop();
  const qemuVersion = spawnSync(qemu, ["--version"], { encoding: "utf8" }).stdout.split("\n")[0];
  if (values.json) {
    console.log(JSON.stringify({ kernel: kernelName, qemu: qemuVersion, accel: kvm ? "kvm" : values.icount ? "tcg-icount" : "tcg", results }, null, 2));
  } else {
    const init = {
      default: "C init → /bin/kestrel (script)",
      "custom-image": "C init → /.volant_init path (script)",
      "custom-host": "the script is /init",
      none: "the script is /init",
      "exec-only": "for scale: a static binary that only execs /bin/kestrel (script)",
    };
    const load = readFileSync("/proc/loadavg", "utf8").split(" ").slice(0, 3).join(" ");
    const ms = (v) => `${v.toFixed(values.icount ? 2 : 1)} ms`;
    console.log(
      `${kernelName}, ${qemuVersion}, ${kvm ? "KVM" : values.icount ? "TCG with -icount shift=0 (guest time = 1 ns per instruction)" : "TCG (software emulation), wall clock"}, ${runs} boots per mode, host load average ${load}\n`,
    );
    console.log('| mode | /init | "Run /init" → payload\'s first line, median (min–max) | exec /init → exec payload, median (max) | for scale: "Run /init" → exec /init, median | qemu start → payload, median |');
    console.log("|---|---|---:|---:|---:|---:|");
    for (const [mode, r] of Object.entries(results)) {
      const c = r.cInitMedianMs === undefined ? "–" : `${ms(r.cInitMedianMs)} (${ms(r.cInitMaxMs)})`;
      console.log(`| ${mode} | ${init[mode]} | ${ms(r.medianMs)} (${ms(r.minMs)}–${ms(r.maxMs)}) | ${c} | ${ms(r.kernelExecMedianMs)} | ${(r.medianBootMs / 1000).toFixed(2)} s |`);
    }
    if (results.default && results.none) console.log(`\ndefault − none, medians of "Run /init" → payload: ${ms(results.default.medianMs - results.none.medianMs)}`);
    if (results.default && results["exec-only"]) console.log(`C init − exec-only, medians of exec /init → exec payload: ${ms(results.default.cInitMedianMs - results["exec-only"].cInitMedianMs)}`);
    if (results["custom-image"] && results["custom-host"]) console.log(`custom-image − custom-host, medians of "Run /init" → payload: ${ms(results["custom-image"].medianMs - results["custom-host"].medianMs)}`);
  }
} finally {
  rmSync(out, { recursive: true, force: true });
}
