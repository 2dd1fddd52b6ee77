import { execFileSync, spawnSync } from "node:child_process";
import { existsSync, linkSync, lstatSync, mkdirSync, mkdtempSync, readFileSync, readdirSync, rmSync, statSync, symlinkSync, writeFileSync } from "node:fs";
import * as fsp from "node:fs/promises";
import { createServer } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { build } from "./build.js";
import type { FledgePlugin } from "./builder.js";
import type { LogEvent } from "./context.js";
import { OutputTransaction } from "./outputs.js";
import { hostTag } from "@fledge/safe-fs";
import { removeStaleTemps, tempPathFor } from "./temps.js";

let dir: string;
beforeEach(() => {
  dir = mkdtempSync(join(tmpdir(), "fledge-outputs-"));
  mkdirSync(join(dir, "www"));
  writeFileSync(join(dir, "www", "index.html"), "<h1>hi</h1>\n");
  writeFileSync(join(dir, "init.sh"), "#!/bin/sh\n", { mode: 0o755 });
  writeFileSync(join(dir, "motd.mjs"), 'export default { name: "motd", apply() {} };\n');
  writeFileSync(join(dir, "fledge.toml"), 'version = "1"\nplugins = ["./motd.mjs"]\n[init]\nnone = true\n[source]\nbusybox = false\n[mappings]\n"./init.sh" = "/init"\n"./www" = "/srv/www"\n');
  writeFileSync(join(dir, "manifest.toml"), 'name = "demo"\nversion = "1.0.0"\n[workload]\nentrypoint = "/init"\nbase_url = "http://127.0.0.1:8000"\n');
});
afterEach(() => rmSync(dir, { recursive: true, force: true }));

/** A plugin that records whether any work started. */
function watch(started: string[]): FledgePlugin {
  return { name: "watch", apply: (b) => b.hooks.beforeBuild.tap("watch", () => void started.push("beforeBuild")) };
}

async function refused(output: string, manifestOutput?: string) {
  const started: string[] = [];
  try {
    await build({ config: join(dir, "fledge.toml"), output, manifestOutput, cacheDir: join(dir, ".cache"), plugins: [watch(started)] });
  } catch (e) {
    expect(started, "refused before any work").toEqual([]);
    return (e as { issues: { file: string; message: string; hint?: string }[] }).issues.map((i) => `${i.file}: ${i.message}`);
  }
  throw new Error("expected the build to be refused");
}

