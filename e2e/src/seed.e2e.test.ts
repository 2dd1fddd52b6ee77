import { createHash } from "node:crypto";
import { cpSync, existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { createServer, type Server } from "node:http";
import type { AddressInfo } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { fledge } from "./cli.js";
import { bootInitramfs, hostBusybox, type BootResult } from "./qemu.js";

/**
 * The seed's three configs (e2e/fixtures/seed, see its README), built as they are written —
 * busybox from busybox.net, kestrel from the latest GitHub release — with both served from
 * 127.0.0.1, and booted in Debian's kernel.
 */
const fixtures = fileURLToPath(new URL("../fixtures/seed/", import.meta.url));
const work = mkdtempSync(join(tmpdir(), "fledge-e2e-seed-"));
const BUSYBOX_PATH = "/downloads/binaries/1.35.0-x86_64-linux-musl/busybox";
const sha256 = (b: Buffer) => createHash("sha256").update(b).digest("hex");

let server: Server;
let base = "";
const requests: string[] = [];

beforeAll(async () => {
  const busybox = readFileSync(hostBusybox());
  const kestrel = readFileSync(join(fixtures, "mode1", "kestrel"));
  server = createServer((req, res) => {
    const url = req.url ?? "";
    requests.push(url);
    const send = (body: Buffer | string, type = "application/octet-stream") => {
      res.writeHead(200, { "content-type": type, "content-length": Buffer.byteLength(body) });
      res.end(body);
    };
    if (url === `/busybox.net${BUSYBOX_PATH}`) return send(busybox);
    if (url === "/api/repos/volantvm/volant/releases/latest")
      return send(
        JSON.stringify({
          tag_name: "v0.0.0-e2e",
          assets: [
            { name: "kestrel", browser_download_url: `${base}/download/v0.0.0-e2e/kestrel` },
            { name: "checksums.txt", browser_download_url: `${base}/download/v0.0.0-e2e/checksums.txt` },
          ],
        }),
        "application/json",
      );
    if (url === "/download/v0.0.0-e2e/kestrel") return send(kestrel);
    if (url === "/download/v0.0.0-e2e/checksums.txt") return send(`${sha256(kestrel)}  kestrel\n`, "text/plain");
    res.writeHead(404).end();
  });
  await new Promise<void>((r) => server.listen(0, "127.0.0.1", r));
  base = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
});
afterAll(async () => {
  await new Promise((r) => server.close(r));
  rmSync(work, { recursive: true, force: true });
});

/** Copies the fixture (the build writes fledge.lock beside fledge.toml), builds it, returns the artifact. */
async function buildSeed(mode: string): Promise<string> {
  const dir = join(work, mode);
  cpSync(join(fixtures, mode), dir, { recursive: true });
  const toml = join(dir, "fledge.toml");
  // Mode 1's busybox_sha256 is a placeholder in the seed: fill in what the mirror serves.
  writeFileSync(toml, readFileSync(toml, "utf8").replace("<sha256>", sha256(readFileSync(hostBusybox()))));
  const artifact = join(work, `${mode}.cpio.gz`);
  const r = await fledge(["build", "-o", artifact, "--cache-dir", join(work, `cache-${mode}`)], {
    cwd: dir,
    env: { FLEDGE_MIRRORS: `https://busybox.net/=${base}/busybox.net/`, FLEDGE_GITHUB_API: `${base}/api` },
  });
  expect(r.stderr, r.stderr).not.toMatch(/error/i);
  expect(r.code).toBe(0);
  expect(existsSync(artifact)).toBe(true);
  return artifact;
}

const report = (boot: BootResult) => [...boot.serial.matchAll(/^SEED (.*)$/gm)].map((m) => m[1]!.trimEnd());

function expectCleanPowerOff(boot: BootResult): void {
  expect(boot.panicked).toBe(false);
  expect(boot.timedOut).toBe(false);
  expect(boot.exitedByItself).toBe(true);
  expect(boot.serial).toContain("reboot: Power down");
}

describe("the seed's configs build and boot as the seed describes", () => {
  it("Mode 1 (default): kestrel from the latest release becomes PID 1 via the C init, with the filesystems mounted", async () => {
    const artifact = await buildSeed("mode1");
    expect(requests).toContain("/api/repos/volantvm/volant/releases/latest");
    expect(requests).toContain(`/busybox.net${BUSYBOX_PATH}`);
    const boot = await bootInitramfs(artifact);
    expectCleanPowerOff(boot);
    const lines = report(boot);
    expect(lines[0]).toBe("kestrel pid=1");
    expect(lines).toEqual(expect.arrayContaining(["mount /dev devtmpfs", "mount /proc proc", "mount /sys sysfs", "mount /tmp tmpfs", "mount /run tmpfs", "myapp ran, parent 1"]));
  });

  it("Mode 2 (custom): ./my-init is /init and PID 1, and there is no kestrel", async () => {
    const boot = await bootInitramfs(await buildSeed("mode2"));
    expectCleanPowerOff(boot);
    expect(report(boot)).toEqual(["my-init pid=1", "kestrel=absent", "myapp ran, parent 1"]);
  });

  it("Mode 3 (none): ./my-supervisor is PID 1 and has to mount /proc itself", async () => {
    const boot = await bootInitramfs(await buildSeed("mode3"));
    expectCleanPowerOff(boot);
    expect(report(boot)).toEqual(["my-supervisor pid=1", "mount / rootfs", "mount /proc proc"]);
  });
});
