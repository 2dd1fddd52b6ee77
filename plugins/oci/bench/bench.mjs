#!/usr/bin/env node
// Pull + unpack + archive of a multi-layer image from a loopback registry, side by side:
//   fledge:     fledge build with [source] image = "<registry>/bench:1" (cold: empty cache; warm: cache
//               kept, one mapped file changed — the first rebuild after cold, and a second one, whose
//               stat cache knows the image's files: the first cannot, they were written during cold)
//   Go route:   what the Go fledge runs — skopeo copy to an OCI layout, umoci raw unpack --rootless,
//               find | cpio -o -H newc | gzip -9
// plus the peak RSS of a cold fledge build of a ~1 GB image. Medians of BENCH_RUNS runs (default 3),
// wall time, CPU time (user + sys, children included) and peak RSS from GNU time — on a shared,
// loaded machine the CPU times and their ratios are the figures to compare. Prints a markdown
// table for plugins/oci/README.md.
//
//   npm run build && npm run bench -w @fledge/plugin-oci        (BENCH_RUNS=5, BENCH_SKIP_1G=1)
import { spawnSync } from "node:child_process";
import { existsSync, mkdirSync, mkdtempSync, rmSync, statSync, writeFileSync, copyFileSync } from "node:fs";
import { cpus, totalmem, tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { skopeo, startRegistry } from "../dist/testing.js";
import { makeImage } from "./image.mjs";

const root = fileURLToPath(new URL("../../../", import.meta.url));
const CLI = join(root, "packages/cli/dist/bin.js");
const RUNS = Number(process.env.BENCH_RUNS ?? 3);
const work = mkdtempSync(join(process.env.BENCH_DIR ?? tmpdir(), "fledge-oci-bench-"));
const TIME = "/usr/bin/time";

for (const [bin, pkg] of [
  [TIME, "time"],
  ["skopeo", "skopeo"],
  ["umoci", "umoci"],
  ["docker-registry", "docker-registry"],
  ["cpio", "cpio"],
  ["pigz", "pigz"],
]) {
  if (spawnSync(bin, ["--version"]).error) {
    console.error(`bench: ${bin} is missing: run bash scripts/install-e2e-deps.sh (Debian package ${pkg})`);
    process.exit(2);
  }
}
if (!existsSync(CLI)) {
  console.error("bench: run npm run build first");
  process.exit(2);
}

/** Runs a command under GNU time: wall seconds, CPU seconds (user + sys) and peak RSS (MB). */
function timed(cmd, args, opts = {}) {
  const r = spawnSync(TIME, ["-f", "%e %M %U %S", cmd, ...args], { encoding: "utf8", maxBuffer: 64 << 20, ...opts });
  const m = /([\d.]+) (\d+) ([\d.]+) ([\d.]+)\s*$/.exec(r.stderr ?? "");
  if (r.status !== 0 || !m) throw new Error(`${cmd} ${args.join(" ")} failed (${r.status}): ${(r.stderr ?? "").slice(-2000)}`);
  return { s: Number(m[1]), rssMb: Number(m[2]) / 1024, cpu: Number(m[3]) + Number(m[4]) };
}
const sh = (script, opts = {}) => timed("sh", ["-c", script], opts);
const median = (xs) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];

function project(dir, ref) {
  mkdirSync(dir, { recursive: true });
  copyFileSync(existsSync("/bin/busybox") ? "/bin/busybox" : "/usr/bin/busybox", join(dir, "init")); // a static PID 1
  writeFileSync(join(dir, "app.conf"), "version 0\n");
  writeFileSync(join(dir, "fledge.toml"), `version = "1"\n[init]\nnone = true\n[source]\nbusybox = false\nimage = "${ref}"\n[mappings]\n"./init" = "/init"\n"./app.conf" = "/etc/app.conf"\n`);
  writeFileSync(join(dir, "manifest.toml"), 'name = "bench"\nversion = "0.1.0"\n[workload]\nentrypoint = "/init"\nbase_url = "http://127.0.0.1:8000"\n');
}

