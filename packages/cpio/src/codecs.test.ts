import { readFileSync } from "node:fs";
import { Readable, type Transform } from "node:stream";
import { describe, expect, it } from "vitest";
import { codecs } from "./codecs.js";
import { GZIP_CHUNK } from "./deflate.js";
import { decompressMembers } from "./reader.js";
import { mixedBytes as mixed, rng, run } from "./test/helpers.js";
import { XZ_FEED, xzDecodeStream, xzVersion } from "./xz.js";
import { ZSTD_FEED, zstdDecodeFrame, zstdVersion } from "./zstd.js";

function random(seed: number, size: number): Uint8Array {
  const r = rng(seed);
  const out = new Uint8Array(size);
  for (let i = 0; i < size; i++) out[i] = Math.floor(r() * 256);
  return out;
}

/** Real bytes: this package's modules and sources. */
const real = Buffer.concat(["../wasm/zstd.wasm", "../wasm/xz.wasm", "./reader.ts", "./archive.ts"].map((f) => readFileSync(new URL(f, import.meta.url))));

async function viaStream(make: () => Transform, data: Uint8Array, seed: number): Promise<Buffer> {
  const r = rng(seed);
  const parts: Buffer[] = [];
  for (let p = 0; p < data.length; ) {
    const n = Math.min(data.length - p, 1 + Math.floor(r() * 300_000));
    parts.push(Buffer.from(data.subarray(p, p + n)));
    p += n;
  }
  const out: Buffer[] = [];
  for await (const c of Readable.from(parts).pipe(make())) out.push(c as Buffer);
  return Buffer.concat(out);
}

const TOOL = { gzip: "gzip -dc", zstd: "zstd -dc -q", xz: "xz -dc" } as const;
const LEVELS = { gzip: [1, 2, 3, 4, 5, 6, 7, 8, 9], zstd: [1, 3, 5, 9, 12, 15, 19], xz: [0, 1, 2, 3, 6] } as const;

