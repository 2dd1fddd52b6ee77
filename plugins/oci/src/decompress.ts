import type { Transform } from "node:stream";
import { createGunzip } from "node:zlib";
import { ZstdDecompressStream } from "@fledge/cpio";
import { OciError } from "./errors.js";

export type Compression = "gzip" | "zstd" | "none";

/** The compression of a layer blob, from its first bytes (media types are advisory; the bytes decide). */
export function sniffCompression(head: Uint8Array, what: string): Compression {
  if (head.length >= 2 && head[0] === 0x1f && head[1] === 0x8b) return "gzip";
  if (head.length >= 4 && head[0] === 0x28 && head[1] === 0xb5 && head[2] === 0x2f && head[3] === 0xfd) return "zstd";
  if (head.length >= 6 && head[0] === 0xfd && head[1] === 0x37 && head[2] === 0x7a && head[3] === 0x58 && head[4] === 0x5a)
    throw new OciError("FLEDGE_OCI_UNSUPPORTED", `${what} is xz-compressed; OCI layers are tar, tar+gzip or tar+zstd`);
  if (head.length >= 3 && head[0] === 0x42 && head[1] === 0x5a && head[2] === 0x68) throw new OciError("FLEDGE_OCI_UNSUPPORTED", `${what} is bzip2-compressed; OCI layers are tar, tar+gzip or tar+zstd`);
  return "none";
}

/** A decompressing Transform for the compression (undefined for none). */
export function decompressor(c: Compression): Transform | undefined {
  if (c === "gzip") return createGunzip({ chunkSize: 256 << 10 });
  if (c === "zstd") return new ZstdDecompressStream(); // @fledge/cpio's WebAssembly zstd (every frame of the stream)
  return undefined;
}
