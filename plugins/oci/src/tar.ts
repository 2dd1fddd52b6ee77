import { extract, type Extract, type Header } from "tar-stream";
import { OciError } from "./errors.js";

/** The kinds of tar member a layer may hold (after pax / GNU extension headers are folded in). */
export type TarType = "file" | "link" | "symlink" | "char" | "block" | "dir" | "fifo";

/** One member of a tar stream, with where its data sits in the stream. */
export interface TarEntry {
  /** The name as stored (pax `path`, GNU long name or ustar prefix + name), not normalised. */
  name: string;
  type: TarType;
  /** Permission bits including setuid, setgid and sticky (07777). */
  mode: number;
  uid: number;
  gid: number;
  /** Bytes of data (regular files only; 0 otherwise). */
  size: number;
  /** Offset of the data in the uncompressed stream. */
  offset: number;
  /** Hardlink or symlink target, as stored ("" when none). */
  linkname: string;
  devmajor: number;
  devminor: number;
  /** Names of extended attributes (pax `SCHILY.xattr.*` / `LIBARCHIVE.xattr.*`), when any. */
  xattrs?: string[];
}

const TYPES: Record<string, TarType | undefined> = {
  file: "file",
  "contiguous-file": "file",
  link: "link",
  symlink: "symlink",
  "character-device": "char",
  "block-device": "block",
  directory: "dir",
  fifo: "fifo",
};

const HEADER = 512;

function paxNumber(pax: Record<string, string> | undefined, key: string, fallback: number, name: string): number {
  const v = pax?.[key];
  if (v === undefined) return fallback;
  if (!/^\d+$/.test(v)) throw new OciError("FLEDGE_OCI_FORMAT", `tar: ${name}: pax ${key} "${v}" is not a number`);
  return Number(v);
}

/** Turns a tar-stream header into a TarEntry, refusing what an image cannot hold faithfully. */
function toEntry(h: Header, headerOffset: number): TarEntry {
  const pax = (h.pax ?? undefined) as Record<string, string> | undefined;
  const name = h.name;
  if (pax && Object.keys(pax).some((k) => k.startsWith("GNU.sparse."))) throw new OciError("FLEDGE_OCI_UNSUPPORTED", `tar: ${name} is a sparse file (pax GNU.sparse.*), which fledge cannot unpack`);
  const type = TYPES[h.type as string];
  if (!type) throw new OciError("FLEDGE_OCI_UNSUPPORTED", `tar: ${name} is a member of an unknown or unsupported kind (GNU sparse, multi-volume or volume label)`);
  let xattrs: string[] | undefined;
  if (pax) {
    for (const k of Object.keys(pax)) {
      const m = /^(?:SCHILY|LIBARCHIVE)\.xattr\.(.+)$/.exec(k);
      if (m) {
        xattrs ??= [];
        xattrs.push(m[1]!);
      }
    }
  }
  const dev = type === "char" || type === "block";
  return {
    name,
    type,
    mode: (h.mode ?? 0) & 0o7777,
    uid: paxNumber(pax, "uid", h.uid ?? 0, name),
    gid: paxNumber(pax, "gid", h.gid ?? 0, name),
    size: type === "file" ? (h.size ?? 0) : 0,
    offset: headerOffset + HEADER,
    linkname: h.linkname ?? "",
    devmajor: dev ? paxNumber(pax, "SCHILY.devmajor", h.devmajor ?? 0, name) : 0,
    devminor: dev ? paxNumber(pax, "SCHILY.devminor", h.devminor ?? 0, name) : 0,
    ...(xattrs ? { xattrs: xattrs.sort() } : {}),
  };
}

/**
 * Indexes a tar stream with tar-stream: push the bytes in order with `write` (await it: it applies
 * backpressure), then `end()`. Every member is reported with the offset of its data in the stream;
 * the data itself is read and dropped, never kept. Sparse files, multi-volume members and unknown
 * member types are refused: fledge cannot put them into an image faithfully.
 */
export class TarIndexer {
  readonly #ex: Extract;
  readonly #done: Promise<void>;
  #error?: Error;

  constructor(onEntry: (e: TarEntry) => void) {
    this.#ex = extract();
    this.#done = new Promise<void>((resolve, reject) => {
      this.#ex.on("finish", () => resolve());
      this.#ex.on("error", (err: Error) => {
        this.#error ??= err;
        reject(this.#wrap(err));
      });
      this.#ex.on("close", () => (this.#error ? reject(this.#wrap(this.#error)) : resolve()));
    });
    this.#done.catch(() => {});
    this.#ex.on("entry", (header, stream, next) => {
      stream.on("error", () => {}); // reported once, by the extractor
      try {
        onEntry(toEntry(header, stream.offset));
      } catch (err) {
        this.#error = err as Error;
        stream.resume();
        next(err as Error);
        return;
      }
      stream.on("end", () => next());
      stream.resume();
    });
  }

  #wrap(err: Error): Error {
    if ((err as { name?: string }).name === "OciError") return err;
    return new OciError("FLEDGE_OCI_FORMAT", `not a valid tar layer: ${err.message}`, { cause: err });
  }

  async write(chunk: Uint8Array): Promise<void> {
    if (this.#error) throw this.#wrap(this.#error);
    if (!this.#ex.write(chunk)) {
      await new Promise<void>((resolve, reject) => {
        const ok = () => {
          this.#ex.off("error", bad);
          resolve();
        };
        const bad = (err: Error) => {
          this.#ex.off("drain", ok);
          reject(this.#wrap(err));
        };
        this.#ex.once("drain", ok);
        this.#ex.once("error", bad);
      });
    }
  }

  async end(): Promise<void> {
    if (this.#error) throw this.#wrap(this.#error);
    this.#ex.end(undefined);
    await this.#done;
  }

  /** Stops early (the caller failed); never throws. */
  destroy(): void {
    this.#ex.destroy(new Error("stopped by the caller"));
  }
}

/** Indexes a whole tar held in memory (tests, small archives). */
export async function indexTar(data: Uint8Array): Promise<TarEntry[]> {
  const out: TarEntry[] = [];
  const t = new TarIndexer((e) => out.push(e));
  for (let i = 0; i < data.length; i += 64 << 10) await t.write(data.subarray(i, i + (64 << 10)));
  await t.end();
  return out;
}
