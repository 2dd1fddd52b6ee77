import { createGzip, constants } from "node:zlib";
import { PassThrough, type Transform } from "node:stream";

/** A named compressor that turns an uncompressed byte stream into a kernel-readable one. */
export interface Compressor {
  name: string;
  /** File name suffix, e.g. ".gz". */
  extension: string;
  defaultLevel?: number;
  createStream(level?: number): Transform;
}

export const gzip: Compressor = {
  name: "gzip",
  extension: ".gz",
  defaultLevel: 6,
  // Node's gzip writes no file name and mtime 0: the header the kernel's gunzip accepts.
  createStream: (level) => createGzip({ level: level ?? 6, strategy: constants.Z_DEFAULT_STRATEGY }),
};

export const none: Compressor = {
  name: "none",
  extension: "",
  createStream: () => new PassThrough(),
};

export const builtinCompressors: Record<string, Compressor> = { gzip, none };
