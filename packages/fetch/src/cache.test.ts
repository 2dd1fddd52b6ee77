import { spawnSync } from "node:child_process";
import { mkdir, mkdtemp, readdir, rm, utimes, writeFile } from "node:fs/promises";
import { hostTag } from "@fledge/safe-fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { ContentCache, defaultCacheDir } from "./cache.js";
import { checksumLine } from "./testing.js";

let dir: string;
beforeEach(async () => {
  dir = await mkdtemp(join(tmpdir(), "fledge-cache-"));
});
afterEach(() => rm(dir, { recursive: true, force: true }));
const sha = (s: string) => checksumLine(s, "x").slice(0, 64);

describe("defaultCacheDir", () => {
  it("prefers FLEDGE_CACHE_DIR, then XDG_CACHE_HOME/fledge, then ~/.cache/fledge", () => {
    expect(defaultCacheDir({ FLEDGE_CACHE_DIR: "/a", XDG_CACHE_HOME: "/b" })).toBe("/a");
    expect(defaultCacheDir({ XDG_CACHE_HOME: "/b" })).toBe("/b/fledge");
    expect(defaultCacheDir({})).toMatch(/\.cache\/fledge$/);
  });
});

describe("ContentCache", () => {
  it("add seeds an entry (optionally with its URL), list shows it, a wrong expected sha is refused", async () => {
    const c = new ContentCache(join(dir, "c"));
    await writeFile(join(dir, "f"), "hello");
    const a = await c.add(join(dir, "f"), { url: "https://example.org/f" });
    expect(a).toMatchObject({ sha256: sha("hello"), size: 5, existed: false });
    expect((await c.add(join(dir, "f"))).existed).toBe(true);
    expect((await c.lookupUrl("https://example.org/f"))?.sha256).toBe(sha("hello"));
    const ls = await c.list();
    expect(ls).toMatchObject([{ sha256: sha("hello"), size: 5, urls: ["https://example.org/f"] }]);
    await expect(c.add(join(dir, "f"), { expectedSha256: "0".repeat(64) })).rejects.toThrow(/sha256 mismatch/);
    expect(await readdir(join(dir, "c", "tmp"))).toEqual([]);
  });

  it("prune --older-than keeps recently used entries and drops dangling URL records", async () => {
    const c = new ContentCache(join(dir, "c"));
    await writeFile(join(dir, "old"), "old");
    await writeFile(join(dir, "new"), "new");
    await c.add(join(dir, "old"), { url: "https://example.org/old" });
    await c.add(join(dir, "new"));
    const past = new Date(Date.now() - 40 * 86400_000);
    await utimes(c.pathFor(sha("old")), past, past);
    const r = await c.prune(30 * 86400_000);
    expect(r.removed.map((e) => e.sha256)).toEqual([sha("old")]);
    expect(r).toMatchObject({ freedBytes: 3, kept: 1 });
    expect(await c.lookupUrl("https://example.org/old")).toBeUndefined();
    expect(await readdir(join(dir, "c", "urls"))).toEqual([]);
    await c.touch(sha("new"));
    expect((await c.prune()).removed.length).toBe(1);
    expect(await c.list()).toEqual([]);
  });
});

describe("prune never removes what fledge did not make (issue 11)", () => {
  it("keeps a user's files in tmp/, urls/ and sha256/, removes temps of dead processes and says so", async () => {
    const c = new ContentCache(join(dir, "c"));
    await writeFile(join(dir, "f"), "hello");
    await c.add(join(dir, "f"), { url: "https://example.org/f" });
    const deadPid = Number(spawnSync(process.execPath, ["-e", "process.stdout.write(String(process.pid))"], { encoding: "utf8" }).stdout);
    const stale = `.fledge-tmp-${deadPid}-${hostTag()}-0123456789ab-busybox`;
    const live = (await c.tempPath("busybox")).split("/").pop()!;
    const user = { tmp: ["thesis.tex", "1234-0123456789ab", "old-download"], urls: ["notes.json", "README"], sha256: ["mine.txt", "ABC"] };
    for (const [sub, names] of Object.entries(user)) {
      await mkdir(join(dir, "c", sub), { recursive: true });
      for (const n of names) await writeFile(join(dir, "c", sub, n), "precious");
    }
    await writeFile(join(dir, "c", "tmp", stale), "partial download");
    await writeFile(join(dir, "c", "tmp", live), "in progress");
    const old = new Date(Date.now() - 90 * 86400_000);
    for (const n of user.tmp) await utimes(join(dir, "c", "tmp", n), old, old);
    const r = await c.prune();
    expect(r.removed.map((e) => e.sha256)).toEqual([sha("hello")]);
    expect(r.temps).toEqual({ removed: 1, freedBytes: "partial download".length });
    expect((await readdir(join(dir, "c", "tmp"))).sort()).toEqual([...user.tmp, live].sort());
    expect((await readdir(join(dir, "c", "urls"))).sort()).toEqual([...user.urls].sort());
    expect((await readdir(join(dir, "c", "sha256"))).sort()).toEqual([...user.sha256].sort());
  });
});
