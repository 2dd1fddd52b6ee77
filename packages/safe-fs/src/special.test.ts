import { execFileSync } from "node:child_process";
import { mkdtemp, writeFile } from "node:fs/promises";
import { createServer } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { assertRegularFile, readRegularFile } from "./special.js";

describe("readRegularFile", () => {
  it("refuses a FIFO without blocking on it", async () => {
    const dir = await mkdtemp(join(tmpdir(), "special-"));
    const fifo = join(dir, "fledge.toml");
    execFileSync("mkfifo", [fifo]);
    await expect(readRegularFile(fifo)).rejects.toMatchObject({ code: "ESPECIAL", message: `${fifo} is a FIFO (named pipe), not a regular file` });
    await expect(assertRegularFile(fifo)).rejects.toThrow(/FIFO/);
  });

  it("refuses devices, sockets and directories", async () => {
    await expect(readRegularFile("/dev/zero")).rejects.toThrow("/dev/zero is a character device, not a regular file");
    await expect(readRegularFile("/tmp")).rejects.toMatchObject({ code: "EISDIR" });
    const dir = await mkdtemp(join(tmpdir(), "special-"));
    const sock = join(dir, "s.sock");
    const server = createServer().listen(sock);
    await new Promise((r) => server.once("listening", r));
    try {
      await expect(readRegularFile(sock)).rejects.toThrow(/is a socket/);
    } finally {
      server.close();
    }
  });

  it("reads a zero-size pseudo-file to its end", async () => {
    const buf = await readRegularFile("/proc/cpuinfo");
    expect(buf.length).toBeGreaterThan(0);
    expect(buf.toString()).toMatch(/processor/);
  });

  it("reads a regular file and names a missing one", async () => {
    const dir = await mkdtemp(join(tmpdir(), "special-"));
    await writeFile(join(dir, "a"), "hello");
    expect((await readRegularFile(join(dir, "a"))).toString()).toBe("hello");
    await expect(readRegularFile(join(dir, "b"))).rejects.toMatchObject({ code: "ENOENT", message: `${join(dir, "b")} does not exist` });
    await expect(readRegularFile(join(dir, "a"), { maxBytes: 3 })).rejects.toMatchObject({ code: "ETOOBIG" });
  });
});
