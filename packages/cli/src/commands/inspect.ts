import { createHash } from "node:crypto";
import { constants } from "node:fs";
import { open, type FileHandle } from "node:fs/promises";
import { resolve } from "node:path";
import { DEFAULT_MAX_OUTPUT, scanArchive, type ReadEntry } from "@fledge/cpio";
import { describeKind } from "@fledge/safe-fs";
import { ExitError, UsageError, type CliIO } from "../io.js";
import { parseCommand } from "../args.js";
import type { GlobalFlags } from "../index.js";

export const help = `fledge inspect — list what an initramfs artifact contains

Usage: fledge inspect [options] <artifact>

Reads the artifact as the kernel would: newc (070701/070702) members, uncompressed or gzip, zstd,
xz or lz4 (legacy frame), concatenated. Lists every entry like "cpio -tv", as it reads them:
memory stays small whatever the size of the artifact. Control characters in names are shown
escaped (\\n, \\e, \\xNN) in the listing; --json gives them exactly.

Options:
      --sizes               where the bytes go: a du-like tree (each directory with the bytes
                            under it) and the bytes of each origin (busybox, init, kestrel,
                            each mapping, each layer) from the origins record of the build
      --depth <n>           with --sizes: show directories down to this depth (default 2)
      --json                entries and members as JSON on stdout
      --max-size <size>     stop when the archive decompresses to more than <size>
                            (bytes, or with K, M, G: default 4G)
  -h, --help                show this help

Exit codes: 0 listed, 1 unreadable or corrupt artifact (or one the kernel would refuse, or larger
than --max-size), 2 usage error.
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

const ESCAPES: Record<string, string> = { "\\": "\\\\", "\n": "\\n", "\r": "\\r", "\t": "\\t", "\x1b": "\\e" };

/**
 * A name made safe for a terminal listing: control characters (C0, DEL, C1), backslash, and
 * Unicode format characters that reorder text (bidi overrides) are escaped, so a name can neither
 * forge a second listing line nor send escape sequences to the terminal.
 */
export function escapeName(s: string): string {
  // biome-ignore lint/suspicious/noControlCharactersInRegex: matching control characters is the point: they are escaped
  return s.replace(/[\x00-\x1f\x7f-\x9f\\\u200e\u200f\u202a-\u202e\u2066-\u2069\u2028\u2029]/g, (c) => {
    if (ESCAPES[c]) return ESCAPES[c];
    const code = c.charCodeAt(0);
    return code < 0x100 ? `\\x${code.toString(16).padStart(2, "0")}` : `\\u{${code.toString(16)}}`;
  });
}

/** "100M" → bytes. */
export function parseSize(s: string): number {
  const m = /^(\d+(?:\.\d+)?)\s*([KMGT]?)(i?B)?$/i.exec(s.trim());
  if (!m) throw new UsageError(`--max-size wants a size such as 512M or 4G, got "${s}"`);
  const mult = { "": 1, K: 2 ** 10, M: 2 ** 20, G: 2 ** 30, T: 2 ** 40 }[m[2]!.toUpperCase()]!;
  const n = Math.floor(Number(m[1]) * mult);
  if (n < 1) throw new UsageError(`--max-size must be at least 1 byte, got "${s}"`);
  return n;
}

/** Opens the artifact for reading, refusing devices, FIFOs and sockets before anything is read. */
async function openArtifact(path: string): Promise<FileHandle> {
  let fh: FileHandle;
  try {
    // non-blocking: a FIFO must not hang us before fstat can refuse it
    fh = await open(path, constants.O_RDONLY | constants.O_NONBLOCK | constants.O_NOCTTY);
  } catch (err) {
    const e = err as NodeJS.ErrnoException;
    throw new ExitError(1, `cannot read ${path}: ${e.code === "ENOENT" ? "no such file" : (e.code ?? e.message)}`);
  }
  const st = await fh.stat();
  if (!st.isFile()) {
    await fh.close();
    throw new ExitError(1, `${path} is ${describeKind(st)}, not an artifact file; fledge inspect reads regular files only`);
  }
  return fh;
}

async function sha256Of(fh: FileHandle, size: number): Promise<string> {
  const h = createHash("sha256");
  const buf = Buffer.allocUnsafe(1 << 20);
  for (let pos = 0; pos < size; ) {
    const { bytesRead } = await fh.read(buf, 0, Math.min(buf.length, size - pos), pos);
    if (bytesRead === 0) break;
    h.update(buf.subarray(0, bytesRead));
    pos += bytesRead;
  }
  return h.digest("hex");
}

/** Writes in batches, waiting when the reader (a pipe to `less`) is behind: memory stays bounded. */
function batcher(stream: CliIO["stdout"]) {
  let buf = "";
  const flush = async () => {
    if (!buf) return;
    const s = buf;
    buf = "";
    const ok = stream.write(s);
    const s2 = stream as unknown as NodeJS.WriteStream;
    if (ok === false && typeof s2.once === "function") await new Promise((r) => s2.once("drain", r));
  };
  return {
    async add(s: string) {
      buf += s;
      if (buf.length > 64 * 1024) await flush();
    },
    flush,
  };
}

function entryJson(e: ReadEntry, sha256: string | undefined) {
  return {
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
    ...(e.type === "file" && sha256 ? { sha256 } : {}),
  };
}

/** Entries held back while a hardlink group's data has not been read yet (GNU cpio stores it on the last name). */
const MAX_HELD = 65_536;
const EMPTY_SHA = createHash("sha256").digest("hex");

export async function run(argv: string[], io: CliIO, flags: GlobalFlags): Promise<number> {
  const { values, positionals } = parseCommand("inspect", argv, { "max-size": { type: "string" }, sizes: { type: "boolean" }, depth: { type: "string" } }, { positionals: true });
  if (values.help) {
    io.stdout.write(help);
    return 0;
  }
  if (positionals.length !== 1) throw new UsageError(`expected one artifact, got ${positionals.length}\nRun "fledge inspect --help" for usage.`);
  const maxOutput = values["max-size"] !== undefined ? parseSize(values["max-size"]) : DEFAULT_MAX_OUTPUT;
  const path = resolve(io.cwd, positionals[0]!);
  if (values.sizes || values.depth !== undefined) return (await import("../sizes-command.js")).runSizes(path, values.depth, io, flags, maxOutput);
  const fh = await openArtifact(path);
  try {
    const size = (await fh.stat()).size;
    const out = batcher(io.stdout);
    if (flags.json) return await listJson(fh, path, size, maxOutput, io, out);
    let scan;
    try {
      scan = await scanArchive(fh, {
        maxOutput,
        hash: false,
        onEntry: async (e) => {
          const sz = e.type === "char" || e.type === "block" ? `${e.rdevmajor}, ${e.rdevminor}` : String(e.size);
          const suffix = e.type === "symlink" ? ` -> ${escapeName(e.target ?? "")}` : e.linkTo ? ` link to ${escapeName(e.linkTo)}` : "";
          await out.add(`${modeString(e)} ${String(e.nlink).padStart(3)} ${String(e.uid).padEnd(8)} ${String(e.gid).padEnd(8)} ${sz.padStart(10)} ${date(e.mtime)} ${escapeName(e.path)}${suffix}\n`);
        },
      });
    } catch (err) {
      await out.flush();
      throw new ExitError(1, `${path}: ${(err as Error).message}`);
    }
    await out.flush();
    if (!flags.quiet) {
      const sha256 = await sha256Of(fh, size);
      const kinds = [...new Set(scan.members.map((m) => m.kind))];
      io.stderr.write(`${scan.entries} entries, ${scan.uncompressedSize} bytes of newc in ${scan.members.length} ${kinds.join("+")} member(s), ${size} bytes, sha256 ${sha256}\n`);
    }
    return 0;
  } finally {
    await fh.close();
  }
}

/**
 * JSON, streamed: `{"entries": [...], "artifact": {...}, "ok": true}`. The summary comes last
 * because it is known last; on a corrupt artifact the document still closes, with
 * `"ok": false` and the error, so it always parses.
 */
async function listJson(fh: FileHandle, path: string, size: number, maxOutput: number, io: CliIO, out: ReturnType<typeof batcher>): Promise<number> {
  let first = true;
  const held: { e: ReadEntry; key?: string }[] = [];
  const groupSha = new Map<string, string>();
  const unresolved = new Set<string>();
  const emit = async (e: ReadEntry, sha: string | undefined) => {
    await out.add((first ? "\n    " : ",\n    ") + JSON.stringify(entryJson(e, sha)));
    first = false;
  };
  const release = async (force: boolean) => {
    while (held.length && (force || unresolved.size === 0)) {
      const { e, key } = held.shift()!;
      await emit(e, key ? (groupSha.get(key) ?? (force && unresolved.has(key) ? undefined : EMPTY_SHA)) : e.sha256);
    }
  };
  await out.add('{\n  "entries": [');
  let scan;
  try {
    scan = await scanArchive(fh, {
      maxOutput,
      hash: true,
      onEntry: async (e) => {
        if (e.type !== "file" || e.nlink < 2) {
          if (held.length) held.push({ e });
          else await emit(e, e.sha256);
          return;
        }
        const key = `${e.ino}:${e.devmajor}:${e.devminor}`;
        if (e.size > 0 && !groupSha.has(key)) {
          groupSha.set(key, e.sha256!);
          unresolved.delete(key);
        } else if (!groupSha.has(key)) unresolved.add(key);
        held.push({ e, key });
        await release(false);
        if (held.length > MAX_HELD) await release(true);
      },
    });
  } catch (err) {
    unresolved.clear();
    await release(true);
    const message = `${path}: ${(err as Error).message}`;
    await out.add(`\n  ],\n  "ok": false,\n  "error": ${JSON.stringify({ code: (err as { code?: string }).code ?? "FLEDGE_CORRUPT", message })}\n}\n`);
    await out.flush();
    io.stderr.write(`error: ${message}\n`);
    return 1;
  }
  unresolved.clear();
  await release(true);
  const sha256 = await sha256Of(fh, size);
  const kinds = [...new Set(scan.members.map((m) => m.kind))];
  const artifact = { path, size, sha256, compression: kinds, members: scan.members.length, uncompressedSize: scan.uncompressedSize };
  await out.add(`${first ? "" : "\n  "}],\n  "artifact": ${JSON.stringify(artifact, null, 2).replace(/\n/g, "\n  ")},\n  "ok": true\n}\n`);
  await out.flush();
  return 0;
}
