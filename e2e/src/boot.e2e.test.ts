import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { afterAll, describe, expect, it } from "vitest";
import { fledge } from "./cli.js";
import { bootInitramfs, hostBusybox } from "./qemu.js";

const fixtures = fileURLToPath(new URL("../fixtures/", import.meta.url));
const examples = fileURLToPath(new URL("../../examples/", import.meta.url));
const out = mkdtempSync(join(tmpdir(), "fledge-e2e-boot-"));
afterAll(() => rmSync(out, { recursive: true, force: true }));

describe("a built initramfs boots Debian's kernel in qemu", () => {
  it("none mode: the mapped busybox script runs as PID 1 and powers the VM off", async () => {
    hostBusybox();
    const artifact = join(out, "none.cpio.gz");
    const r = await fledge(["build", "-C", join(fixtures, "none"), "-o", artifact], { cwd: out });
    expect(r.stderr).not.toMatch(/error/);
    expect(r.code).toBe(0);

    const boot = await bootInitramfs(artifact);
    expect(boot.serial).toContain("Run /init as init process");
    // The script is PID 1: $$ is 1 and /proc/1 is the shell running it.
    expect(boot.serial).toMatch(/FLEDGE-E2E pid=1 init=(sh|init)/);
    // /dev/console came from the archive header (c 5,1, 0600), written without root or mknod.
    expect(boot.serial).toMatch(/FLEDGE-E2E console=crw------- 5, 1/);
    expect(boot.serial).toContain("FLEDGE-E2E busybox=busybox");
    expect(boot.panicked).toBe(false);
    expect(boot.exitedByItself).toBe(true);
    expect(boot.serial).toMatch(/reboot: Power down/);
  });

  it("the README example (custom init from a host file) boots and serves as PID 1", async () => {
    const artifact = join(out, "hello.cpio.gz");
    // as the README runs it: busybox.net mirrored to Debian's busybox-static, no internet
    const r = await fledge(["build", "-C", join(examples, "hello"), "-o", artifact, "--manifest-output", join(out, "hello.manifest.json")], {
      cwd: out,
      env: { FLEDGE_MIRRORS: `https://busybox.net/downloads/binaries/1.35.0-x86_64-linux-musl/=file://${hostBusybox().replace(/busybox$/, "")}` },
    });
    expect(r.code).toBe(0);
    const boot = await bootInitramfs(artifact, { until: /hello: running as PID \d+/, timeoutMs: 120_000 });
    expect(boot.timedOut).toBe(false);
    expect(boot.serial).toMatch(/hello: running as PID 1\b/);
    expect(boot.panicked).toBe(false);
  });
});
