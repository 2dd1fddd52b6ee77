import { createHash } from "node:crypto";
import { cpSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { decodeManifest } from "@fledge/vm";
import { fledge, spawnFledge, childPids, alive, httpGet } from "./cli.js";
import { findKernel, hostBusybox } from "./qemu.js";
import { startReleaseServer, type ReleaseServer } from "./release-server.js";

/**
 * `fledge run` as a user runs it: the hello example built and booted, its page fetched through
 * the forwarded port, Ctrl-C, and nothing left running. The kernel is "Volant's release kernel"
 * from a releases API on 127.0.0.1 (Debian's kernel stands in for Volant's bzImage: there is no
 * internet here), verified against the release's bzImage.sha256.
 */
const examples = fileURLToPath(new URL("../../examples/", import.meta.url));
const fixtures = fileURLToPath(new URL("../fixtures/", import.meta.url));
const work = mkdtempSync(join(tmpdir(), "fledge-e2e-run-"));
const sha256 = (b: Buffer) => createHash("sha256").update(b).digest("hex");
const mirror = () => `https://busybox.net/downloads/binaries/1.35.0-x86_64-linux-musl/=file://${dirname(hostBusybox())}/`;

let release: ReleaseServer | undefined;
let base = "";
beforeAll(async () => {
  const kernel = readFileSync(findKernel());
  release = await startReleaseServer({ assets: { kestrel: "", bzImage: kernel, "bzImage.sha256": `${sha256(kernel)}  bzImage\n` } });
  base = release.base;
});
afterAll(async () => {
  await release?.close();
  rmSync(work, { recursive: true, force: true });
});

describe("fledge run", () => {
  it("builds and boots the hello example with Volant's release kernel; curl gets its page; Ctrl-C leaves no qemu", async () => {
    const dir = join(work, "hello");
    cpSync(join(examples, "hello"), dir, { recursive: true });
    rmSync(join(dir, "fledge.lock"), { force: true }); // another test may have built examples/hello in place
    const run = spawnFledge(["run", "--cache-dir", join(work, "cache")], { cwd: dir, env: { FLEDGE_MIRRORS: mirror(), FLEDGE_GITHUB_API: `${base}/api` } });
    try {
      const m = await run.waitFor(/curl (http:\/\/127\.0\.0\.1:\d+\/)/, "stderr", 120_000);
      expect(run.stderr).toContain("Volant's kernel, release v0.0.0-e2e");
      expect(run.stderr).not.toContain("NOT Volant's kernel");
      expect(release!.requests).toContain("/download/v0.0.0-e2e/bzImage.sha256");
      const page = await httpGet(m[1]!, 150_000);
      expect(page.status).toBe(200);
      expect(page.body).toContain("hello from fledge");
      expect(run.stdout).toContain("hello: running as PID 1");
      const qemu = childPids(run.pid).filter((p) => /qemu-system/.test(readFileSync(`/proc/${p}/cmdline`, "utf8")));
      expect(qemu).toHaveLength(1);
      run.kill("SIGINT");
      const code = await run.exited;
      expect(code).toBe(130);
      expect(run.stderr).toContain("stopped: the VM is gone");
      expect(alive(qemu[0]!)).toBe(false);
    } finally {
      run.kill("SIGKILL");
    }
  });

  it("exits 0 when the guest powers off, with Volant's command line (manifest included) in the guest", async () => {
    const dir = join(work, "none");
    cpSync(join(fixtures, "none"), dir, { recursive: true });
    const init = join(dir, "init.sh");
    writeFileSync(init, readFileSync(init, "utf8").replace("poweroff -f", 'echo "FLEDGE-E2E cmdline=$(cat /proc/cmdline)"\nsleep 1 # let the console drain: poweroff -f does not wait for it\npoweroff -f'));
    const r = await fledge(["run", "--kernel", findKernel(), "-o", join(work, "none.cpio.gz")], { cwd: dir });
    expect(r.code, r.stderr).toBe(0);
    expect(r.stderr).toContain("the guest powered off (exit 0)");
    expect(r.stdout).toContain("FLEDGE-E2E pid=1");
    const cmdline = /FLEDGE-E2E cmdline=(.*)/.exec(r.stdout)?.[1]?.trim() ?? "";
    expect(cmdline).toMatch(/^console=ttyS0 reboot=k panic=1 quiet loglevel=1 .* ip=10\.0\.2\.15::10\.0\.2\.2:255\.255\.255\.0:e2e-none:eth0:off /);
    const encoded = /volant\.manifest=(\S+)/.exec(cmdline)?.[1];
    expect(encoded, r.stdout).toBeDefined();
    const manifest = decodeManifest(encoded!);
    expect(manifest).toMatchObject({ name: "e2e-none", workload: { base_url: "http://127.0.0.1:8000" }, labels: { "volant.plugin": "e2e-none" } });
    expect(manifest.initramfs.checksum).toBe(`sha256:${sha256(readFileSync(join(work, "none.cpio.gz")))}`);
  });

  it("without qemu: one clear error naming the Debian, Fedora and Homebrew packages", async () => {
    const dir = join(work, "noqemu");
    cpSync(join(fixtures, "none"), dir, { recursive: true });
    const r = await fledge(["run", "--kernel", findKernel()], { cwd: dir, env: { FLEDGE_QEMU: join(work, "no-such-qemu") } });
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(/error: .*no-such-qemu is not installed/);
    expect(r.stderr).toMatch(/apt-get install qemu-system-x86.*dnf install qemu-system-x86.*brew install qemu/);
  });

  it("fledge dev rebuilds and reboots when a mapped file changes, on the same port; Ctrl-C leaves no qemu", async () => {
    const dir = join(work, "dev");
    cpSync(join(examples, "hello"), dir, { recursive: true });
    rmSync(join(dir, "fledge.lock"), { force: true }); // another test may have built examples/hello in place
    const dev = spawnFledge(["dev", "--kernel", findKernel(), "--cache-dir", join(work, "cache")], { cwd: dir, env: { FLEDGE_MIRRORS: mirror() } });
    try {
      const url = (await dev.waitFor(/curl (http:\/\/127\.0\.0\.1:\d+\/)/, "stderr", 120_000))[1]!;
      await dev.waitFor(/watching \d+ paths for changes/, "stderr", 30_000);
      expect((await httpGet(url, 150_000)).body).toContain("hello from fledge");
      const first = childPids(dev.pid).filter((p) => /qemu-system/.test(readFileSync(`/proc/${p}/cmdline`, "utf8")));
      expect(first).toHaveLength(1);

      writeFileSync(join(dir, "www", "index.html"), "<h1>edited while fledge dev ran</h1>\n");
      await dev.waitFor(/rebuilt in \d+ ms \(\d+ ms after the save\)/, "stderr", 60_000);
      await dev.waitFor(/restarting the VM/, "stderr", 30_000);
      // the old VM is gone, a new one serves the edited page on the same URL
      const deadline = Date.now() + 150_000;
      let body = "";
      while (Date.now() < deadline && !body.includes("edited while fledge dev ran")) {
        body = await httpGet(url, 150_000)
          .then((r) => r.body)
          .catch(() => "");
        if (!body.includes("edited")) await new Promise((r) => setTimeout(r, 500));
      }
      expect(body).toContain("edited while fledge dev ran");
      expect(alive(first[0]!)).toBe(false);
      const second = childPids(dev.pid).filter((p) => /qemu-system/.test(readFileSync(`/proc/${p}/cmdline`, "utf8")));
      expect(second).toHaveLength(1);

      dev.kill("SIGINT");
      expect(await dev.exited).toBe(130);
      expect(alive(second[0]!)).toBe(false);
    } finally {
      dev.kill("SIGKILL");
    }
  });
});