describe("the WebAssembly codecs", () => {
  it("name the pinned library versions", () => {
    expect(zstdVersion()).toBe("1.5.7");
    expect(xzVersion()).toBe("5.8.1");
    expect(codecs.zstd!.id).toMatch(/^zstd\/zstd@1\.5\.7\/wasm-[0-9a-f]{16}$/);
    expect(codecs.xz!.id).toMatch(/^xz\/liblzma@5\.8\.1\/wasm-[0-9a-f]{16}$/);
  });

  for (const name of ["gzip", "zstd", "xz"] as const) {
    it(`${name}: random, mixed, real and empty data at every level decode with the ${name} CLI and with fledge's reader`, async () => {
      const c = codecs[name]!;
      const inputs = [new Uint8Array(0), Uint8Array.of(42), mixed(1, 100_000), random(2, 70_000), real];
      for (const level of LEVELS[name]) {
        for (const data of inputs) {
          const member = await c.compress(data, level);
          const r = run("sh", ["-c", TOOL[name]], { input: member });
          expect(r.status, `${name} -${level} of ${data.length} bytes: ${r.stderr}`).toBe(0);
          expect(Buffer.compare(r.stdout, Buffer.from(data))).toBe(0);
          const [m, ...more] = await decompressMembers(member);
          expect(more).toHaveLength(0);
          expect(m!.kind).toBe(name);
          expect(Buffer.compare(Buffer.from(m!.data), Buffer.from(data))).toBe(0);
        }
      }
    }, 120_000);

    it(`${name}: the streaming form gives the in-memory form's bytes, however the input is split (past several feed buffers)`, async () => {
      const c = codecs[name]!;
      const size = ({ gzip: GZIP_CHUNK, zstd: ZSTD_FEED, xz: XZ_FEED } as const)[name] * 2 + 4567;
      const data = mixed(9, size);
      const level = name === "xz" ? 1 : 3;
      const whole = Buffer.from(await c.compress(data, level));
      for (const seed of [1, 2]) expect(Buffer.compare(await viaStream(() => c.createStream!(level), data, seed), whole)).toBe(0);
      expect(Buffer.compare(run("sh", ["-c", TOOL[name]], { input: whole }).stdout, Buffer.from(data))).toBe(0);
    }, 120_000);
  }

  it("zstd frames carry a checksum and a window the kernel accepts, one frame per member", async () => {
    const frame = await codecs.zstd!.compress(mixed(4, 3 << 20), 19);
    const r = run("sh", ["-c", "f=$(mktemp) && cat > $f && zstd -lv $f; rm -f $f"], { input: frame });
    expect(r.stdout.toString()).toMatch(/Frames:\s+1\b|# Frames\s+1\b/i);
    expect(r.stdout.toString()).toMatch(/Check:\s+XXH64/);
    const w = /Window Size:\s+([\d.]+)\s+(KiB|MiB)/.exec(r.stdout.toString());
    expect(w).not.toBeNull();
    expect(Number(w![1]) * (w![2] === "MiB" ? 1 << 20 : 1 << 10)).toBeLessThanOrEqual(128 << 20);
  });

  it("xz streams use --check=crc32", async () => {
    const s = await codecs.xz!.compress(mixed(5, 10_000), 6);
    const info = run("sh", ["-c", "f=$(mktemp) && cat > $f && xz --robot --list $f; rm -f $f"], { input: s }).stdout.toString();
    expect(info).toMatch(/\tCRC32\t/);
  });

  it("the decoders refuse corrupt and truncated input with a reason, and stop at the output limit", async () => {
    const data = mixed(6, 500_000);
    const z = await codecs.zstd!.compress(data, 3);
    expect(() => zstdDecodeFrame(z.subarray(0, z.length - 10), 1e9)).toThrow(/truncated|corrupt|wrong|checksum/i);
    const zc = Uint8Array.from(z);
    zc[zc.length >> 1] ^= 0xff;
    expect(() => zstdDecodeFrame(zc, 1e9)).toThrow();
    expect(() => zstdDecodeFrame(z, 1000)).toThrow(/limit/);
    expect(Buffer.compare(Buffer.from(zstdDecodeFrame(z, 1e9)), Buffer.from(data))).toBe(0);

    const x = await codecs.xz!.compress(data, 1);
    expect(() => xzDecodeStream(x.subarray(0, x.length - 30), 1e9)).toThrow(/end of input|corrupt/);
    const xc = Uint8Array.from(x);
    xc[xc.length >> 1] ^= 0xff;
    expect(() => xzDecodeStream(xc, 1e9)).toThrow(/corrupt|format|unsupported/);
    expect(() => xzDecodeStream(x, 1000)).toThrow(/limit/);
    // the system's xz writes CRC64 by default: the reader still verifies and decodes it
    const sys = run("xz", ["-c", "-3"], { input: data });
    expect(Buffer.compare(Buffer.from(xzDecodeStream(sys.stdout, 1e9)), Buffer.from(data))).toBe(0);
  });

  it("fuzz: 120 random inputs (random sizes and kinds, random levels) round-trip through every compressor", async () => {
    const r = rng(77);
    for (let i = 0; i < 120; i++) {
      const size = Math.floor(r() ** 3 * 300_000);
      const data = r() < 0.3 ? random(i, size) : r() < 0.5 ? mixed(i, size) : real.subarray(Math.floor(r() * real.length)).subarray(0, size);
      for (const name of ["gzip", "zstd", "xz", "lz4"] as const) {
        const levels: readonly number[] = name === "lz4" ? [0] : name === "xz" ? [0, 1] : LEVELS[name];
        const level = levels[Math.floor(r() * levels.length)]!;
        const member = await codecs[name]!.compress(data, level);
        const [m] = await decompressMembers(member);
        expect(Buffer.compare(Buffer.from(m!.data), Buffer.from(data)), `${name} -${level}, ${size} bytes`).toBe(0);
      }
    }
  }, 180_000);
});

describe("ZstdDecompressStream", () => {
  it("decodes concatenated frames (fledge's and the zstd CLI's, skippable ones between) however the input is split, and refuses a truncated stream", async () => {
    const { ZstdDecompressStream } = await import("./zstd.js");
    const a = mixed(21, 3 << 20);
    const b = random(22, 200_000);
    const cli = run("zstd", ["-c", "-q", "-5"], { input: b }).stdout;
    const skippable = Buffer.concat([Buffer.from([0x50, 0x2a, 0x4d, 0x18, 3, 0, 0, 0]), Buffer.from("abc")]);
    const input = Buffer.concat([Buffer.from(await codecs.zstd!.compress(a, 3)), skippable, cli, Buffer.from(await codecs.zstd!.compress(new Uint8Array(0), 1))]);
    const decode = async (buf: Buffer, seed: number) => {
      const r = rng(seed);
      const parts: Buffer[] = [];
      for (let p = 0; p < buf.length; ) {
        const n = Math.min(buf.length - p, 1 + Math.floor(r() * 100_000));
        parts.push(buf.subarray(p, p + n));
        p += n;
      }
      const out: Buffer[] = [];
      for await (const c of Readable.from(parts).pipe(new ZstdDecompressStream())) out.push(c as Buffer);
      return Buffer.concat(out);
    };
    for (const seed of [1, 2]) expect(Buffer.compare(await decode(input, seed), Buffer.concat([a, b]))).toBe(0);
    await expect(decode(input.subarray(0, input.length - cli.length - 20), 3)).rejects.toThrow(/ends inside a frame/);
    const bad = Buffer.from(input);
    bad[100] ^= 0xff;
    await expect(decode(bad, 4)).rejects.toThrow(/corrupt/);
  }, 60_000);
});
