import { spawn, spawnSync } from "node:child_process";
import { cpSync, existsSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { afterAll, describe, expect, it } from "vitest";
import { alive, childPids, fledge, httpGet, spawnFledge } from "./cli.js";

/**
 * aarch64 for real: fledge's aarch64 init booted in Debian's arm64 kernel under
 * qemu-system-aarch64, and `fledge run` booting an aarch64 build of the hello example. It needs
 * `qemu-system-arm` and, from Debian's arm64 packages, a kernel and a static busybox, which
 * scripts/install-e2e-deps.sh (what CI runs) unpacks into /opt/fledge-e2e/arm64; or name them:
 *   FLEDGE_E2E_ARM64_KERNEL   e.g. vmlinuz-6.1.0-*-arm64 from linux-image-*-arm64
 *   FLEDGE_E2E_ARM64_BUSYBOX  bin/busybox from busybox-static:arm64
 * Without them it is skipped, saying what is missing; in CI (CI=true) it fails instead.
 */
const ARM64_DIR = process.env.FLEDGE_E2E_ARM64_DIR ?? "/opt/fledge-e2e/arm64";
const defaultKernel = () => {
  try {
    const k = readdirSync(join(ARM64_DIR, "boot"))
      .filter((f) => /^vmlinuz-.*-arm64$/.test(f))
      .sort();
    return k.length ? join(ARM64_DIR, "boot", k[k.length - 1]!) : "";
  } catch {
    return "";
  }
};
const kernel = process.env.FLEDGE_E2E_ARM64_KERNEL ?? defaultKernel();
const busybox = process.env.FLEDGE_E2E_ARM64_BUSYBOX ?? join(ARM64_DIR, "bin", "busybox");
const qemu = "qemu-system-aarch64";
const missing = [
  !kernel || !existsSync(kernel) ? "FLEDGE_E2E_ARM64_KERNEL (an arm64 vmlinuz)" : "",
  !busybox || !existsSync(busybox) ? "FLEDGE_E2E_ARM64_BUSYBOX (busybox-static:arm64)" : "",
  spawnSync(qemu, ["--version"]).status !== 0 ? `${qemu} (qemu-system-arm)` : "",
].filter(Boolean);

// CI installs them: a skip there would hide that aarch64 is not tested
if (missing.length && process.env.CI) throw new Error(`aarch64 e2e: missing ${missing.join(", ")} in CI: scripts/install-e2e-deps.sh should have installed them`);

const fixtures = fileURLToPath(new URL("../fixtures/modes/", import.meta.url));
const examples = fileURLToPath(new URL("../../examples/", import.meta.url));
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
    const lines = [...boot.serial.matchAll(/^FLEDGE-MODE (.*)$/gm)].map((m) => m[1]!.trimEnd());
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

  it("fledge run boots an aarch64 build of the hello example; curl gets its page; Ctrl-C leaves no qemu", async () => {
    const dir = join(work, "hello");
    cpSync(join(examples, "hello"), dir, { recursive: true });
    rmSync(join(dir, "fledge.lock"), { force: true }); // another test may have built examples/hello in place
    writeFileSync(join(dir, "fledge.toml"), readFileSync(join(dir, "fledge.toml"), "utf8") + '\n[output]\narch = "aarch64"\n');
    const run = spawnFledge(["run", "--kernel", kernel, "--cache-dir", join(work, "cache")], {
      cwd: dir,
      env: { FLEDGE_MIRRORS: `https://busybox.net/downloads/binaries/1.35.0-x86_64-linux-musl/=file://${dirname(busybox)}/` },
    });
    try {
      const url = (await run.waitFor(/curl (http:\/\/127\.0\.0\.1:\d+\/)/, "stderr", 120_000))[1]!;
      expect(run.stderr).toContain("qemu-system-aarch64");
      const page = await httpGet(url, 170_000);
      expect(page.body).toContain("hello from fledge");
      expect(run.stdout).toContain("hello: running as PID 1");
      const qemuPids = childPids(run.pid).filter((p) => /qemu-system-aarch64/.test(readFileSync(`/proc/${p}/cmdline`, "utf8")));
      expect(qemuPids).toHaveLength(1);
      run.kill("SIGINT");
      expect(await run.exited).toBe(130);
      expect(alive(qemuPids[0]!)).toBe(false);
    } finally {
      run.kill("SIGKILL");
    }
  });
});
