import { createHash } from "node:crypto";
import { cpSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { createServer, type Server } from "node:http";
import type { AddressInfo } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { fledge } from "./cli.js";
import { bootInitramfs, hostBusybox } from "./qemu.js";

const fixtures = fileURLToPath(new URL("../fixtures/", import.meta.url));
const BUSYBOX_NET = "https://busybox.net/downloads/binaries/1.35.0-x86_64-linux-musl/busybox";
const out = mkdtempSync(join(tmpdir(), "fledge-e2e-mirror-"));
let server: Server;
let mirror: string;
const requests: string[] = [];

beforeAll(async () => {
  const payload = readFileSync(hostBusybox());
  server = createServer((req, res) => {
    requests.push(req.url ?? "");
    if (req.url === "/busybox/downloads/binaries/1.35.0-x86_64-linux-musl/busybox") res.end(payload);
    else {
      res.statusCode = 404;
      res.end();
    }
  });
  await new Promise<void>((r) => server.listen(0, "127.0.0.1", r));
  mirror = `http://127.0.0.1:${(server.address() as AddressInfo).port}/busybox/`;
});
afterAll(async () => {
  await new Promise((r) => server.close(r));
  rmSync(out, { recursive: true, force: true });
});

describe("FLEDGE_MIRRORS: a busybox.net config builds and boots with no internet", () => {
  it("fetches through the mirror once, rebuilds --offline from the cache, and the image boots", async () => {
    const dir = join(out, "project");
    cpSync(join(fixtures, "none"), dir, { recursive: true });
    const sha = createHash("sha256").update(readFileSync(hostBusybox())).digest("hex");
    // the fixture's config, with busybox from busybox.net (pinned to the bytes the mirror serves)
    const toml = readFileSync(join(dir, "fledge.toml"), "utf8").replace('busybox_url = "file:///bin/busybox"', `busybox_url = "${BUSYBOX_NET}"\nbusybox_sha256 = "${sha}"`);
    writeFileSync(join(dir, "fledge.toml"), toml);
    const env = { FLEDGE_MIRRORS: `https://busybox.net/=${mirror}`, FLEDGE_CACHE_DIR: join(out, "cache") };

    const first = await fledge(["build", "-v", "-o", join(out, "a.cpio.gz")], { cwd: dir, env });
    expect(first.code, first.stderr).toBe(0);
    expect(first.stderr).toContain(`busybox: ${BUSYBOX_NET} → ${mirror}downloads/binaries/1.35.0-x86_64-linux-musl/busybox`);
    expect(requests).toHaveLength(1);

    const again = await fledge(["build", "--offline", "--locked", "-o", join(out, "b.cpio.gz")], { cwd: dir, env });
    expect(again.code, again.stderr).toBe(0);
    expect(requests).toHaveLength(1);
    expect(readFileSync(join(out, "b.cpio.gz")).equals(readFileSync(join(out, "a.cpio.gz")))).toBe(true);

    const boot = await bootInitramfs(join(out, "b.cpio.gz"));
    expect(boot.serial).toContain("FLEDGE-E2E busybox=busybox");
    expect(boot.panicked).toBe(false);
  });
});
