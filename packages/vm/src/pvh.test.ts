import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { gzipSync } from "node:zlib";
import { afterAll, describe, expect, it } from "vitest";
import { hasPvhNote, pvhKernel } from "./pvh.js";

const work = mkdtempSync(join(tmpdir(), "fledge-pvh-"));
afterAll(() => rmSync(work, { recursive: true, force: true }));

/** A minimal ELF64 with one PT_NOTE segment holding a note named `name` of `type`. */
function elfWithNote(name: string, type: number): Buffer {
  const nameBuf = Buffer.from(name + "\0");
  const note = Buffer.alloc(12 + ((nameBuf.length + 3) & ~3) + 4);
  note.writeUInt32LE(nameBuf.length, 0);
  note.writeUInt32LE(4, 4);
  note.writeUInt32LE(type, 8);
  nameBuf.copy(note, 12);
  const elf = Buffer.alloc(64 + 56 + note.length);
  elf.writeUInt32BE(0x7f454c46, 0);
  elf[4] = 2;
  elf[5] = 1;
  elf.writeBigUInt64LE(64n, 0x20); // phoff
  elf.writeUInt16LE(56, 0x36);
  elf.writeUInt16LE(1, 0x38);
  elf.writeUInt32LE(4, 64); // PT_NOTE
  elf.writeBigUInt64LE(BigInt(64 + 56), 64 + 8); // offset
  elf.writeBigUInt64LE(BigInt(note.length), 64 + 32); // filesz
  note.copy(elf, 64 + 56);
  return elf;
}

/** A bzImage-shaped file whose payload is `payload` (setup header fields only). */
function bzImage(payload: Buffer): Buffer {
  const setupSects = 4;
  const head = Buffer.alloc((setupSects + 1) * 512);
  head[0x1f1] = setupSects;
  head.write("HdrS", 0x202, "latin1");
  head.writeUInt32LE(0, 0x248);
  head.writeUInt32LE(payload.length, 0x24c);
  return Buffer.concat([head, payload, Buffer.alloc(4)]);
}

describe("PVH boot of a bzImage's vmlinux", () => {
  it("finds the Xen PHYS32_ENTRY note and nothing else", () => {
    expect(hasPvhNote(elfWithNote("Xen", 18))).toBe(true);
    expect(hasPvhNote(elfWithNote("Xen", 17))).toBe(false);
    expect(hasPvhNote(elfWithNote("GNU", 18))).toBe(false);
    expect(hasPvhNote(Buffer.from("not an elf at all, not at all"))).toBe(false);
  });

  it("unpacks a gzip payload with a PVH entry once, cached by the bzImage's sha256; remembers one without", () => {
    const k = join(work, "bzImage");
    writeFileSync(k, bzImage(gzipSync(elfWithNote("Xen", 18))));
    const out = pvhKernel(k, join(work, "cache"));
    expect(out).toMatch(/kernels\/[0-9a-f]{64}\.vmlinux$/);
    expect(hasPvhNote(readFileSync(out!))).toBe(true);
    expect(pvhKernel(k, join(work, "cache"))).toBe(out);

    const plain = join(work, "bzImage-no-pvh");
    writeFileSync(plain, bzImage(gzipSync(elfWithNote("GNU", 1))));
    expect(pvhKernel(plain, join(work, "cache"))).toBeUndefined();
    expect(existsSync(join(work, "cache", "kernels"))).toBe(true);
    expect(pvhKernel(join(work, "nope"), join(work, "cache"))).toBeUndefined();
  });
});
