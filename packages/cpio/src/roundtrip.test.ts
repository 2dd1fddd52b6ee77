import { lstat, mkdtemp, readFile, readlink, readdir, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { archiveToBuffer } from "./archive.js";
import { readArchive } from "./reader.js";
import { extractEntries } from "./extract.js";
import type { CpioEntry } from "./entry.js";
import { isRoot, randomTree, run } from "./test/helpers.js";

const MTIME = 1704067200;
const tmp: string[] = [];
afterAll(async () => {
  for (const d of tmp) await rm(d, { recursive: true, force: true });
});

/** What an entry list means once unpacked: path → kind, mode, content/target/device, link group. */
function expected(entries: CpioEntry[]): Map<string, string> {
  const byPath = new Map(entries.map((e) => [e.path, e]));
  const root = (e: CpioEntry): CpioEntry => (e.linkTo ? root(byPath.get(e.linkTo)!) : e);
  const m = new Map<string, string>();
  for (const e of entries) {
    for (let i = e.path.indexOf("/"); i > 0; i = e.path.indexOf("/", i + 1)) if (!m.has(e.path.slice(0, i))) m.set(e.path.slice(0, i), "dir 755");
    const r = root(e);
    switch (e.type) {
      case "dir":
        m.set(e.path, `dir ${e.mode.toString(8)}`);
        break;
      case "file":
        m.set(e.path, `file ${r.mode.toString(8)} ${Buffer.from(r.data!).toString("base64")} link:${r.path}`);
        break;
      case "symlink":
        m.set(e.path, `symlink ${e.target}`);
        break;
      case "char":
      case "block":
        m.set(e.path, `${e.type} ${e.mode.toString(8)} ${e.major}:${e.minor}`);
        break;
      case "fifo":
        m.set(e.path, `fifo ${e.mode.toString(8)}`);
        break;
    }
  }
  return m;
}

/** The same description read back from a directory on disk. */
async function scan(dir: string, withDevices: boolean): Promise<Map<string, string>> {
  const m = new Map<string, string>();
  const inodes = new Map<number, string>();
  async function walk(rel: string) {
    for (const name of (await readdir(join(dir, rel))).sort()) {
      const p = rel ? `${rel}/${name}` : name;
      const full = join(dir, p);
      const st = await lstat(full);
      const perm = (st.mode & 0o7777).toString(8);
      if (st.isDirectory()) {
        m.set(p, `dir ${perm}`);
        await walk(p);
      } else if (st.isFile()) {
        const first = inodes.get(st.ino) ?? p;
        inodes.set(st.ino, first);
        m.set(p, `file ${perm} ${(await readFile(full)).toString("base64")} link:${first}`);
      } else if (st.isSymbolicLink()) m.set(p, `symlink ${await readlink(full)}`);
      else if (st.isCharacterDevice() || st.isBlockDevice()) {
        if (withDevices) m.set(p, `${st.isCharacterDevice() ? "char" : "block"} ${perm} ${Math.floor(st.rdev / 256) & 0xfff}:${(st.rdev & 0xff) | ((st.rdev >> 12) & 0xfff00)}`);
      } else if (st.isFIFO()) m.set(p, `fifo ${perm}`);
    }
  }
  await walk("");
  return m;
}

/** Link groups are named by their first path in sorted order on both sides. */
function normaliseLinks(m: Map<string, string>): Map<string, string> {
  const groups = new Map<string, string>();
  for (const [p, v] of [...m].sort(([a], [b]) => Buffer.compare(Buffer.from(a), Buffer.from(b)))) {
    const g = /link:(.*)$/.exec(v)?.[1];
    if (g !== undefined && !groups.has(g)) groups.set(g, p);
  }
  return new Map([...m].map(([p, v]) => [p, v.replace(/link:(.*)$/, (_, g) => `link:${groups.get(g)}`)]));
}

function withoutDevices(m: Map<string, string>): Map<string, string> {
  return new Map([...m].filter(([, v]) => !/^(char|block) /.test(v)));
}

describe("round trip (write → read) over random trees", () => {
  for (const compressor of ["none", "gzip", "zstd", "xz", "lz4"]) {
    it(`${compressor}: 25 random trees read back to the same entries`, async () => {
      for (let seed = 1; seed <= (compressor === "xz" ? 8 : 25); seed++) {
        const tree = randomTree(seed * 7919 + compressor.length);
        const format = seed % 2 ? "newc" : "crc";
        const buf = await archiveToBuffer(tree, { mtime: MTIME, compressor, workers: 0, format, level: compressor === "xz" ? 0 : undefined, segment: { min: 2048, max: 16384 } });
        const { entries, members } = await readArchive(buf);
        if (compressor !== "none") expect(members.every((m) => m.kind === compressor)).toBe(true);
        const got = new Map<string, string>();
        for (const e of entries) {
          const d = e.linkTo ? entries.find((x) => x.path === e.linkTo)! : e;
          got.set(
            e.path,
            e.type === "dir"
              ? `dir ${e.mode.toString(8)}`
              : e.type === "file"
                ? `file ${e.mode.toString(8)} ${Buffer.from(d.data!).toString("base64")} link:${e.linkTo ?? e.path}`
                : e.type === "symlink"
                  ? `symlink ${e.target}`
                  : e.type === "fifo"
                    ? `fifo ${e.mode.toString(8)}`
                    : `${e.type} ${e.mode.toString(8)} ${e.rdevmajor}:${e.rdevminor}`,
          );
          expect(e.mtime).toBe(MTIME);
          expect(e.format).toBe(format);
        }
        expect(normaliseLinks(got)).toEqual(normaliseLinks(expected(tree)));
      }
    });
  }
});

describe("GNU cpio and bsdtar extract what fledge wrote", () => {
  const seeds = [11, 12, 13, 14];
  for (const tool of ["cpio", "bsdtar", "fledge"]) {
    it(`${tool} -x: content, modes, symlinks, hardlinks${isRoot ? ", devices" : " (devices skipped: not root)"} and fifos identical to the tree`, async () => {
      for (const seed of seeds) {
        const tree = randomTree(seed, 80);
        const buf = await archiveToBuffer(tree, { mtime: MTIME, compressor: "gzip", workers: 0, segment: { min: 4096, max: 32768 } });
        const dir = await mkdtemp(join(tmpdir(), `fledge-x-${tool}-`));
        tmp.push(dir);
        if (tool === "cpio") {
          const r = run("sh", ["-c", "gzip -dc | cpio -idm --no-absolute-filenames --quiet"], { input: buf, cwd: dir });
          if (isRoot) expect(r.stderr).toBe("");
        } else if (tool === "bsdtar") {
          const r = run("bsdtar", ["-xpf", "-"], { input: buf, cwd: dir });
          if (isRoot) expect(r.stderr).toBe("");
        } else {
          await extractEntries((await readArchive(buf)).entries, dir);
        }
        const want = normaliseLinks(expected(tree));
        const got = normaliseLinks(await scan(dir, isRoot));
        expect(got).toEqual(isRoot ? want : withoutDevices(want));
      }
    });
  }
});
