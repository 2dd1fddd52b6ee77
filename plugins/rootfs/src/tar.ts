import { constants } from "node:fs";
import { open } from "node:fs/promises";
import type { Ext4Entry } from "@fledge/ext4";

/*
 * A POSIX (pax) tar stream of writer entries, for tools that read a tree from tar on stdin
 * (`mksquashfs -tar`): owners, modes, devices, hardlinks and times travel in the headers, so the
 * tool needs neither root nor the files on disk. Sockets have no tar type and are left to the
 * caller.
 */

const TYPE: Record<string, string> = { file: "0", symlink: "2", char: "3", block: "4", dir: "5", fifo: "6" };

function octal(n: number, width: number): string {
  return n.toString(8).padStart(width - 1, "0") + "\0";
}

function fits(n: number, width: number): boolean {
  return n >= 0 && n < 8 ** (width - 1);
}

function paxRecord(key: string, value: string): Buffer {
  const body = ` ${key}=${value}\n`;
  let len = Buffer.byteLength(body) + 1;
  while (String(len).length + Buffer.byteLength(body) !== len) len = String(len).length + Buffer.byteLength(body);
  return Buffer.from(`${len}${body}`);
}

function header(name: string, type: string, mode: number, uid: number, gid: number, size: number, mtime: number, linkname = "", major = 0, minor = 0): Buffer {
  const h = Buffer.alloc(512);
  h.write(name, 0, 100, "utf8");
  h.write(octal(mode, 8), 100);
  h.write(octal(uid, 8), 108);
  h.write(octal(gid, 8), 116);
  h.write(octal(size, 12), 124);
  h.write(octal(mtime, 12), 136);
  h.write("        ", 148);
  h.write(type, 156);
  h.write(linkname, 157, 100, "utf8");
  h.write("ustar\0", 257);
  h.write("00", 263);
  h.write(octal(major, 8), 329);
  h.write(octal(minor, 8), 337);
  let sum = 0;
  for (const b of h) sum += b;
  h.write(octal(sum, 7) + " ", 148);
  return h;
}

function pad(size: number): Buffer {
  return Buffer.alloc((512 - (size % 512)) % 512);
}

/** The entries (paths relative to the root) as a tar stream; the root itself is not an entry. */
export async function* tarStream(entries: Ext4Entry[], mtime: number): AsyncGenerator<Buffer> {
  for (const e of entries) {
    if (e.type === "socket") continue;
    const isLink = e.linkTo !== undefined;
    const name = e.type === "dir" ? `${e.path}/` : e.path;
    const link = isLink ? e.linkTo! : e.type === "symlink" ? e.target! : "";
    const size = e.type === "file" && !isLink ? (e.data ? e.data.length : (e.size ?? 0)) : 0;
    const uid = e.uid ?? 0;
    const gid = e.gid ?? 0;
    const t = e.mtime ?? mtime;
    const pax: Buffer[] = [];
    if (Buffer.byteLength(name) > 100) pax.push(paxRecord("path", name));
    if (Buffer.byteLength(link) > 100) pax.push(paxRecord("linkpath", link));
    if (!fits(uid, 8)) pax.push(paxRecord("uid", String(uid)));
    if (!fits(gid, 8)) pax.push(paxRecord("gid", String(gid)));
    if (!fits(size, 12)) pax.push(paxRecord("size", String(size)));
    if (pax.length) {
      const body = Buffer.concat(pax);
      yield header("PaxHeader", "x", 0o644, 0, 0, body.length, t);
      yield body;
      yield pad(body.length);
    }
    const clip = (s: string) => (Buffer.byteLength(s) > 100 ? Buffer.from(s).subarray(0, 100).toString("latin1") : s);
    const type = isLink ? "1" : TYPE[e.type]!;
    yield header(clip(name), type, e.mode & 0o7777, fits(uid, 8) ? uid : 0, fits(gid, 8) ? gid : 0, fits(size, 12) ? size : 0, t, clip(link), e.major ?? 0, e.minor ?? 0);
    if (size > 0) {
      if (e.data) yield Buffer.from(e.data.buffer, e.data.byteOffset, e.data.byteLength);
      else if (e.stream) {
        let got = 0;
        for await (const c of e.stream()) {
          got += c.length;
          yield Buffer.from(c.buffer, c.byteOffset, c.byteLength);
        }
        if (got !== size) throw new Error(`/${e.path} changed size while the image was written (${size} → ${got} bytes)`);
      } else {
        // O_NONBLOCK: a FIFO swapped in for a listed file fails here instead of hanging the build.
        const fh = await open(e.file!, constants.O_RDONLY | constants.O_NONBLOCK);
        try {
          if (!(await fh.stat()).isFile()) throw new Error(`${e.file} (for /${e.path}) is not a regular file (any more)`);
          let pos = 0;
          while (pos < size) {
            const buf = Buffer.alloc(Math.min(1 << 20, size - pos));
            const { bytesRead } = await fh.read(buf, 0, buf.length, (e.offset ?? 0) + pos);
            if (bytesRead === 0) throw new Error(`${e.file} (for /${e.path}) changed size while the image was written (${size} → ${pos} bytes)`);
            pos += bytesRead;
            yield buf.subarray(0, bytesRead);
          }
          const probe = Buffer.alloc(1);
          if (!e.offset && (await fh.read(probe, 0, 1, size)).bytesRead !== 0) throw new Error(`${e.file} (for /${e.path}) changed size while the image was written (it grew past ${size} bytes)`);
        } finally {
          await fh.close();
        }
      }
      yield pad(size);
    }
  }
  yield Buffer.alloc(1024);
}
