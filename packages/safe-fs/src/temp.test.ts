import { spawnSync } from "node:child_process";
import { mkdtemp, mkdir, readdir, symlink, utimes, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { hostTag, parseTempName, reapStaleTemps, removeOwnTempsSync, tempName } from "./temp.js";

/** The pid of a process that has exited. */
function deadPid(): number {
  const r = spawnSync(process.execPath, ["-e", "process.stdout.write(String(process.pid))"], { encoding: "utf8" });
  return Number(r.stdout);
}

describe("temp names", () => {
  it("carry the pid, the host tag and a label, and parse back", () => {
    const n = tempName("plugin.cpio.gz");
    expect(n.startsWith(`.fledge-tmp-${process.pid}-${hostTag()}-`)).toBe(true);
    expect(parseTempName(n)).toEqual({ pid: process.pid, host: hostTag(), label: "plugin.cpio.gz" });
    expect(tempName()).not.toBe(tempName());
  });

  it("stay within NAME_MAX whatever the label", () => {
    const n = tempName("é".repeat(300));
    expect(Buffer.byteLength(n)).toBeLessThanOrEqual(255);
    expect(parseTempName(n)?.pid).toBe(process.pid);
    expect(tempName("a/b\0c")).toMatch(/-a_b_c$/);
  });

  it("recognise nothing else", () => {
    for (const n of [".fledge-tmp-abc", ".fledge-tmp-123-0123abcd", "fledge-tmp-1-0123abcd-0123456789ab", ".fledge-tmp-0-0123abcd-0123456789ab", "1234-0123456789ab", "notes.txt", ".fledge-tmp-1-0123ABCD-0123456789ab"])
      expect(parseTempName(n), n).toBeUndefined();
  });
});

describe("reapStaleTemps", () => {
  it("removes temps of dead processes and nothing else", async () => {
    const dir = await mkdtemp(join(tmpdir(), "reap-"));
    const dead = deadPid();
    const mine = tempName("live");
    const stale = `.fledge-tmp-${dead}-${hostTag()}-0123456789ab-plugin.cpio.gz`;
    const user = ["notes.txt", "1234-0123456789ab", ".fledge-tmp-notes", `fledge-tmp-${dead}-${hostTag()}-0123456789ab`];
    for (const n of [mine, stale, ...user]) await writeFile(join(dir, n), "x");
    // a symlink and a directory with a temp's name are not fledge's files
    const linkName = `.fledge-tmp-${dead}-${hostTag()}-aaaaaaaaaaaa`;
    await symlink(join(dir, "notes.txt"), join(dir, linkName));
    const dirName = `.fledge-tmp-${dead}-${hostTag()}-bbbbbbbbbbbb`;
    await mkdir(join(dir, dirName));
    const r = await reapStaleTemps(dir);
    expect(r.removed).toEqual([join(dir, stale)]);
    expect(r.freedBytes).toBe(1);
    expect((await readdir(dir)).sort()).toEqual([mine, ...user, linkName, dirName].sort());
  });

  it("leaves another host's temp alone for a day", async () => {
    const dir = await mkdtemp(join(tmpdir(), "reap-"));
    const other = hostTag() === "00000000" ? "11111111" : "00000000";
    const fresh = `.fledge-tmp-${deadPid()}-${other}-0123456789ab`;
    const old = `.fledge-tmp-${deadPid()}-${other}-0123456789ac`;
    await writeFile(join(dir, fresh), "x");
    await writeFile(join(dir, old), "x");
    const dayAgo = new Date(Date.now() - 25 * 3_600_000);
    await utimes(join(dir, old), dayAgo, dayAgo);
    const r = await reapStaleTemps(dir);
    expect(r.removed).toEqual([join(dir, old)]);
    expect(await readdir(dir)).toEqual([fresh]);
  });

  it("is fine with a missing directory", async () => {
    expect(await reapStaleTemps(join(tmpdir(), "no-such-dir-" + process.pid))).toEqual({ removed: [], freedBytes: 0 });
  });
});

describe("removeOwnTempsSync", () => {
  it("removes this process's temps only", async () => {
    const dir = await mkdtemp(join(tmpdir(), "reap-"));
    const other = `.fledge-tmp-${deadPid()}-${hostTag()}-0123456789ab`;
    const mine = [tempName("a"), tempName()];
    for (const n of [...mine, other, "user.txt"]) await writeFile(join(dir, n), "x");
    expect(removeOwnTempsSync([dir, dir, join(dir, "missing")])).toBe(2);
    expect((await readdir(dir)).sort()).toEqual([other, "user.txt"].sort());
  });
});

describe("removeOwnTempsAfterExit", () => {
  it("removes the temps a process creates after its last scan, once it has exited", async () => {
    const dir = await mkdtemp(join(tmpdir(), "reap-"));
    await writeFile(join(dir, "user.txt"), "keep");
    const mod = new URL("../dist/index.js", import.meta.url).pathname; // built before the tests (nx)
    // the child registers the janitor, then (like a late worker) creates a temp, and exits
    const code = `
      const { removeOwnTempsAfterExit, tempName } = await import(${JSON.stringify(mod)});
      const { writeFileSync } = await import("node:fs");
      removeOwnTempsAfterExit([${JSON.stringify(dir)}]);
      writeFileSync(${JSON.stringify(dir)} + "/" + tempName("late"), "x");`;
    const r = spawnSync(process.execPath, ["--input-type=module", "-e", code], { encoding: "utf8" });
    expect(r.status, r.stderr).toBe(0);
    for (let i = 0; i < 60 && (await readdir(dir)).length > 1; i++) await new Promise((res) => setTimeout(res, 50));
    expect(await readdir(dir)).toEqual(["user.txt"]);
  });
});
