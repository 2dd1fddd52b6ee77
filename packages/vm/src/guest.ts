import { createReadStream, createWriteStream, existsSync } from "node:fs";
import { fileURLToPath } from "node:url";
import { pipeline } from "node:stream/promises";
import { Readable } from "node:stream";
import { writeNewc, type CpioEntry } from "@fledge/cpio";
import { readModule, type ModuleFile } from "./kernel.js";
import { VmError, type GuestArch } from "./qemu.js";

/** Where the guest helper lives in the VM; the kernel is told `rdinit=` this path. */
export const GUEST_DIR = "/.fledge-run";
export const GUEST_INIT = `${GUEST_DIR}/guest`;

/** The prebuilt fledge-guest binary (src/guest.c) for `arch`. */
export function guestBinaryPath(arch: GuestArch): string {
  const p = fileURLToPath(new URL(`../bin/guest-${arch}`, import.meta.url));
  if (!existsSync(p)) throw new VmError("FLEDGE_NO_GUEST", `@fledge/vm has no prebuilt guest helper for ${arch} (${p})`, "rebuild it with packages/vm/scripts/build-guest.sh");
  return p;
}

/**
 * The piece that goes in front of the artifact: an uncompressed newc archive with the guest
 * helper and, for a modular kernel, the NIC's modules and their load order. It comes first so
 * that the artifact's own entries win on any clash and an lz4 artifact (whose legacy frame
 * has no end marker) stays the last member, as the kernel requires.
 */
export async function guestPiece(arch: GuestArch, modules: ModuleFile[] = []): Promise<Buffer> {
  const entries: CpioEntry[] = [
    { path: GUEST_DIR.slice(1), type: "dir", mode: 0o755 },
    { path: GUEST_INIT.slice(1), type: "file", mode: 0o755, file: guestBinaryPath(arch) },
  ];
  if (modules.length) {
    entries.push({ path: `${GUEST_DIR.slice(1)}/modules`, type: "dir", mode: 0o755 });
    for (const m of modules) entries.push({ path: `${GUEST_DIR.slice(1)}/modules/${m.name}.ko`, type: "file", mode: 0o644, data: readModule(m.path) });
    entries.push({ path: `${GUEST_DIR.slice(1)}/modules/order`, type: "file", mode: 0o644, data: Buffer.from(modules.map((m) => `${m.name}.ko\n`).join("")) });
  }
  const chunks: Uint8Array[] = [];
  for await (const c of writeNewc(entries, { mtime: 0 })) chunks.push(c);
  const buf = Buffer.concat(chunks);
  // pad to 4 bytes so the next member starts aligned (the kernel skips NUL padding between members)
  return buf.length % 4 ? Buffer.concat([buf, Buffer.alloc(4 - (buf.length % 4))]) : buf;
}

/** Writes `piece` followed by the artifact's bytes to `out`: the initrd qemu is given. */
export async function writeInitrd(out: string, piece: Buffer, artifact: string): Promise<void> {
  const source = async function* () {
    yield piece;
    for await (const c of createReadStream(artifact)) yield c as Buffer;
  };
  await pipeline(Readable.from(source()), createWriteStream(out, { mode: 0o600 }));
}
