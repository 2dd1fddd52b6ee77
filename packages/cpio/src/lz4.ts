/**
 * LZ4 block compression and the *legacy* frame format (magic 02 21 4c 18, as `lz4 -l` writes
 * it), the only LZ4 framing the kernel's initramfs decompressor (lib/decompress_unlz4.c) reads.
 * Pure TypeScript so the bytes depend on nothing but this file.
 */
import { CpioError } from "./errors.js";

export const LZ4_LEGACY_MAGIC = 0x184c2102;
/** The kernel decompresses legacy blocks into 8 MiB buffers: no block may be larger. */
export const LZ4_LEGACY_BLOCK = 8 << 20;
const MIN_MATCH = 4;
const LAST_LITERALS = 5;
const MF_LIMIT = 12;
const HASH_LOG = 16;

export function lz4Bound(n: number): number {
  return n + Math.floor(n / 255) + 16;
}

function writeLength(dst: Uint8Array, op: number, len: number): number {
  while (len >= 255) {
    dst[op++] = 255;
    len -= 255;
  }
  dst[op++] = len;
  return op;
}

/** Compresses `src` into one LZ4 block (greedy matching with a 64K-entry hash table). */
export function lz4CompressBlock(src: Uint8Array): Uint8Array {
  const n = src.length;
  const dst = new Uint8Array(lz4Bound(n));
  const table = new Int32Array(1 << HASH_LOG).fill(-1);
  let op = 0;
  let anchor = 0;
  let ip = 0;
  const mflimit = n - MF_LIMIT;
  const matchlimit = n - LAST_LITERALS;
  const read32 = (i: number) => src[i]! | (src[i + 1]! << 8) | (src[i + 2]! << 16) | (src[i + 3]! << 24);
  const emit = (litEnd: number, offset: number, matchLen: number) => {
    const litLen = litEnd - anchor;
    const tokenPos = op++;
    let token = 0;
    if (litLen >= 15) {
      token = 15 << 4;
      op = writeLength(dst, op, litLen - 15);
    } else token = litLen << 4;
    dst.set(src.subarray(anchor, litEnd), op);
    op += litLen;
    if (matchLen > 0) {
      dst[op++] = offset & 0xff;
      dst[op++] = offset >>> 8;
      const ml = matchLen - MIN_MATCH;
      if (ml >= 15) {
        token |= 15;
        op = writeLength(dst, op, ml - 15);
      } else token |= ml;
    }
    dst[tokenPos] = token;
  };
  if (n >= MF_LIMIT + 1) {
    let searches = 0;
    while (ip < mflimit) {
      const seq = read32(ip);
      const h = Math.imul(seq, 2654435761) >>> (32 - HASH_LOG);
      const ref = table[h]!;
      table[h] = ip;
      if (ref >= 0 && ip - ref <= 65535 && read32(ref) === seq) {
        let s = ip;
        let r = ref;
        while (s > anchor && r > 0 && src[s - 1] === src[r - 1]) {
          s--;
          r--;
        }
        let len = ip - s + MIN_MATCH;
        while (s + len < matchlimit && src[s + len] === src[r + len]) len++;
        emit(s, s - r, len);
        ip = s + len;
        anchor = ip;
        searches = 0;
        if (ip - 2 >= 0 && ip - 2 < mflimit) table[Math.imul(read32(ip - 2), 2654435761) >>> (32 - HASH_LOG)] = ip - 2;
      } else {
        // Skip faster through incompressible data, as the reference implementation does.
        ip += 1 + (searches++ >> 6);
      }
    }
  }
  emit(n, 0, 0);
  return dst.slice(0, op);
}

/** Decompresses one LZ4 block; `max` bounds the output. Throws CpioError on malformed input. */
export function lz4DecompressBlock(src: Uint8Array, max: number): Uint8Array {
  let out = new Uint8Array(Math.min(max, src.length * 4 + 64));
  const room = (need: number) => {
    if (need <= out.length) return;
    const grown = new Uint8Array(Math.min(max, Math.max(need, out.length * 2)));
    grown.set(out);
    out = grown;
  };
  let ip = 0;
  let op = 0;
  const bad = (why: string) => new CpioError("ECORRUPT", `corrupt lz4 block: ${why}`);
  while (ip < src.length) {
    const token = src[ip++]!;
    let lit = token >>> 4;
    if (lit === 15) {
      let b;
      do {
        if (ip >= src.length) throw bad("truncated literal length");
        b = src[ip++]!;
        lit += b;
      } while (b === 255);
    }
    if (ip + lit > src.length) throw bad("literals run past the block");
    if (op + lit > max) throw bad("output larger than the block limit");
    room(op + lit);
    out.set(src.subarray(ip, ip + lit), op);
    ip += lit;
    op += lit;
    if (ip === src.length) break;
    if (ip + 2 > src.length) throw bad("truncated match offset");
    const offset = src[ip]! | (src[ip + 1]! << 8);
    ip += 2;
    if (offset === 0 || offset > op) throw bad("match offset out of range");
    let ml = token & 15;
    if (ml === 15) {
      let b;
      do {
        if (ip >= src.length) throw bad("truncated match length");
        b = src[ip++]!;
        ml += b;
      } while (b === 255);
    }
    ml += MIN_MATCH;
    if (op + ml > max) throw bad("output larger than the block limit");
    room(op + ml);
    let from = op - offset;
    for (let i = 0; i < ml; i++) out[op++] = out[from++]!;
  }
  return out.subarray(0, op);
}

function le32(n: number): Uint8Array {
  const b = new Uint8Array(4);
  new DataView(b.buffer).setUint32(0, n >>> 0, true);
  return b;
}

/** A complete legacy frame: magic, then blocks of at most 8 MiB of input, each with its LE32 size. */
export function lz4LegacyCompress(data: Uint8Array): Uint8Array {
  const parts: Uint8Array[] = [le32(LZ4_LEGACY_MAGIC)];
  for (let i = 0; i < data.length; i += LZ4_LEGACY_BLOCK) {
    const block = lz4CompressBlock(data.subarray(i, i + LZ4_LEGACY_BLOCK));
    parts.push(le32(block.length), block);
  }
  return Buffer.concat(parts);
}

/**
 * Decodes a legacy lz4 member starting at `buf[start]`; it ends at the end of the input or where
 * the next 4 bytes cannot be a block size (another member's magic). Returns the data and the
 * bytes consumed. Repeated legacy magics inside are skipped, as the kernel does.
 */
export function lz4LegacyDecode(buf: Uint8Array, start: number): { data: Uint8Array; consumed: number } {
  const view = new DataView(buf.buffer, buf.byteOffset, buf.byteLength);
  let p = start;
  if (p + 4 > buf.length || view.getUint32(p, true) !== LZ4_LEGACY_MAGIC) throw new CpioError("ECORRUPT", "not an lz4 legacy frame");
  p += 4;
  const out: Uint8Array[] = [];
  const bound = lz4Bound(LZ4_LEGACY_BLOCK);
  while (p + 4 <= buf.length) {
    const size = view.getUint32(p, true);
    if (size === LZ4_LEGACY_MAGIC) {
      p += 4;
      continue;
    }
    if (size === 0 || size > bound) break;
    if (p + 4 + size > buf.length) throw new CpioError("ETRUNC", `lz4 block at offset ${p} needs ${size} bytes, only ${buf.length - p - 4} are left`);
    out.push(lz4DecompressBlock(buf.subarray(p + 4, p + 4 + size), LZ4_LEGACY_BLOCK));
    p += 4 + size;
  }
  return { data: Buffer.concat(out), consumed: p - start };
}
