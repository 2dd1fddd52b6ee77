import { createHash } from "node:crypto";
import { open } from "node:fs/promises";
import { Readable, Writable, type Transform } from "node:stream";
import { pipeline } from "node:stream/promises";
import { CpioError } from "./errors.js";
import { pad4 } from "./newc.js";
import { fileChunks, ZERO_PAD } from "./writer.js";

export interface CodecRef {
  name: string;
  builtin: boolean;
  module?: string;
}

export interface CompressJob {
  op: "compress";
  id: number;
  codec: CodecRef;
  level: number;
  data: Uint8Array;
}

/** One large entry compressed straight from its host file into `out` (cache entry format). */
export interface FileJob {
  op: "file";
  id: number;
  codec: CodecRef;
  level: number;
  header: Uint8Array;
  entryPath: string;
  file: string;
  /** Byte offset of the entry's data in `file` (a range), if not 0. */
  offset?: number;
  size: number;
  out: string;
  /** sha256 (hex) of the file's content as hashed before (with a cache): the file must not have changed since. None without a cache: nothing is hashed. */
  expect?: string;
}

export type WorkerRequest = CompressJob | FileJob;

export interface JobCodec {
  compress(data: Uint8Array, level: number): Uint8Array | Promise<Uint8Array>;
  createStream?(level?: number): Transform;
}

/** Size of the header of a cache entry / segment file (magic, key, length, payload sha256, HMAC; see cache.ts). */
export const SEGMENT_FILE_HEADER = 112;

export interface FileJobResult {
  /** Payload bytes written after the header. */
  size: number;
  /** sha256 (hex) of the payload. */
  payloadSha256: string;
}

/**
 * Compresses header + file data + padding into `out` at offset SEGMENT_FILE_HEADER (the caller
 * writes the header). Streams when the codec can, so memory stays flat whatever the file's size.
 * The file's content is hashed only when `expect` is given.
 */
export async function runFileJob(codec: JobCodec, job: FileJob): Promise<FileJobResult> {
  const inHash = job.expect !== undefined ? createHash("sha256") : undefined;
  async function* source(): AsyncGenerator<Uint8Array> {
    yield job.header;
    for await (const c of fileChunks(job.file, job.size, job.entryPath, undefined, undefined, job.offset)) {
      inHash?.update(c);
      yield c;
    }
    const p = pad4(job.size);
    if (p) yield ZERO_PAD.subarray(0, p);
  }
  const fh = await open(job.out, "w");
  const outHash = createHash("sha256");
  let size = 0;
  try {
    const write = async (c: Uint8Array) => {
      outHash.update(c);
      await fh.write(c, 0, c.length, SEGMENT_FILE_HEADER + size);
      size += c.length;
    };
    if (codec.createStream) {
      const sink = new Writable({
        write(chunk: Buffer, _e, cb) {
          write(chunk).then(() => cb(), cb);
        },
      });
      await pipeline(Readable.from(source()), codec.createStream(job.level), sink);
    } else {
      const parts: Uint8Array[] = [];
      for await (const c of source()) parts.push(c);
      await write(await codec.compress(Buffer.concat(parts), job.level));
    }
    if (inHash && inHash.digest("hex") !== job.expect) throw new CpioError("ECHANGED", `${job.file} (for ${job.entryPath}) changed while it was being archived`, job.entryPath);
  } finally {
    await fh.close();
  }
  return { size, payloadSha256: outHash.digest("hex") };
}
