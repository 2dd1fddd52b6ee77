import { createHash } from "node:crypto";
import { readFile } from "node:fs/promises";
import { resolve } from "node:path";
import { parseArgs } from "node:util";
import { readArchive, type ReadEntry } from "@fledge/cpio";
import { ExitError, UsageError, type CliIO } from "../io.js";
import type { GlobalFlags } from "../index.js";

export const help = `fledge inspect — list what an initramfs artifact contains

Usage: fledge inspect [options] <artifact>

Reads the artifact as the kernel would: newc (070701/070702) members, uncompressed or gzip, zstd,
xz or lz4 (legacy frame), concatenated. Lists every entry like "cpio -tv".

Options:
      --sizes               where the bytes go: a du-like tree (each directory with the bytes
                            under it) and the bytes of each origin (busybox, init, kestrel,
                            each mapping, each layer) from the origins record of the build
      --depth <n>           with --sizes: show directories down to this depth (default 2)
      --json                entries and members as JSON on stdout
  -h, --help                show this help

Exit codes: 0 listed, 1 unreadable or corrupt artifact (or one the kernel would refuse), 2 usage error.
`;

const TYPE_CHAR: Record<ReadEntry["type"], string> = { file: "-", dir: "d", symlink: "l", char: "c", block: "b", fifo: "p", socket: "s" };

function modeString(e: ReadEntry): string {
  const m = e.mode;
  const rwx = (shift: number, special: number, ch: string) => {
    const r = m & (4 << shift) ? "r" : "-";
    const w = m & (2 << shift) ? "w" : "-";
    const x = m & (1 << shift);
    const s = m & special;
    return r + w + (s ? (x ? ch : ch.toUpperCase()) : x ? "x" : "-");
  };
  return TYPE_CHAR[e.type] + rwx(6, 0o4000, "s") + rwx(3, 0o2000, "s") + rwx(0, 0o1000, "t");
}

const MONTHS = ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"];
function date(mtime: number): string {
  const d = new Date(mtime * 1000);
  return `${MONTHS[d.getUTCMonth()]} ${String(d.getUTCDate()).padStart(2)} ${String(d.getUTCFullYear()).padStart(5)}`;
}

export async function run(argv: string[], io: CliIO, flags: GlobalFlags): Promise<number> {
  let values;
  let positionals: string[];
  try {
    ({ values, positionals } = parseArgs({ args: argv, options: { help: { type: "boolean", short: "h" }, sizes: { type: "boolean" }, depth: { type: "string" } }, allowPositionals: true, strict: true }));
  } catch (err) {
    throw new UsageError(`${(err as Error).message}\nRun "fledge inspect --help" for usage.`);
  }
  if (values.help) {
    io.stdout.write(help);
    return 0;
  }
  if (positionals.length !== 1) throw new UsageError(`expected one artifact, got ${positionals.length}\nRun "fledge inspect --help" for usage.`);
  const path = resolve(io.cwd, positionals[0]!);
  if (values.sizes || values.depth !== undefined) return (await import("../sizes-command.js")).runSizes(path, values.depth, io, flags);
  let buf: Buffer;
  try {
    buf = await readFile(path);
  } catch (err) {
    throw new ExitError(1, `cannot read ${path}: ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}`);
  }
  let result;
  try {
    result = await readArchive(buf);
  } catch (err) {
    throw new ExitError(1, `${path}: ${(err as Error).message}`);
  }
  const sha256 = createHash("sha256").update(buf).digest("hex");
  const kinds = [...new Set(result.members.map((m) => m.kind))];
  if (flags.json) {
    io.stdout.write(
      JSON.stringify(
        {
          ok: true,
          artifact: { path, size: buf.length, sha256, compression: kinds, members: result.members.length, uncompressedSize: result.uncompressedSize },
          entries: result.entries.map((e) => ({
            path: e.path,
            type: e.type,
            mode: "0" + e.mode.toString(8),
            uid: e.uid,
            gid: e.gid,
            nlink: e.nlink,
            ino: e.ino,
            mtime: e.mtime,
            size: e.size,
            ...(e.type === "symlink" ? { target: e.target } : {}),
            ...(e.type === "char" || e.type === "block" ? { major: e.rdevmajor, minor: e.rdevminor } : {}),
            ...(e.linkTo ? { linkTo: e.linkTo } : {}),
            ...(e.type === "file" && e.data ? { sha256: createHash("sha256").update(e.data).digest("hex") } : {}),
          })),
        },
        null,
        2,
      ) + "\n",
    );
    return 0;
  }
  const lines: string[] = [];
  for (const e of result.entries) {
    const size = e.type === "char" || e.type === "block" ? `${e.rdevmajor}, ${e.rdevminor}` : String(e.size);
    const suffix = e.type === "symlink" ? ` -> ${e.target}` : e.linkTo ? ` link to ${e.linkTo}` : "";
    lines.push(`${modeString(e)} ${String(e.nlink).padStart(3)} ${String(e.uid).padEnd(8)} ${String(e.gid).padEnd(8)} ${size.padStart(10)} ${date(e.mtime)} ${e.path}${suffix}`);
  }
  io.stdout.write(lines.join("\n") + (lines.length ? "\n" : ""));
  if (!flags.quiet)
    io.stderr.write(`${result.entries.length} entries, ${result.uncompressedSize} bytes of newc in ${result.members.length} ${kinds.join("+")} member(s), ${buf.length} bytes, sha256 ${sha256}\n`);
  return 0;
}
