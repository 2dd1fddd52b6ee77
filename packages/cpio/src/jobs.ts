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
  size: number;
  out: string;
  /** sha256 (hex) of the uncompressed segment, as hashed before: the file must not change. */
  expect: string;
}

export type WorkerRequest = CompressJob | FileJob;

export interface JobCodec {
  compress(data: Uint8Array, level: number): Uint8Array | Promise<Uint8Array>;
  createStream?(level?: number): Transform;
}

/** Size of the header of a cache entry / segment file: the sha256 of the payload. */
export const SEGMENT_FILE_HEADER = 32;

/**
 * Compresses header + file data + padding into `out`: 32 bytes of sha256(payload), then the
 * payload. Streams when the codec can, so memory stays flat whatever the file's size.
 */
export async function runFileJob(codec: JobCodec, job: FileJob): Promise<{ size: number }> {
  const inHash = createHash("sha256");
  async function* source(): AsyncGenerator<Uint8Array> {
    inHash.update(job.header);
    yield job.header;
    for await (const c of fileChunks(job.file, job.size, job.entryPath)) {
      inHash.update(c);
      yield c;
    }
    const p = pad4(job.size);
    if (p) {
      inHash.update(ZERO_PAD.subarray(0, p));
      yield ZERO_PAD.subarray(0, p);
    }
  }
  const fh = await open(job.out, "w");
  const outHash = createHash("sha256");
  let size = 0;
  try {
    await fh.write(new Uint8Array(SEGMENT_FILE_HEADER), 0, SEGMENT_FILE_HEADER, 0);
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
    if (inHash.digest("hex") !== job.expect)
      throw new CpioError("ECHANGED", `${job.file} (for ${job.entryPath}) changed while it was being archived`, job.entryPath);
    await fh.write(outHash.digest(), 0, SEGMENT_FILE_HEADER, 0);
  } finally {
    await fh.close();
  }
  return { size };
}