function fledgeBuild(dir, cache, extra = []) {
  return timed(process.execPath, [CLI, "build", "-C", dir, "-o", join(dir, "out.cpio.gz"), "--cache-dir", cache, ...extra], { env: { ...process.env, NO_COLOR: "1" } });
}

function goRoute(registry, n) {
  const d = join(work, `go-${n}`);
  rmSync(d, { recursive: true, force: true });
  mkdirSync(d);
  const pull = timed("skopeo", ["--insecure-policy", "copy", "--quiet", "--src-tls-verify=false", `docker://${registry.host}/bench:1`, `oci:${join(d, "layout")}:1`]);
  const unpack = timed("umoci", ["raw", "unpack", "--rootless", "--image", `${join(d, "layout")}:1`, join(d, "rootfs")]);
  const archive = sh(`cd ${join(d, "rootfs")} && find . | cpio -o -H newc --quiet | gzip -9 > ${join(d, "out.cpio.gz")}`);
  const size = statSync(join(d, "out.cpio.gz")).size;
  rmSync(d, { recursive: true, force: true });
  return { s: pull.s + unpack.s + archive.s, cpu: pull.cpu + unpack.cpu + archive.cpu, rssMb: Math.max(pull.rssMb, unpack.rssMb, archive.rssMb), pull: pull.s, unpack: unpack.s, archive: archive.s, size };
}

const registry = await startRegistry();
for (const sig of ["SIGINT", "SIGTERM", "SIGHUP"])
  process.once(sig, () => {
    registry.stop().finally(() => {
      rmSync(work, { recursive: true, force: true });
      process.exit(130);
    });
  });
