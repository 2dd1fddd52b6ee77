import { createHash } from "node:crypto";
import { readFileSync } from "node:fs";
import { Readable } from "node:stream";
import { crc32 as zlibCrc32, gunzipSync } from "node:zlib";
import { describe, expect, it } from "vitest";
import { WASM_SHA256, codecs } from "./codecs.js";
import { GZIP_CHUNK, GZIP_HEADER, GzipStream, crc32, crc32Combine, deflateChunk, gzipMember, gzipTrailer } from "./deflate.js";
import { mixedBytes as mixed, rng, run } from "./test/helpers.js";

async function streamed(data: Uint8Array, level: number, pieces: number[]): Promise<Buffer> {
  const parts: Buffer[] = [];
  let p = 0;
  for (const n of pieces) {
    parts.push(Buffer.from(data.subarray(p, p + n)));
    p += n;
  }
  if (p < data.length) parts.push(Buffer.from(data.subarray(p)));
  const out: Buffer[] = [];
  for await (const c of Readable.from(parts).pipe(new GzipStream(level))) out.push(c as Buffer);
  return Buffer.concat(out);
}

const gunzipCli = (buf: Uint8Array) => run("gzip", ["-dc"], { input: buf });

describe("gzip (libdeflate, WebAssembly)", () => {
  const sizes = [0, 1, 100, 65535, 65536, GZIP_CHUNK - 1, GZIP_CHUNK, GZIP_CHUNK + 1, 2 * GZIP_CHUNK, 2 * GZIP_CHUNK + 12345];

  it("members of every size decode with gzip -dc and Node's zlib to the input, with a header the kernel accepts", () => {
    for (const size of sizes) {
      const data = mixed(size + 1, size);
      const gz = gzipMember(data, 6);
      // No FEXTRA/FNAME/FCOMMENT/FHCRC, mtime 0: the kernel's gunzip breaks on the first three.
      expect([...gz.subarray(0, 10)]).toEqual([...GZIP_HEADER]);
      const r = gunzipCli(gz);
      expect(r.status, `gzip -dc of ${size} bytes: ${r.stderr}`).toBe(0);
      expect(Buffer.compare(r.stdout, Buffer.from(data))).toBe(0);
      expect(Buffer.compare(gunzipSync(gz), Buffer.from(data))).toBe(0);
    }
  }, 60_000);

  it("every level 1–9 round-trips random and real data (this package's own source and the module itself)", () => {
    const real = Buffer.concat([readFileSync(new URL("./deflate.ts", import.meta.url)), readFileSync(new URL("../wasm/deflate.wasm", import.meta.url))]);
    for (let level = 1; level <= 9; level++) {
      for (const data of [mixed(level, 300_000), real, new Uint8Array(200_000).fill(7)]) {
        const gz = gzipMember(data, level);
        expect(Buffer.compare(gunzipCli(gz).stdout, Buffer.from(data))).toBe(0);
      }
    }
  }, 60_000);

  it("the streaming form gives the same bytes as gzipMember, however the input is split", async () => {
    const r = rng(5);
    for (const size of [0, 10, GZIP_CHUNK, 2 * GZIP_CHUNK + 999]) {
      const data = mixed(size + 7, size);
      const whole = Buffer.from(gzipMember(data, 6));
      const pieces = Array.from({ length: 20 }, () => Math.floor(r() * (size / 4 + 10)));
      expect(Buffer.compare(await streamed(data, 6, pieces), whole), `size ${size}`).toBe(0);
      expect(Buffer.compare(await streamed(data, 6, [size]), whole)).toBe(0);
    }
  }, 60_000);

  it("chunks compressed in any order (as two threads would) assemble into the same member", () => {
    const data = mixed(11, 3 * GZIP_CHUNK + 5000);
    const chunks = [0, 1, 2, 3].map((i) => data.subarray(i * GZIP_CHUNK, (i + 1) * GZIP_CHUNK));
    const done = [3, 1, 0, 2].map((i) => ({ i, ...deflateChunk(chunks[i]!, 6, i === 3) })).sort((a, b) => a.i - b.i);
    const crc = done.reduce((c, d, i) => crc32Combine(c, d.crc, chunks[i]!.length), 0);
    const assembled = Buffer.concat([GZIP_HEADER, ...done.map((d) => d.deflated), gzipTrailer(crc, data.length)]);
    expect(Buffer.compare(assembled, Buffer.from(gzipMember(data, 6)))).toBe(0);
  });

  it("a non-final chunk ends byte-aligned in an empty stored block; a final one is complete deflate", () => {
    for (const size of [1, 40, 1000, 100_000]) {
      const data = mixed(size, size);
      const open = deflateChunk(data, 6, false).deflated;
      expect([...open.subarray(-4)]).toEqual([0, 0, 0xff, 0xff]);
      const closed = deflateChunk(data, 6, true).deflated;
      // open + closed is one valid raw deflate stream holding the data twice
      const raw = Buffer.concat([GZIP_HEADER, open, closed, gzipTrailer(crc32Combine(crc32(data), crc32(data), size), 2 * size)]);
      expect(Buffer.compare(gunzipCli(raw).stdout, Buffer.concat([data, data]))).toBe(0);
    }
  });

  it("crc32 and crc32Combine agree with zlib's crc32", () => {
    const r = rng(3);
    for (let t = 0; t < 50; t++) {
      const a = mixed(t, Math.floor(r() * 5000));
      const b = mixed(t + 100, Math.floor(r() * 5000));
      expect(crc32(a)).toBe(zlibCrc32(a) >>> 0);
      expect(crc32Combine(crc32(a), crc32(b), b.length)).toBe(zlibCrc32(Buffer.concat([a, b])) >>> 0);
    }
    // lengths past 2^32 (the combination only needs B's length)
    expect(crc32Combine(0, 0, 2 ** 33 + 5)).toBe(0);
  });

  it("refuses levels it does not have", () => {
    expect(() => gzipMember(new Uint8Array(10), 0)).toThrow(/level 0/);
    expect(() => gzipMember(new Uint8Array(10), 13)).toThrow(/level 13/);
  });

  it("the codec id names the committed module's sha256 (so the segment cache key changes with it)", () => {
    const sha = createHash("sha256")
      .update(readFileSync(new URL("../wasm/deflate.wasm", import.meta.url)))
      .digest("hex");
    expect(sha.startsWith(WASM_SHA256.deflate)).toBe(true);
    expect(codecs.gzip!.id).toContain(WASM_SHA256.deflate);
  });
});
