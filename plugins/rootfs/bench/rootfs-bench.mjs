#!/usr/bin/env node
// Root-disk build time and size, side by side on one tree:
//   fledge      @fledge/ext4 from the tree's entries (what oci_rootfs does after the overlay stage)
//   mke2fs -d   mke2fs -t ext4 -d <tree> (e2fsprogs 1.47; as root: owners from the host files)
//   go route    the Go fledge's ext4 path after `umoci unpack`: dd a sparse file, mkfs.ext4,
//               losetup/mount, copy, umount, e2fsck -f -y, resize2fs -P + resize2fs, truncate
// Each image gets the same free space (64 MiB, the Go fledge's minimum buffer). Medians of --runs.
// Needs root for the go route (loop mount); the others run as anyone.
//   node plugins/rootfs/bench/rootfs-bench.mjs [--runs 3] [--tree DIR ...]
import { execFileSync, spawnSync } from "node:child_process";
import { cpSync, lstatSync, mkdirSync, readdirSync, readlinkSync, rmSync, statSync } from "node:fs";
import { cpus, loadavg, totalmem } from "node:os";
import { join } from "node:path";
import { writeExt4 } from "../../../packages/ext4/dist/index.js";

const args = process.argv.slice(2);
const runs = Number(args[args.indexOf("--runs") + 1] || 3) || 3;
const sources = args.includes("--tree") ? args.filter((_, i) => args[i - 1] === "--tree") : ["/usr/share/locale", "/usr/lib/python3.11"];
const work = "/tmp/fledge-rootfs-bench";
rmSync(work, { recursive: true, force: true });
const tree = join(work, "tree");
mkdirSync(tree, { recursive: true });
// The unpacked image, as `umoci unpack` leaves it (not timed: every route starts from it).
for (const s of sources) cpSync(s, join(tree, s.replace(/^\//, "")), { recursive: true, verbatimSymlinks: true });
const FREE = 64 << 20;
const MTIME = 1704067200;

function entriesOf(dir) {
  const out = [];
  const walk = (abs, rel) => {
    for (const name of readdirSync(abs).sort()) {
      const p = join(abs, name);
      const r = rel ? `${rel}/${name}` : name;
      const st = lstatSync(p);
      if (st.isDirectory()) {
        out.push({ path: r, type: "dir", mode: st.mode & 0o7777 });
        walk(p, r);
      } else if (st.isSymbolicLink()) out.push({ path: r, type: "symlink", mode: 0o777, target: readlinkSync(p) });
      else if (st.isFile()) out.push({ path: r, type: "file", mode: st.mode & 0o7777, file: p, size: st.size });
    }
  };
  walk(dir, "");
  return out;
}
const du = () => Number(execFileSync("du", ["-sk", "--apparent-size", tree], { encoding: "utf8" }).split(/\s/)[0]) * 1024;
const dataBytes = du();
const fileCount = entriesOf(tree).length;
const sh = (cmd, a, opts = {}) => {
  const r = spawnSync(cmd, a, { encoding: "utf8", ...opts });
  if (r.status !== 0 && !opts.ok) throw new Error(`${cmd} ${a.join(" ")}: ${r.stderr}`);
  return r;
};
const sizeOf = (p) => statSync(p).size;
const fsckClean = (p) => spawnSync("e2fsck", ["-fn", p]).status === 0;

const routes = {
  async fledge(img) {
    await writeExt4(entriesOf(tree), img, { mtime: MTIME, freeBytes: FREE });
  },
  async "mke2fs -d"(img) {
    // The image size has to be guessed up front: content + 10% + the free space.
    const blocks = Math.ceil((dataBytes * 1.1 + FREE) / 4096) + 4096;
    sh("mke2fs", ["-q", "-F", "-t", "ext4", "-b", "4096", "-d", tree, "-E", `root_owner=0:0`, img, String(blocks)], { env: { ...process.env, E2FSPROGS_FAKE_TIME: String(MTIME) } });
  },
  async "go route"(img) {
    const kb = Math.ceil(Number(execFileSync("du", ["-sk", tree], { encoding: "utf8" }).split(/\s/)[0]));
    sh("dd", ["if=/dev/zero", `of=${img}`, "bs=1K", "count=0", `seek=${kb + FREE / 1024}`], { stdio: "ignore" });
    sh("mkfs.ext4", ["-q", "-F", img]);
    const mnt = join(work, "mnt");
    mkdirSync(mnt, { recursive: true });
    const loop = sh("losetup", ["--find", "--show", img]).stdout.trim();
    try {
      sh("mount", [loop, mnt]);
      try {
        sh("cp", ["-a", `${tree}/.`, mnt]);
      } finally {
        sh("umount", [mnt]);
      }
    } finally {
      sh("losetup", ["-d", loop]);
    }
    sh("e2fsck", ["-f", "-y", img], { ok: true });
    const min = Number(/minimum size of the filesystem: (\d+)/.exec(sh("resize2fs", ["-P", img]).stdout)[1]);
    const head = sh("dumpe2fs", ["-h", img], { stdio: ["ignore", "pipe", "ignore"] }).stdout;
    const bs = Number(/Block size:\s+(\d+)/.exec(head)[1]); // mke2fs.conf's "small" type: 1 KiB blocks below 512 MiB
    const cur = Number(/Block count:\s+(\d+)/.exec(head)[1]);
    const want = min + FREE / bs;
    if (want < cur) sh("resize2fs", [img, String(want)]);
    sh("truncate", ["-s", String(Math.min(want, cur) * bs), img]);
  },
};

const median = (xs) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];
const rows = [];
for (const [name, fn] of Object.entries(routes)) {
  if (name === "go route" && process.getuid() !== 0) {
    rows.push({ name, note: "skipped: needs root (losetup, mount)" });
    continue;
  }
  const times = [];
  let size = 0;
  let clean = true;
  for (let i = 0; i < runs; i++) {
    const img = join(work, `${name.replace(/\W+/g, "-")}-${i}.img`);
    execFileSync("sync");
    const t0 = performance.now();
    await fn(img);
    times.push(performance.now() - t0);
    size = sizeOf(img);
    clean &&= fsckClean(img);
    rmSync(img, { force: true });
  }
  rows.push({ name, ms: median(times), size, clean });
}
const date = new Date().toISOString().slice(0, 10);
const e2fs = spawnSync("mke2fs", ["-V"], { encoding: "utf8" }).stderr.split("\n")[0];
console.log(`${date}, ${cpus().length} × ${cpus()[0]?.model}, ${(totalmem() / 2 ** 30).toFixed(0)} GiB, Node ${process.version}, ${e2fs}, load average ${loadavg()[0].toFixed(1)} at the start`);
console.log(`tree: ${sources.join(" + ")}: ${fileCount} entries, ${(dataBytes / 2 ** 20).toFixed(1)} MiB; free space 64 MiB; median of ${runs}`);
console.log("| route | build time | image size | e2fsck -fn |");
console.log("|---|---|---|---|");
for (const r of rows) console.log(r.note ? `| ${r.name} | ${r.note} | | |` : `| ${r.name} | ${(r.ms / 1000).toFixed(2)} s | ${(r.size / 2 ** 20).toFixed(1)} MiB | ${r.clean ? "clean" : "ERRORS"} |`);
rmSync(work, { recursive: true, force: true });
