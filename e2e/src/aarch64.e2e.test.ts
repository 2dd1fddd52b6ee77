import { spawn, spawnSync } from "node:child_process";
import { cpSync, existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { afterAll, describe, expect, it } from "vitest";
import { fledge } from "./cli.js";

/**
 * fledge's aarch64 init booted in Debian's arm64 kernel under qemu-system-aarch64. Optional: it
 * needs `qemu-system-arm` and, from Debian's arm64 packages, a kernel and a static busybox, named by
 *   FLEDGE_E2E_ARM64_KERNEL   e.g. vmlinuz-6.1.0-*-arm64 from linux-image-*-arm64
 *   FLEDGE_E2E_ARM64_BUSYBOX  bin/busybox from busybox-static:arm64
 * (`apt-get download` both and unpack them with `dpkg-deb -x`). Without them it is skipped.
 */
const kernel = process.env.FLEDGE_E2E_ARM64_KERNEL ?? "";
const busybox = process.env.FLEDGE_E2E_ARM64_BUSYBOX ?? "";
const qemu = "qemu-system-aarch64";
const missing = [
  !kernel || !existsSync(kernel) ? "FLEDGE_E2E_ARM64_KERNEL (an arm64 vmlinuz)" : "",
  !busybox || !existsSync(busybox) ? "FLEDGE_E2E_ARM64_BUSYBOX (busybox-static:arm64)" : "",
  spawnSync(qemu, ["--version"]).status !== 0 ? `${qemu} (qemu-system-arm)` : "",
].filter(Boolean);

const fixtures = fileURLToPath(new URL("../fixtures/modes/", import.meta.url));
const work = mkdtempSync(join(tmpdir(), "fledge-e2e-arm64-"));
afterAll(() => rmSync(work, { recursive: true, force: true }));

/** A copy of a modes fixture for aarch64, built with the CLI. */
async function buildArm64(mode: string): Promise<string> {
  const dir = join(work, mode);
  cpSync(join(fixtures, mode), dir, { recursive: true });
  const toml = join(dir, "fledge.toml");
  writeFileSync(toml, readFileSync(toml, "utf8").replace("file:///bin/busybox", `file://${busybox}`) + '\n[output]\narch = "aarch64"\n');
  const artifact = join(work, `${mode}.cpio.gz`);
  const r = await fledge(["build", "-o", artifact, "--cache-dir", join(work, "cache")], { cwd: dir });
  expect(r.stderr, r.stderr).not.toMatch(/error/i);
  expect(r.code).toBe(0);
  return artifact;
}

function bootArm64(initrd: string, append = ""): Promise<{ serial: string; code: number | null; killed: boolean }> {
  const args = ["-machine", "virt", "-cpu", "cortex-a57", "-m", "256", "-kernel", kernel, "-initrd", initrd];
  args.push("-append", `console=ttyAMA0 panic=-1 ${append}`.trim(), "-nographic", "-no-reboot", "-nodefaults", "-serial", "stdio", "-monitor", "none");
  return new Promise((resolve, reject) => {
    const child = spawn(qemu, args, { stdio: ["ignore", "pipe", "inherit"] });
    let serial = "";
    let killed = false;
    const timer = setTimeout(() => {
      killed = true;
      child.kill("SIGKILL");
    }, 120_000);
    child.stdout.setEncoding("utf8").on("data", (d: string) => (serial += d));
    child.on("error", reject);
    child.on("close", (code) => {
      clearTimeout(timer);
      resolve({ serial: serial.replace(/\r\n/g, "\n"), code, killed });
    });
  });
}

describe.skipIf(missing.length > 0)(`aarch64 boots${missing.length ? ` (SKIPPED: needs ${missing.join(", ")})` : ""}`, () => {
  it("default: the aarch64 C init mounts the filesystems and execs the stand-in kestrel as PID 1", async () => {
    const boot = await bootArm64(await buildArm64("default"), "FLEDGE_E2E_VAR=from-kernel -- one two");
    expect(boot.killed).toBe(false);
    expect(boot.serial).not.toContain("Kernel panic");
    const lines = [...boot.serial.matchAll(/^FLEDGE-MODE (.*)$/gm)].map((m) => m[1].trimEnd());
    expect(lines[0]).toBe("start payload=kestrel pid=1");
    expect(lines).toEqual(
      expect.arrayContaining(["mount /dev devtmpfs", "mount /proc proc", "mount /sys sysfs", "mount /tmp tmpfs", "mount /run tmpfs", "tmp=1777 run=755", "kernel-env=from-kernel args=one two", "done"]),
    );
    expect(boot.serial).toContain("reboot: Power down");
  });

  it("failure: without /bin/kestrel the aarch64 C init reports it and powers off", async () => {
    const boot = await bootArm64(await buildArm64("failure"));
    expect(boot.killed).toBe(false);
    expect(boot.serial).not.toContain("Kernel panic");
    expect(boot.serial).toContain("fledge-init: exec /bin/kestrel: No such file or directory");
    expect(boot.serial).toContain("reboot: Power down");
  });
});