describe("outputs are refused before any work when they would land on something else", () => {
  it("a character device (/dev/null) stays a device", async () => {
    expect(await refused("/dev/null")).toEqual(["/dev/null: is a character device; fledge writes its artifact only as a regular file, never through or over anything else"]);
    expect(lstatSync("/dev/null").isCharacterDevice()).toBe(true);
  });

  it("a FIFO, a socket, a directory, a symlink", async () => {
    execFileSync("mkfifo", [join(dir, "fifo")]);
    expect(await refused(join(dir, "fifo"))).toEqual([`${join(dir, "fifo")}: is a FIFO; fledge writes its artifact only as a regular file, never through or over anything else`]);
    const server = createServer();
    await new Promise<void>((r) => server.listen(join(dir, "sock"), r));
    try {
      expect(await refused(join(dir, "sock"))).toEqual([`${join(dir, "sock")}: is a socket; fledge writes its artifact only as a regular file, never through or over anything else`]);
    } finally {
      await new Promise((r) => server.close(r));
    }
    mkdirSync(join(dir, "adir"));
    expect(await refused(join(dir, "adir"))).toEqual([`${join(dir, "adir")}: is a directory; fledge writes its artifact only as a regular file, never through or over anything else`]);
    writeFileSync(join(dir, "target.txt"), "keep me");
    symlinkSync("target.txt", join(dir, "link"));
    expect(await refused(join(dir, "link"))).toEqual([`${join(dir, "link")}: is a symlink (to target.txt); fledge writes its artifact only as a regular file, never through or over anything else`]);
    expect(readFileSync(join(dir, "target.txt"), "utf8")).toBe("keep me");
  });

  it("any input of the build: fledge.toml, manifest.toml, a plugin module, a mapped file (or a hard link to one)", async () => {
    const config = readFileSync(join(dir, "fledge.toml"), "utf8");
    expect(await refused(join(dir, "fledge.toml"))).toEqual([`${join(dir, "fledge.toml")}: is fledge.toml, an input of this build: fledge never writes its artifact over an input`]);
    expect(await refused(join(dir, "plugin.cpio.gz"), join(dir, "manifest.toml"))).toEqual([`${join(dir, "manifest.toml")}: is manifest.toml, an input of this build: fledge never writes its manifest over an input`]);
    expect(await refused(join(dir, "motd.mjs"))).toEqual([`${join(dir, "motd.mjs")}: is the plugin module ./motd.mjs, an input of this build: fledge never writes its artifact over an input`]);
    expect(await refused(join(dir, "init.sh"))).toEqual([`${join(dir, "init.sh")}: is the mapped file "./init.sh" (→ /init), an input of this build: fledge never writes its artifact over an input`]);
    linkSync(join(dir, "init.sh"), join(dir, "hardlink"));
    expect(await refused(join(dir, "hardlink"))).toEqual([`${join(dir, "hardlink")}: is the mapped file "./init.sh" (→ /init), an input of this build: fledge never writes its artifact over an input`]);
    expect(readFileSync(join(dir, "fledge.toml"), "utf8")).toBe(config);
    expect(readFileSync(join(dir, "init.sh"), "utf8")).toBe("#!/bin/sh\n");
  });

  it("an output inside a mapped directory is refused: the next build would pack it", async () => {
    expect(await refused(join(dir, "www", "plugin.cpio.gz"))).toEqual([
      `${join(dir, "www", "plugin.cpio.gz")}: is inside the mapped directory "./www" (→ /srv/www), whose files all go into the image: the next build would pack this artifact`,
      `${join(dir, "www", "demo.manifest.json")}: is inside the mapped directory "./www" (→ /srv/www), whose files all go into the image: the next build would pack this manifest`,
    ]);
    expect(readdirSync(join(dir, "www"))).toEqual(["index.html"]);
  });

  it("two outputs at one path, and a manifest path that is a directory: both refused, the old artifact untouched", async () => {
    expect(await refused(join(dir, "out.x"), join(dir, "out.x"))).toEqual([`${join(dir, "out.x")}: is also where the artifact goes: every output needs its own path`]);
    writeFileSync(join(dir, "old.cpio.gz"), "previous");
    mkdirSync(join(dir, "m.json"));
    expect(await refused(join(dir, "old.cpio.gz"), join(dir, "m.json"))).toEqual([`${join(dir, "m.json")}: is a directory; fledge writes its manifest only as a regular file, never through or over anything else`]);
    expect(readFileSync(join(dir, "old.cpio.gz"), "utf8")).toBe("previous");
  });
});

