import { spawnSync } from "node:child_process";
import { createHash, randomBytes } from "node:crypto";
import { existsSync, mkdirSync, readFileSync, renameSync, rmSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { gunzipSync } from "node:zlib";

/**
 * An x86 bzImage unpacked to its ELF vmlinux, when that vmlinux has a PVH entry point (Xen note
 * type 18): qemu then jumps straight into the kernel instead of running the bzImage's own
 * decompressor, which under software emulation costs tens of seconds per boot. Cloud Hypervisor,
 * which Volant runs, boots such a vmlinux the same way. Cached by the bzImage's sha256 under
 * `cacheDir`; undefined whenever it cannot be done (the caller boots the bzImage as it is).
 */
export function pvhKernel(bzImage: string, cacheDir: string): string | undefined {
  let b: Buffer;
  try {
    b = readFileSync(bzImage);
  } catch {
    return undefined;
  }
  if (b.length < 0x250 || b.toString("latin1", 0x202, 0x206) !== "HdrS") return undefined;
  const key = createHash("sha256").update(b).digest("hex");
  const dir = join(cacheDir, "kernels");
  const out = join(dir, `${key}.vmlinux`);
  const none = join(dir, `${key}.no-pvh`);
  if (existsSync(out)) return out;
  if (existsSync(none)) return undefined;
  const setup = ((b[0x1f1] ?? 0) || 4) + 1;
  const start = setup * 512 + b.readUInt32LE(0x248);
  const payload = b.subarray(start, start + b.readUInt32LE(0x24c));
  let elf: Buffer | undefined;
  try {
    if (payload[0] === 0x1f && payload[1] === 0x8b) elf = gunzipSync(payload);
    else if (payload.subarray(0, 6).equals(Buffer.from([0xfd, 0x37, 0x7a, 0x58, 0x5a, 0x00]))) elf = tool("xz", payload);
    else if (payload.readUInt32LE(0) === 0xfd2fb528) elf = tool("zstd", payload);
  } catch {
    elf = undefined;
  }
  mkdirSync(dir, { recursive: true });
  if (!elf || !hasPvhNote(elf)) {
    // remember, so the next boot does not decompress again for nothing
    if (elf) writeFileSync(none, "");
    return undefined;
  }
  const temp = join(dir, `.fledge-tmp-${process.pid}-${randomBytes(6).toString("hex")}`);
  try {
    writeFileSync(temp, elf);
    renameSync(temp, out);
  } catch {
    rmSync(temp, { force: true });
    return undefined;
  }
  return out;
}

/** Decompresses with the system's xz or zstd; the payload is followed by its size (4 bytes), which the tools call trailing garbage. */
function tool(name: string, input: Buffer): Buffer | undefined {
  const r = spawnSync(name, name === "xz" ? ["-dc", "--single-stream"] : ["-dc"], { input, maxBuffer: 512 << 20 });
  return r.stdout?.length && r.stdout.readUInt32BE(0) === 0x7f454c46 ? r.stdout : undefined;
}

/** True for a 64-bit little-endian ELF with a "Xen" note of type 18 (XEN_ELFNOTE_PHYS32_ENTRY). */
export function hasPvhNote(elf: Buffer): boolean {
  if (elf.length < 64 || elf.readUInt32BE(0) !== 0x7f454c46 || elf[4] !== 2 || elf[5] !== 1) return false;
  const phoff = Number(elf.readBigUInt64LE(0x20));
  const phentsize = elf.readUInt16LE(0x36);
  const phnum = elf.readUInt16LE(0x38);
  for (let i = 0; i < phnum; i++) {
    const ph = phoff + i * phentsize;
    if (ph + 56 > elf.length || elf.readUInt32LE(ph) !== 4 /* PT_NOTE */) continue;
    let p = Number(elf.readBigUInt64LE(ph + 8));
    const end = p + Number(elf.readBigUInt64LE(ph + 32));
    while (p + 12 <= end && end <= elf.length) {
      const namesz = elf.readUInt32LE(p);
      const descsz = elf.readUInt32LE(p + 4);
      const type = elf.readUInt32LE(p + 8);
      const name = elf.toString("latin1", p + 12, p + 12 + Math.max(0, namesz - 1));
      if (name === "Xen" && type === 18) return true;
      p += 12 + ((namesz + 3) & ~3) + ((descsz + 3) & ~3);
    }
  }
  return false;
}
