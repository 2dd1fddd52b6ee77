/** newc header layout and helpers shared by the writer and the reader. */

export const MAGIC_NEWC = "070701";
export const MAGIC_CRC = "070702";
export const MAGIC_ODC = "070707";
export const HEADER_SIZE = 110;
export const TRAILER = "TRAILER!!!";
export const MAX_U32 = 0xffffffff;
/** The kernel's PATH_MAX (4096) counts the NUL, so a name is at most 4095 bytes. */
export const NAME_MAX_BYTES = 4095;

export interface HeaderFields {
  ino: number;
  mode: number;
  uid: number;
  gid: number;
  nlink: number;
  mtime: number;
  size: number;
  devmajor?: number;
  devminor?: number;
  rdevmajor: number;
  rdevminor: number;
  check: number;
}

export function pad4(n: number): number {
  return (4 - (n % 4)) % 4;
}

function hex8(n: number): string {
  return (n >>> 0).toString(16).padStart(8, "0");
}

/** Header + NUL-terminated name + padding to 4 bytes. */
export function encodeHeader(magic: string, f: HeaderFields, name: Uint8Array): Buffer {
  const text =
    magic +
    hex8(f.ino) +
    hex8(f.mode) +
    hex8(f.uid) +
    hex8(f.gid) +
    hex8(f.nlink) +
    hex8(f.mtime) +
    hex8(f.size) +
    hex8(f.devmajor ?? 0) +
    hex8(f.devminor ?? 0) +
    hex8(f.rdevmajor) +
    hex8(f.rdevminor) +
    hex8(name.length + 1) +
    hex8(f.check);
  const total = HEADER_SIZE + name.length + 1;
  const out = Buffer.alloc(total + pad4(total));
  out.write(text, 0, "latin1");
  out.set(name, HEADER_SIZE);
  return out;
}

export function trailerHeader(magic: string): Buffer {
  return encodeHeader(magic, { ino: 0, mode: 0, uid: 0, gid: 0, nlink: 1, mtime: 0, size: 0, rdevmajor: 0, rdevminor: 0, check: 0 }, Buffer.from(TRAILER));
}

/** The 070702 checksum: the sum of all data bytes, modulo 2^32. */
export function sum32(data: Uint8Array, start = 0): number {
  let s = start;
  for (let i = 0; i < data.length; i++) s += data[i]!;
  return s >>> 0;
}