describe("the commit", () => {
  it("moves every output into place; a failure half-way puts back what was there before", async () => {
    const out = join(dir, "o");
    mkdirSync(out);
    writeFileSync(join(out, "a"), "old a");
    writeFileSync(join(out, "b"), "old b");
    let renames = 0;
    const t = new OutputTransaction({
      fs: {
        ...{ link: fsp.link, copyFile: fsp.copyFile, rm: fsp.rm, lstat: fsp.lstat },
        async rename(from, to) {
          // the third rename (the second output's staged file over b) fails
          if (++renames === 2 && to.endsWith("/b")) throw Object.assign(new Error("EIO: i/o error"), { code: "EIO" });
          return fsp.rename(from, to);
        },
      },
    });
    expect(t.setMain(join(out, "a"), join(out, "b"))).toEqual([]);
    await t.artifact.write("new a");
    await t.manifest.write("new b");
    await expect(t.commit()).rejects.toThrow(`could not move the manifest into place at ${join(out, "b")}: EIO: i/o error; what was there before is back`);
    expect(readFileSync(join(out, "a"), "utf8")).toBe("old a");
    expect(readFileSync(join(out, "b"), "utf8")).toBe("old b");
    await t.abort();
    expect(readdirSync(out).sort()).toEqual(["a", "b"]);
  });

  it("with nothing there before, a failure removes what was already moved", async () => {
    const out = join(dir, "o2");
    mkdirSync(out);
    const t = new OutputTransaction({
      fs: {
        ...{ link: fsp.link, copyFile: fsp.copyFile, rm: fsp.rm, lstat: fsp.lstat },
        async rename(from, to) {
          if (to.endsWith("/b")) throw new Error("disk gone");
          return fsp.rename(from, to);
        },
      },
    });
    t.setMain(join(out, "a"), join(out, "b"));
    await t.artifact.write("a");
    await t.manifest.write("b");
    await expect(t.commit()).rejects.toThrow(/disk gone/);
    await t.abort();
    expect(readdirSync(out)).toEqual([]);
  });
});

describe("stale temps", () => {
  const deadPid = () => {
    const r = spawnSync(process.execPath, ["-e", "process.stdout.write(String(process.pid))"], { encoding: "utf8" });
    return Number(r.stdout);
  };

  it("temp names carry the pid and stay within NAME_MAX", () => {
    expect(tempPathFor("/x/plugin.cpio.gz")).toMatch(new RegExp(`^/x/\\.fledge-tmp-${process.pid}-${hostTag()}-[0-9a-f]{12}-plugin\\.cpio\\.gz$`));
    const long = tempPathFor("/x/" + "n".repeat(255));
    expect(Buffer.byteLength(long.slice(3))).toBe(255);
  });

  it("a build removes fledge's own temps of processes that are gone in its output directory, and nothing else", async () => {
    const out = join(dir, "out");
    mkdirSync(out);
    const dead = deadPid();
    const h = hostTag();
    const stale = `.fledge-tmp-${dead}-${h}-0123456789ab-plugin.cpio.gz`;
    const mine = `.fledge-tmp-${process.pid}-${h}-0123456789ab-other.json`;
    const others = [".fledge-tmp-notapid-x", `.fledge-tmp-${dead}-short-x`, "notes.txt", `.fledge-tmp-${dead}-${h}-0123456789ab-adir`];
    writeFileSync(join(out, stale), "80 MB of a killed build");
    writeFileSync(join(out, mine), "a live build's");
    for (const f of others.slice(0, 3)) writeFileSync(join(out, f), "user's");
    mkdirSync(join(out, others[3]!));
    symlinkSync("/etc/hostname", join(out, `.fledge-tmp-${dead}-${h}-0123456789ab-link`));
    const logs: LogEvent[] = [];
    await build({ config: join(dir, "fledge.toml"), output: join(out, "plugin.cpio.gz"), cacheDir: join(dir, ".cache"), onBuilder: (b) => b.hooks.log.tap("t", (e) => void logs.push(e)) });
    expect(readdirSync(out).sort()).toEqual([mine, ...others, `.fledge-tmp-${dead}-${h}-0123456789ab-link`, "demo.manifest.json", "plugin.cpio.gz"].sort());
    expect(logs).toContainEqual({ level: "info", source: "fledge:outputs", message: `removed 1 temp file left in ${out} by an interrupted build: ${stale}` });
    expect(statSync(join(out, others[3]!)).isDirectory()).toBe(true);
  });

  it("removeStaleTemps ignores a directory it cannot read", async () => {
    expect(await removeStaleTemps(join(dir, "missing"))).toEqual([]);
    expect(existsSync(join(dir, "missing"))).toBe(false);
  });
});
