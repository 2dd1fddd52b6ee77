import { spawnSync } from "node:child_process";
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { fledge } from "./cli.js";
import { bootInitramfs, hostBusybox } from "./qemu.js";

/**
 * One boot per compressor: the kernel must unpack fledge's segmented artifact (several
 * concatenated members, one TRAILER!!! at the very end) and run /init, which checks that every
 * mapped file arrived intact.
 */
const work = mkdtempSync(join(tmpdir(), "fledge-e2e-compressors-"));
const cache = join(work, "cache");
afterAll(() => rmSync(work, { recursive: true, force: true }));

const INIT = `#!/bin/sh
mount -t proc proc /proc
echo "FLEDGE-E2E init pid=$$"
echo "FLEDGE-E2E files=$(find /data -type f | wc -l) sum=$(cd /data && find . -type f | sort | xargs cat | md5sum | cut -c1-32)"
echo "FLEDGE-E2E link=$(readlink /data/link) hard=$(stat -c %h /data/d0/f0 2>/dev/null)"
poweroff -f
`;

let expected = "";
beforeAll(() => {
  hostBusybox();
  const project = join(work, "project");
  const data = join(project, "data");
  mkdirSync(data, { recursive: true });
  // ~7 MB in 700 files, text and incompressible bytes: several segments, so several members.
  let seed = 12345;
  const next = () => (seed = (Math.imul(seed, 1103515245) + 12345) >>> 0);
  for (let d = 0; d < 7; d++) {
    mkdirSync(join(data, `d${d}`));
    for (let f = 0; f < 100; f++) {
      const size = 2000 + (next() % 18000);
      const buf = Buffer.alloc(size);
      if (f % 3 === 0) for (let i = 0; i < size; i++) buf[i] = next() >>> 24;
      else for (let i = 0; i < size; i++) buf[i] = 97 + ((i * 7 + f + d) % 26);
      writeFileSync(join(data, `d${d}`, `f${f}`), buf);
    }
  }
  // One large file (two 4 MiB chunks of a gzip member, several 1 MiB zstd/xz feeds): a member of
  // its own, compressed streaming from disk in chunks.
  const big = Buffer.alloc(5 * 1024 * 1024 + 4321);
  for (let i = 0; i < big.length; i++) big[i] = i % 4096 < 1024 ? next() >>> 24 : 97 + ((i >> 3) % 26);
  writeFileSync(join(data, "big"), big);
  spawnSync("ln", ["-s", "d1/f1", join(data, "link")]);
  writeFileSync(join(project, "init.sh"), INIT, { mode: 0o755 });
  writeFileSync(join(project, "manifest.toml"), `name = "e2e-compressors"\nversion = "0.1.0"\n\n[workload]\nentrypoint = "/bin/true"\nbase_url = "http://127.0.0.1:8000"\n`);
  writeFileSync(join(project, "fledge.toml"), `version = "1"\nstrategy = "initramfs"\n\n[init]\nnone = true\n\n[source]\nbusybox_url = "file:///bin/busybox"\n\n[mappings]\n"./init.sh" = "/init"\n"./data" = "/data"\n`);
  const sum = spawnSync("sh", ["-c", "cd data && find . -type f | LC_ALL=C sort | xargs cat | md5sum | cut -c1-32"], { cwd: project, encoding: "utf8" });
  expected = `FLEDGE-E2E files=701 sum=${sum.stdout.trim()}`;
});

describe("every compressor's artifact boots Debian's kernel (CONFIG_RD_* all set) and reaches /init", () => {
  for (const compression of ["gzip", "zstd", "xz", "lz4", "none"]) {
    it(`${compression}: built, several members, unpacked by the kernel, /init sees every file`, async () => {
      const artifact = join(work, `plugin.cpio.${compression}`);
      const r = await fledge(["build", "-C", join(work, "project"), "-o", artifact, "--compression", compression, "--cache-dir", cache], { cwd: work });
      expect(r.stderr).not.toMatch(/error/);
      expect(r.code).toBe(0);
      const inspect = await fledge(["inspect", "--json", artifact], { cwd: work });
      expect(inspect.code).toBe(0);
      const info = JSON.parse(inspect.stdout) as { artifact: { members: number; compression: string[] } };
      expect(info.artifact.compression).toEqual([compression === "none" ? "cpio" : compression]);
      if (compression !== "none" && compression !== "lz4") expect(info.artifact.members).toBeGreaterThan(1);

      const boot = await bootInitramfs(artifact, { timeoutMs: 150_000 });
      expect(boot.serial).not.toMatch(/Initramfs unpacking failed|junk|invalid magic/);
      expect(boot.serial).toContain("Run /init as init process");
      expect(boot.serial).toContain("FLEDGE-E2E init pid=1");
      expect(boot.serial).toContain(expected);
      expect(boot.serial).toContain("FLEDGE-E2E link=d1/f1");
      expect(boot.panicked).toBe(false);
      expect(boot.exitedByItself).toBe(true);
    });
  }
});