try {
  console.error("bench: building the image layout (GNU tar + pigz) …");
  const small = [["usr/share/locale"], ["usr/lib/python3.11", "usr/lib/python3"], ["usr/lib/gcc"], ["usr/share/doc/bash", "usr/share/doc/coreutils"]];
  const bytes = await makeImage(join(work, "layout"), small);
  await skopeo([`oci:${join(work, "layout")}:1`, `docker://${registry.host}/bench:1`, "--dest-tls-verify=false"]);
  const proj = join(work, "proj");
  project(proj, `${registry.host}/bench:1`);

  const rows = { goCold: [], cold: [], warm: [], warm2: [] };
  let goDetail;
  let fledgeSize = 0;
  for (let n = 0; n < RUNS; n++) {
    console.error(`bench: run ${n + 1}/${RUNS}`);
    const g = goRoute(registry, n);
    rows.goCold.push(g);
    goDetail = g;
    const cache = join(work, `cache-${n}`);
    rmSync(cache, { recursive: true, force: true });
    rmSync(join(proj, "fledge.lock"), { force: true });
    rows.cold.push(fledgeBuild(proj, cache));
    fledgeSize = statSync(join(proj, "out.cpio.gz")).size;
    writeFileSync(join(proj, "app.conf"), `version ${n + 1}\n`);
    rows.warm.push(fledgeBuild(proj, cache));
    writeFileSync(join(proj, "app.conf"), `version ${n + 1}b\n`);
    rows.warm2.push(fledgeBuild(proj, cache));
    rmSync(cache, { recursive: true, force: true });
  }
  const med = (k, f) => median(rows[k].map((r) => r[f]));
  const goS = med("goCold", "s");
  const coldS = med("cold", "s");
  const warmS = med("warm", "s");
  const goC = med("goCold", "cpu");
  const coldC = med("cold", "cpu");
  const warmC = med("warm", "cpu");
  const warm2S = med("warm2", "s");
  const warm2C = med("warm2", "cpu");

  let big;
  if (!process.env.BENCH_SKIP_1G) {
    console.error("bench: the ~1 GB image (peak RSS) …");
    const bigLayout = join(work, "big");
    const bigBytes = await makeImage(bigLayout, [...small, ["usr/lib/x86_64-linux-gnu"]]);
    await skopeo([`oci:${bigLayout}:1`, `docker://${registry.host}/big:1`, "--dest-tls-verify=false"]);
    rmSync(join(work, "layout"), { recursive: true, force: true });
    rmSync(bigLayout, { recursive: true, force: true });
    const bp = join(work, "bigproj");
    project(bp, `${registry.host}/big:1`);
    const cache = join(work, "cache-big");
    const r = fledgeBuild(bp, cache);
    big = { bytes: bigBytes, ...r };
    rmSync(cache, { recursive: true, force: true });
  }

  const cpu = cpus()[0]?.model ?? "unknown CPU";
  const date = new Date().toISOString().slice(0, 10);
  const mb = (b) => `${(b / 1e6).toFixed(0)} MB`;
  const out = [];
  out.push(
    `Bench ${date}, ${cpu}, ${cpus().length} cores, ${(totalmem() / 2 ** 30).toFixed(0)} GiB, Node ${process.version}; medians of ${RUNS} runs; image: ${small.length} gzip layers, ${mb(bytes)} unpacked, from docker-registry on 127.0.0.1.`,
  );
  out.push("");
  out.push("| route | wall (s) | CPU user+sys (s) | peak RSS (MB) | artifact |");
  out.push("|---|---:|---:|---:|---:|");
  out.push(
    `| Go fledge's route, cold: skopeo copy ${median(rows.goCold.map((r) => r.pull)).toFixed(1)} s + umoci raw unpack ${median(rows.goCold.map((r) => r.unpack)).toFixed(1)} s + find\\|cpio\\|gzip -9 ${median(rows.goCold.map((r) => r.archive)).toFixed(1)} s | ${goS.toFixed(1)} | ${goC.toFixed(1)} | ${med("goCold", "rssMb").toFixed(0)} | ${mb(goDetail.size)} |`,
  );
  out.push(`| fledge build, cold (empty cache) | ${coldS.toFixed(1)} | ${coldC.toFixed(1)} | ${med("cold", "rssMb").toFixed(0)} | ${mb(fledgeSize)} |`);
  out.push(`| fledge build, warm (image cached, one mapping changed): first rebuild after cold | ${warmS.toFixed(1)} | ${warmC.toFixed(1)} | ${med("warm", "rssMb").toFixed(0)} | ${mb(fledgeSize)} |`);
  out.push(`| fledge build, warm: the next rebuild (stat cache warm too) | ${warm2S.toFixed(1)} | ${warm2C.toFixed(1)} | ${med("warm2", "rssMb").toFixed(0)} | ${mb(fledgeSize)} |`);
  if (big) out.push(`| fledge build, cold, ${mb(big.bytes)} image (5 layers) | ${big.s.toFixed(1)} | ${big.cpu.toFixed(1)} | ${big.rssMb.toFixed(0)} | |`);
  out.push("");
  const t = [];
  t.push(`cold ${(goS / coldS).toFixed(1)}x faster than the Go route in wall time, ${(goC / coldC).toFixed(1)}x less CPU (target ≥ 3x: ${goS / coldS >= 3 ? "met" : "not met"} in wall time)`);
  t.push(
    `warm ${((warmS / coldS) * 100).toFixed(0)}% of cold in wall time, ${((warmC / coldC) * 100).toFixed(0)}% in CPU; the next rebuild ${((warm2S / coldS) * 100).toFixed(0)}% and ${((warm2C / coldC) * 100).toFixed(0)}% (target ≤ 20%: ${warmS / coldS <= 0.2 ? "met" : "not met"} for the first rebuild, ${warm2S / coldS <= 0.2 ? "met" : "not met"} for the next, in wall time)`,
  );
  if (big) t.push(`peak RSS ${big.rssMb.toFixed(0)} MB for the ${mb(big.bytes)} image (target < 300 MB: ${big.rssMb < 300 ? "met" : "not met"})`);
  out.push(`Targets: ${t.join("; ")}.`);
  console.log(out.join("\n"));
} finally {
  await registry.stop();
  rmSync(work, { recursive: true, force: true });
}
